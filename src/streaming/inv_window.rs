//! `reduce_by_key_and_window_inv`: a windowed reduce kept incrementally, as the previous
//! window ⊕ the slices that entered ⊖ the slices that left (Spark's `reduceByKeyAndWindow`
//! with an inverse function). It is a stateful operator: its window state is locally
//! truncated every slide and written as a reliable checkpoint every k-th slide, in the same
//! pass (S6); recovery restores it and rebuilds the last slices from the plans.
//!
//! With a filter, a key leaves the state when the filter drops its value *and* no slice in
//! the window holds it any more, so a later slice leaving the window never meets a missing
//! key; the output is the state with the filter applied. (Spark prunes on the filter alone
//! and then computes wrong sums, or fails, when such a key's old values leave the window.)

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dstream::{desc, DNode, DStream};
use super::meta::StateRef;
use super::state::{materialize, StateCell, StatefulOps, DEFAULT_CHECKPOINT_EVERY};
use super::window::{last_batches, union_all, Slices};
use super::{BatchId, BatchRun};
use crate::checkpoint::AppDir;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{Data, Key, Partitioner, Rdd};

type Reduce<V> = dyn Fn(V, V) -> V + Send + Sync;
type Filter<K, V> = dyn Fn(&K, &V) -> bool + Send + Sync;

struct Staged<K: Data, V: Data> {
    batch: BatchId,
    state: Rdd<(K, V)>,
    written: Option<StateRef>,
}

pub(crate) struct InvWindowOp<K: Data, V: Data> {
    name: String,
    parent: Arc<DNode<(K, V)>>,
    reduce: Arc<Reduce<V>>,
    inverse: Arc<Reduce<V>>,
    filter: Option<Arc<Filter<K, V>>>,
    len: u64,
    slide: u64,
    /// (state partitions, reliable checkpoint every this many slides).
    settings: Mutex<(usize, u32)>,
    dir: OnceLock<Arc<AppDir>>,
    /// Each batch's values reduced per key, materialised, for `len + slide` batches.
    slices: Slices<(K, V)>,
    /// The window state after the last promoted slide.
    cell: StateCell<(K, V)>,
    /// The state of the running batch, when it slides.
    staged: Mutex<Option<Staged<K, V>>>,
}

/// One key's part in a slide's update: its previous window value, the values of the
/// slices that entered and of those that left, and whether a slice in the new window
/// holds it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Part<V> {
    Prev(V),
    New(V),
    Old(V),
    InWindow,
}

impl<K, V> InvWindowOp<K, V>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    /// The window's output for batch `batch`: the state, filtered.
    fn output(&self, batch: BatchId) -> Result<Rdd<(K, V)>> {
        let staged = self
            .staged
            .lock()
            .as_ref()
            .filter(|s| s.batch == batch)
            .map(|s| s.state.clone());
        let state = staged.or_else(|| self.cell.at(batch)).ok_or_else(|| {
            Error::Internal(format!(
                "window `{}` has no state for batch {batch}",
                self.name
            ))
        })?;
        Ok(match &self.filter {
            None => state,
            Some(f) => {
                let f = f.clone();
                state.filter(move |(k, v)| f(k, v))
            }
        })
    }
}

impl<K, V> StatefulOps for InvWindowOp<K, V>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> (usize, u32) {
        *self.settings.lock()
    }

    fn attach(&self, dir: Arc<AppDir>) {
        let _ = self.dir.set(dir);
    }

    fn step(&self, run: &BatchRun<'_>) -> Result<()> {
        let b = run.batch.id;
        let (partitions, every) = *self.settings.lock();
        // This batch's slice, reduced and materialised (also in a replay: the parent's
        // batch does not outlive it).
        let reduce = self.reduce.clone();
        let slice = self
            .parent
            .rdd(run)?
            .reduce_by_key(move |a, b| reduce(a, b));
        slice.local_checkpoint()?;
        slice.count()?;
        self.slices.stage(b, slice);
        if !(b + 1).is_multiple_of(self.slide) || self.cell.restored_past(b) {
            return Ok(());
        }
        let (len, slide) = (self.len, self.slide);
        // Entered: the last `slide` batches; left: the `slide` before the window's start;
        // the window: the last `len`.
        let entered = self.slices.union(run.ctx, last_batches(b + 1, slide));
        let left = self
            .slices
            .union(run.ctx, last_batches((b + 1).saturating_sub(len), slide));
        let window = self.slices.union(run.ctx, last_batches(b + 1, len));
        let prev = match self.cell.get() {
            Some((_, r)) => r,
            None => run.ctx.empty(),
        };
        let tagged = union_all(
            run.ctx,
            vec![
                prev.map(|(k, v)| (k, Part::Prev(v))),
                entered.map(|(k, v)| (k, Part::New(v))),
                left.map(|(k, v)| (k, Part::Old(v))),
                window.map(|(k, _)| (k, Part::InWindow)),
            ],
        );
        let (reduce, inverse, filter) = (
            self.reduce.clone(),
            self.inverse.clone(),
            self.filter.clone(),
        );
        let name = self.name.clone();
        let state = tagged
            .group_by_key_with(Partitioner::hash(partitions))
            .map_partitions_preserving_partitioning(move |groups| {
                let (reduce, inverse, filter, name) = (
                    reduce.clone(),
                    inverse.clone(),
                    filter.clone(),
                    name.clone(),
                );
                groups.filter_map(move |(k, parts)| {
                    let (mut prev, mut new, mut old, mut in_window) = (None, None, None, false);
                    let merge = |acc: Option<V>, v: V| {
                        Some(match acc {
                            Some(a) => reduce(a, v),
                            None => v,
                        })
                    };
                    for p in parts {
                        match p {
                            Part::Prev(v) => prev = Some(v),
                            Part::New(v) => new = merge(new.take(), v),
                            Part::Old(v) => old = merge(old.take(), v),
                            Part::InWindow => in_window = true,
                        }
                    }
                    let value = match (prev, new) {
                        (Some(p), Some(n)) => Some(reduce(p, n)),
                        (p, n) => p.or(n),
                    };
                    let value = match (value, old) {
                        (Some(v), Some(o)) => Some(inverse(v, o)),
                        (v, None) => v,
                        (None, Some(_)) => {
                            // Cannot happen: a key with a slice leaving was in the previous
                            // window, which kept it.
                            panic!("window `{name}`: a key's values left a window it was not in")
                        }
                    };
                    value.and_then(|v| {
                        let keep = in_window || filter.as_ref().is_none_or(|f| f(&k, &v));
                        keep.then_some((k, v))
                    })
                })
            })
            .set_name(format!("window `{}` @ batch {b}", self.name));
        let written = if run.replay {
            None
        } else {
            let emission = (b + 1) / slide;
            let reliable = self
                .dir
                .get()
                .filter(|_| emission.is_multiple_of(u64::from(every)));
            materialize(&state, reliable, &self.name, b)?
        };
        *self.staged.lock() = Some(Staged {
            batch: b,
            state,
            written,
        });
        Ok(())
    }

    fn promote(&self) {
        self.slices.promote();
        if let Some(s) = self.staged.lock().take() {
            self.cell.promote(s.batch, s.state, s.written);
        }
    }

    fn rollback(&self) {
        self.slices.rollback();
        let staged = self.staged.lock().take();
        drop(staged);
    }

    fn committed(&self) -> Option<StateRef> {
        self.cell.committed()
    }

    fn restore(&self, ctx: &Context, stream_dir: &Path, state: Option<&StateRef>) -> Result<()> {
        *self.staged.lock() = None;
        self.slices.clear();
        self.cell.restore(ctx, stream_dir, &self.name, state)
    }

    fn lineage_depth(&self) -> Option<usize> {
        self.cell.lineage_depth()
    }

    fn low_water(&self, _committed: BatchId) -> BatchId {
        // The state is rebuilt from its checkpoint at batch `r` by the slides after it,
        // the first of which, at `r + 1` or later, subtracts the slices from
        // `r + 2 − len − slide` on; without a checkpoint, from the start.
        self.committed()
            .map_or(0, |s| (s.batch + 2).saturating_sub(self.len + self.slide))
    }
}

/// The stream of a [`DStream::reduce_by_key_and_window_inv`] operator, with its settings
/// (which take effect when the stream starts).
pub struct WindowStateStream<K: Data, V: Data> {
    stream: DStream<(K, V)>,
    op: Arc<dyn WindowSettings>,
}

impl<K: Data, V: Data> std::fmt::Debug for WindowStateStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStateStream")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

trait WindowSettings: Send + Sync {
    fn set(&self, partitions: Option<usize>, every: Option<u32>);
}

impl<K: Data, V: Data> WindowSettings for InvWindowOp<K, V> {
    fn set(&self, partitions: Option<usize>, every: Option<u32>) {
        let mut s = self.settings.lock();
        if let Some(p) = partitions {
            s.0 = p;
        }
        if let Some(e) = every {
            s.1 = e;
        }
    }
}

impl<K: Data, V: Data> std::ops::Deref for WindowStateStream<K, V> {
    type Target = DStream<(K, V)>;
    fn deref(&self) -> &DStream<(K, V)> {
        &self.stream
    }
}

impl<K: Data, V: Data> WindowStateStream<K, V> {
    /// Writes the window state as a reliable checkpoint every `k` slides (default
    /// [`DEFAULT_CHECKPOINT_EVERY`]), in the same pass that computes it.
    ///
    /// # Panics
    /// When `k` is 0.
    #[track_caller]
    pub fn checkpoint_every(self, k: u32) -> Self {
        assert!(
            k >= 1,
            "checkpoint_every(0): the interval is at least 1 slide"
        );
        self.op.set(None, Some(k));
        self
    }

    /// The number of state partitions (default: the context's thread count).
    ///
    /// # Panics
    /// When `n` is 0.
    #[track_caller]
    pub fn partitions(self, n: usize) -> Self {
        assert!(n >= 1, "partitions(0): a state has at least 1 partition");
        self.op.set(Some(n), None);
        self
    }

    /// The window's output as a plain [`DStream`].
    pub fn stream(&self) -> DStream<(K, V)> {
        self.stream.clone()
    }
}

impl<K, V> DStream<(K, V)>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data + Serialize + DeserializeOwned,
{
    /// Every `slide`, the values of each key over the last `len` merged with `reduce`,
    /// kept incrementally: the previous window, plus the batches that entered (`reduce`),
    /// minus those that left (`inverse`, so that `inverse(reduce(a, b), b) == a`). Spark's
    /// `reduceByKeyAndWindow` with an inverse function. `name` is the operator's stable
    /// name (its state is checkpointed: a checkpoint folder is required).
    ///
    /// Without `filter`, a key stays in the window with its value after all its values
    /// left (the inverse's zero), as in Spark. With it, a key whose value the filter
    /// drops leaves the output, and leaves the state once no batch in the window holds it.
    ///
    /// `len` and `slide` must be positive multiples of the batch interval (else starting
    /// the stream fails with [`crate::Error::InvalidArgument`]).
    #[track_caller]
    #[allow(clippy::too_many_arguments)]
    pub fn reduce_by_key_and_window_inv(
        &self,
        name: &str,
        reduce: impl Fn(V, V) -> V + Send + Sync + 'static,
        inverse: impl Fn(V, V) -> V + Send + Sync + 'static,
        len: Duration,
        slide: Duration,
        filter: Option<Box<dyn Fn(&K, &V) -> bool + Send + Sync>>,
    ) -> WindowStateStream<K, V> {
        let (len_b, slide_b) = self.graph.window_batches(len, slide);
        let op = Arc::new(InvWindowOp {
            name: name.to_string(),
            parent: self.node.clone(),
            reduce: Arc::new(reduce),
            inverse: Arc::new(inverse),
            filter: filter.map(Arc::from),
            len: len_b,
            slide: slide_b,
            settings: Mutex::new((self.graph.ctx.threads().max(1), DEFAULT_CHECKPOINT_EVERY)),
            dir: OnceLock::new(),
            slices: Slices::new(len_b + slide_b),
            cell: StateCell::new(),
            staged: Mutex::new(None),
        });
        let mut d = desc("reduce_by_key_and_window_inv", Some(name), &[self.node.id]);
        d.slide = slide_b;
        let reader = op.clone();
        let stream =
            self.add_stateful::<V, _>(d, op.clone(), move |run| reader.output(run.batch.id));
        WindowStateStream { stream, op }
    }
}
