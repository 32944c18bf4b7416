//! Windows over a stream (Spark's `window`, `countByWindow`, `reduceByKeyAndWindow`): every
//! `slide` batches, the union of the last `len` batches of the parent.
//!
//! A window keeps each batch's slice of its parent, materialised (cached and locally
//! truncated: the parent's own history, a state's say, is gone once the batch is over), for
//! `len` batches. It steps with the stateful operators, in graph order, so a window over a
//! state stream sees the batch's state. Its slices are not written to the checkpoint
//! folder: recovery rebuilds the last `len` slices from the plans (the commits' low water
//! keeps those plans).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::dstream::{desc, DNode, DStream, Graph};
use super::meta::StateRef;
use super::state::StatefulOps;
use super::{BatchId, BatchRun};
use crate::context::Context;
use crate::error::Result;
use crate::{Data, Key, Rdd};

/// A window's recent slices: each batch's materialised RDD, oldest first, for the newest
/// `keep` batch ids; the running batch's is staged until it is promoted.
pub(crate) struct Slices<T: Data> {
    keep: u64,
    promoted: Mutex<VecDeque<(BatchId, Rdd<T>)>>,
    staged: Mutex<Option<(BatchId, Rdd<T>)>>,
}

impl<T: Data> Slices<T> {
    pub(crate) fn new(keep: u64) -> Self {
        Slices {
            keep,
            promoted: Mutex::new(VecDeque::new()),
            staged: Mutex::new(None),
        }
    }

    /// Stages batch `batch`'s slice.
    pub(crate) fn stage(&self, batch: BatchId, slice: Rdd<T>) {
        *self.staged.lock() = Some((batch, slice));
    }

    /// The staged slice joins the promoted ones; those older than `keep` batches go.
    pub(crate) fn promote(&self) {
        if let Some((b, slice)) = self.staged.lock().take() {
            let mut slices = self.promoted.lock();
            slices.push_back((b, slice));
            let first = (b + 1).saturating_sub(self.keep);
            while slices.front().is_some_and(|(s, _)| *s < first) {
                slices.pop_front();
            }
        }
    }

    /// Drops the staged slice (the batch failed).
    pub(crate) fn rollback(&self) {
        let staged = self.staged.lock().take();
        drop(staged);
    }

    /// Drops every slice (recovery rebuilds them).
    pub(crate) fn clear(&self) {
        self.promoted.lock().clear();
        self.rollback();
    }

    /// The union of the slices (promoted and staged) of the batches in `range` that ran
    /// (ids skipped after downtime have none); empty for an empty range.
    pub(crate) fn union(&self, ctx: &Context, range: std::ops::Range<BatchId>) -> Rdd<T> {
        let mut parts: Vec<Rdd<T>> = self
            .promoted
            .lock()
            .iter()
            .filter(|(b, _)| range.contains(b))
            .map(|(_, r)| r.clone())
            .collect();
        if let Some((b, r)) = &*self.staged.lock()
            && range.contains(b)
        {
            parts.push(r.clone());
        }
        union_all(ctx, parts)
    }
}

/// The union of `parts` (empty when there are none).
pub(crate) fn union_all<T: Data>(ctx: &Context, parts: Vec<Rdd<T>>) -> Rdd<T> {
    let mut iter = parts.into_iter();
    match iter.next() {
        None => ctx.empty(),
        Some(first) => iter.fold(first, |acc, r| acc.union(&r)),
    }
}

/// Batches `end − n .. end` (fewer near batch 0).
pub(crate) fn last_batches(end: BatchId, n: u64) -> std::ops::Range<BatchId> {
    end.saturating_sub(n)..end
}

pub(crate) struct WindowOp<T: Data> {
    parent: Arc<DNode<T>>,
    /// The window's length, in batches.
    len: u64,
    slices: Slices<T>,
}

impl<T: Data> StatefulOps for WindowOp<T> {
    fn name(&self) -> &str {
        ""
    }

    fn settings(&self) -> (usize, u32) {
        (0, 0)
    }

    fn attach(&self, _dir: Arc<crate::checkpoint::AppDir>) {}

    fn step(&self, run: &BatchRun<'_>) -> Result<()> {
        // Materialised even in a replay: the parent's history does not outlive a batch.
        // A copy of the parent's RDD (which may be the user's, a queue's): the window owns
        // its cached blocks, and they go when the slice leaves the window.
        let slice = self.parent.rdd(run)?.map(|x| x);
        slice.local_checkpoint()?;
        slice.count()?;
        self.slices.stage(run.batch.id, slice);
        Ok(())
    }

    fn promote(&self) {
        self.slices.promote();
    }

    fn rollback(&self) {
        self.slices.rollback();
    }

    fn committed(&self) -> Option<StateRef> {
        None
    }

    fn restore(&self, _ctx: &Context, _dir: &Path, _state: Option<&StateRef>) -> Result<()> {
        self.slices.clear();
        Ok(())
    }

    fn lineage_depth(&self) -> Option<usize> {
        None
    }

    fn checkpointed(&self) -> bool {
        false
    }

    fn low_water(&self, committed: BatchId) -> BatchId {
        // Nothing of its own: how far back its slices must be rebuilt follows from the
        // first batch replayed (or the next one, `committed + 1`) and `window_len`.
        committed + 1
    }

    fn window_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

/// The name of a stateful operator `node` reads from (itself included), if any.
fn stateful_above(nodes: &[super::graph::NodeDesc], node: usize) -> Option<String> {
    let mut stack = vec![node];
    while let Some(id) = stack.pop() {
        let n = &nodes[id];
        if n.role() == super::graph::Role::Stateful {
            return Some(n.name.clone().unwrap_or_default());
        }
        stack.extend(n.parents.iter().copied());
    }
    None
}

/// `d` as a whole number of batches of `interval`, or an error text.
fn batches(what: &str, d: Duration, interval: Duration) -> std::result::Result<u64, String> {
    let (n, i) = (d.as_nanos(), interval.as_nanos());
    if n == 0 || n % i != 0 {
        return Err(format!(
            "the window {what} {d:?} is not a positive multiple of the batch interval \
             {interval:?}"
        ));
    }
    u64::try_from(n / i).map_err(|_| format!("the window {what} {d:?} is too long"))
}

impl Graph {
    /// Converts a window's length and slide to batches; a mistake is recorded for `start`
    /// (and the window made with length and slide 1, so the graph stays well formed).
    pub(crate) fn window_batches(&self, len: Duration, slide: Duration) -> (u64, u64) {
        let (l, s) = (
            batches("length", len, self.interval),
            batches("slide", slide, self.interval),
        );
        match (l, s) {
            (Ok(l), Ok(s)) => (l, s),
            (l, s) => {
                let mut g = self.inner.lock();
                g.errors.extend(l.err());
                g.errors.extend(s.err());
                (1, 1)
            }
        }
    }
}

impl<T: Data> DStream<T> {
    /// Every `slide`, the elements of the last `len` of this stream's batches (Spark's
    /// `window`): batch `b` has a window when `(b + 1)` is a multiple of `slide / interval`,
    /// covering batches `b − len/interval + 1 ..= b`; in the batches between, the window
    /// and the streams derived from it have no RDD and their outputs do not run.
    ///
    /// `len` and `slide` must be positive multiples of the batch interval: otherwise
    /// starting the stream fails with [`crate::Error::InvalidArgument`]. Streams combined
    /// with `union` must slide alike, stateful operators read only streams that have an
    /// RDD in every batch, and a window may not read a stateful operator's state (a
    /// recovery could not rebuild its older slices).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flintlock::streaming::{ManualClock, RddQueue, StreamingContext, Until};
    /// use flintlock::Context;
    /// let ctx = Context::new();
    /// let queue = RddQueue::from_rdds((1..=4u64).map(|b| ctx.parallelize(vec![b], 1)));
    /// let sec = Duration::from_secs(1);
    /// let mut ssc = StreamingContext::new(&ctx, sec).clock(ManualClock::auto());
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let out = seen.clone();
    /// ssc.queue_stream("in", queue).window(3 * sec, 2 * sec).foreach_rdd("show", move |rdd, b| {
    ///     let mut v = rdd.collect()?;
    ///     v.sort();
    ///     out.lock().unwrap().push((b.id, v));
    ///     Ok(())
    /// });
    /// ssc.run(Until::Batches(4))?;
    /// assert_eq!(*seen.lock().unwrap(), vec![(1, vec![1, 2]), (3, vec![2, 3, 4])]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    pub fn window(&self, len: Duration, slide: Duration) -> DStream<T> {
        let (len_b, slide_b) = self.graph.window_batches(len, slide);
        let op = Arc::new(WindowOp {
            parent: self.node.clone(),
            len: len_b,
            slices: Slices::new(len_b),
        });
        let mut d = desc(
            &format!("window({len_b}, {slide_b})"),
            None,
            &[self.node.id],
        );
        d.slide = slide_b * self.node.slide;
        {
            let mut g = self.graph.inner.lock();
            if self.node.slide > 1 {
                g.errors.push(format!(
                    "a window over a window that slides by {} batches: window the unslid \
                     stream instead",
                    self.node.slide
                ));
            }
            if let Some(state) = stateful_above(&g.nodes, self.node.id) {
                g.errors.push(format!(
                    "a window over the output of stateful `{state}` (or a stream made \
                     from it) is not supported: a recovery cannot rebuild its batches \
                     before the newest state checkpoint, which the window's first slices \
                     would need"
                ));
            }
        }
        let reader = op.clone();
        let stream = self.graph.add(d, move |run| {
            // The window ending at this batch: its last `len` batches.
            let b = run.batch.id;
            Ok(reader
                .slices
                .union(run.ctx, last_batches(b + 1, reader.len)))
        });
        self.graph
            .inner
            .lock()
            .stateful
            .push((stream.node.id, op as Arc<dyn StatefulOps>));
        stream
    }

    /// Every `slide`, the number of elements in the last `len` of batches (Spark's
    /// `countByWindow`): a one-element stream, 0 for an empty window.
    #[track_caller]
    pub fn count_by_window(&self, len: Duration, slide: Duration) -> DStream<u64> {
        self.window(len, slide).count()
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Every `slide`, the values of each key over the last `len` of batches merged with
    /// `f` (associative and commutative; Spark's `reduceByKeyAndWindow` without an inverse
    /// function): the window is recomputed from its slices each time, so a key whose values
    /// have all left the window is gone.
    #[track_caller]
    pub fn reduce_by_key_and_window(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        len: Duration,
        slide: Duration,
    ) -> DStream<(K, V)> {
        self.window(len, slide).reduce_by_key(f)
    }
}
