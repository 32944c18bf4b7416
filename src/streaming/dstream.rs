//! `DStream`: a stream of RDDs, one per batch, and its stateless operations and outputs.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::graph::NodeDesc;
use super::sink::{OutputOps, Sink};
use super::sources::SourceOps;
use super::state::StatefulOps;
use super::{Batch, BatchId, BatchRun};
use crate::context::Context;
use crate::error::Result;
use crate::{Data, Key, Rdd};

/// How a node computes its batch's RDD.
type Compute<T> = Box<dyn Fn(&BatchRun<'_>) -> Result<Rdd<T>> + Send + Sync>;

/// One node of the graph, typed: it computes its RDD for a batch once and keeps it for the
/// rest of that batch, so a stream read by two outputs is built once.
pub(crate) struct DNode<T: Data> {
    pub(crate) id: usize,
    /// The node has an RDD only in batches `b` with `(b + 1) % slide == 0` (1 but below a
    /// window that slides by more than one batch); outputs run only then.
    pub(crate) slide: u64,
    compute: Compute<T>,
    cache: Mutex<Option<(BatchId, Rdd<T>)>>,
}

impl<T: Data> DNode<T> {
    /// Whether the node has an RDD in batch `batch` (see `slide`).
    pub(crate) fn active(&self, batch: BatchId) -> bool {
        (batch + 1).is_multiple_of(self.slide)
    }

    /// This node's RDD for `run`'s batch.
    pub(crate) fn rdd(&self, run: &BatchRun<'_>) -> Result<Rdd<T>> {
        if let Some((b, rdd)) = &*self.cache.lock()
            && *b == run.batch.id
        {
            return Ok(rdd.clone());
        }
        // Not under the lock: computing reads the parents (never this node again).
        let rdd = (self.compute)(run)?;
        *self.cache.lock() = Some((run.batch.id, rdd.clone()));
        Ok(rdd)
    }
}

/// Drops a node's RDD of the finished batch, so nothing of it outlives the batch.
pub(crate) trait BatchCache: Send + Sync {
    fn clear(&self);
}

impl<T: Data> BatchCache for DNode<T> {
    fn clear(&self) {
        let old = self.cache.lock().take();
        drop(old);
    }
}

/// The graph every stream of one [`super::StreamingContext`] adds itself to.
pub(crate) struct Graph {
    pub(crate) ctx: Context,
    /// The batch interval (window lengths and slides are multiples of it).
    pub(crate) interval: std::time::Duration,
    pub(crate) inner: Mutex<GraphInner>,
}

#[derive(Default)]
pub(crate) struct GraphInner {
    pub(crate) nodes: Vec<NodeDesc>,
    pub(crate) sources: Vec<Arc<dyn SourceOps>>,
    pub(crate) stateful: Vec<(usize, Arc<dyn StatefulOps>)>,
    pub(crate) outputs: Vec<Arc<dyn OutputOps>>,
    pub(crate) caches: Vec<Arc<dyn BatchCache>>,
    /// Each node's slide, in batches (see `DNode::slide`).
    pub(crate) slides: Vec<u64>,
    /// Mistakes found while the graph was defined, reported when the stream starts.
    pub(crate) errors: Vec<String>,
    /// Set when the stream starts: the graph is then fixed.
    pub(crate) frozen: bool,
}

/// Checks a source, stateful operator or output name: it names folders and log entries, so
/// it is 1 to 100 ASCII letters, digits, `_`, `-` or `.`, not starting with `.`.
#[track_caller]
pub(crate) fn check_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    assert!(
        ok,
        "invalid stream operator name {name:?}: use 1 to 100 ASCII letters, digits, `_`, `-` \
         or `.`, not starting with `.` (the name is stable: a restart finds state and \
         progress by it)"
    );
}

impl Graph {
    /// Adds a node computed by `compute` and returns its stream.
    #[track_caller]
    pub(crate) fn add<T: Data>(
        self: &Arc<Self>,
        mut desc: NodeDesc,
        compute: impl Fn(&BatchRun<'_>) -> Result<Rdd<T>> + Send + Sync + 'static,
    ) -> DStream<T> {
        let mut g = self.inner.lock();
        assert!(
            !g.frozen,
            "the stream has started: its graph is fixed (define every stream and output \
             before the first run)"
        );
        if let Some(name) = &desc.name {
            check_name(name);
        }
        desc.id = g.nodes.len();
        desc.element = std::any::type_name::<T>().to_string();
        // A node slides as its parents do (a window sets its own); parents sliding
        // differently cannot be combined, as in Spark.
        if desc.slide == 0 {
            let slides: Vec<u64> = desc.parents.iter().map(|&p| g.slides[p]).collect();
            desc.slide = slides.iter().copied().max().unwrap_or(1);
            if slides.iter().any(|&s| s != desc.slide) {
                g.errors.push(format!(
                    "{} combines streams that slide by different numbers of batches \
                     ({slides:?}): they have RDDs in different batches",
                    desc.kind
                ));
            }
        }
        g.slides.push(desc.slide);
        let node = Arc::new(DNode {
            id: desc.id,
            slide: desc.slide,
            compute: Box::new(compute),
            cache: Mutex::new(None),
        });
        g.nodes.push(desc);
        g.caches.push(node.clone());
        DStream {
            graph: self.clone(),
            node,
        }
    }

    #[track_caller]
    fn check_same(&self, other: &Arc<Graph>) {
        assert!(
            std::ptr::eq(self, Arc::as_ptr(other)),
            "the two streams belong to different StreamingContexts; a stream combines only \
             with streams of its own context"
        );
    }
}

/// A node description with the given kind and parents (id and element type are filled in
/// by [`Graph::add`]).
pub(crate) fn desc(kind: &str, name: Option<&str>, parents: &[usize]) -> NodeDesc {
    NodeDesc {
        id: 0,
        kind: kind.to_string(),
        name: name.map(str::to_string),
        element: String::new(),
        state: None,
        parents: parents.to_vec(),
        partitions: None,
        every: None,
        input: None,
        slide: 0,
        timeout_nanos: None,
    }
}

/// A discretized stream: a sequence of RDDs, one per batch, built lazily from its sources
/// through the operations of its graph. The Spark Streaming `DStream`.
///
/// Operations on a `DStream` define the graph; nothing runs until
/// [`super::StreamingContext::run`]. Every batch then builds each stream's RDD from its
/// parents' and runs the outputs ([`DStream::foreach_rdd`], [`DStream::sink`]) on them.
pub struct DStream<T: Data> {
    pub(crate) graph: Arc<Graph>,
    pub(crate) node: Arc<DNode<T>>,
}

impl<T: Data> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            graph: self.graph.clone(),
            node: self.node.clone(),
        }
    }
}

impl<T: Data> fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.graph.inner.lock();
        let d = &g.nodes[self.node.id];
        f.debug_struct("DStream")
            .field("id", &d.id)
            .field("kind", &d.kind)
            .field("name", &d.name)
            .finish()
    }
}

impl<T: Data> DStream<T> {
    /// Adds the node `d` of a stateful operator reading this stream (its state type `S`,
    /// its RDDs from `compute`) and registers `op` with the driver. Stateful operators read
    /// streams with an RDD in every batch: this stream sliding is an error at start.
    pub(crate) fn add_stateful<S, U: Data>(
        &self,
        mut d: NodeDesc,
        op: Arc<dyn StatefulOps>,
        compute: impl Fn(&BatchRun<'_>) -> Result<Rdd<U>> + Send + Sync + 'static,
    ) -> DStream<U> {
        if self.node.slide > 1 {
            self.graph.inner.lock().errors.push(format!(
                "{} `{}` reads a window that slides by {} batches: stateful operators read \
                 streams with an RDD in every batch",
                d.kind,
                d.name.as_deref().unwrap_or("?"),
                self.node.slide
            ));
        }
        d.state = Some(std::any::type_name::<S>().to_string());
        let stream = self.graph.add(d, compute);
        self.graph.inner.lock().stateful.push((stream.node.id, op));
        stream
    }

    /// Adds a stateless step reading this stream.
    #[track_caller]
    fn step<U: Data>(
        &self,
        kind: &str,
        f: impl Fn(Rdd<T>, &BatchRun<'_>) -> Result<Rdd<U>> + Send + Sync + 'static,
    ) -> DStream<U> {
        let parent = self.node.clone();
        self.graph
            .add(desc(kind, None, &[self.node.id]), move |run| {
                f(parent.rdd(run)?, run)
            })
    }

    /// Applies `f` to every element of every batch.
    #[track_caller]
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DStream<U> {
        let f = Arc::new(f);
        self.step("map", move |rdd, _| {
            let f = f.clone();
            Ok(rdd.map(move |x| f(x)))
        })
    }

    /// Applies `f` to every element and flattens the results.
    #[track_caller]
    pub fn flat_map<U: Data, I>(&self, f: impl Fn(T) -> I + Send + Sync + 'static) -> DStream<U>
    where
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        let f = Arc::new(f);
        self.step("flat_map", move |rdd, _| {
            let f = f.clone();
            Ok(rdd.flat_map(move |x| f(x)))
        })
    }

    /// Keeps the elements for which `f` is true.
    #[track_caller]
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DStream<T> {
        let f = Arc::new(f);
        self.step("filter", move |rdd, _| {
            let f = f.clone();
            Ok(rdd.filter(move |x| f(x)))
        })
    }

    /// Any RDD-to-RDD function, given each batch's RDD and the batch (Spark's
    /// `transform`): joins with a static RDD, sampling, sorting, ... For a deterministic
    /// replay, `f` must depend only on its arguments (use `batch.id` or `batch.time`, never
    /// the wall clock).
    #[track_caller]
    pub fn transform<U: Data>(
        &self,
        f: impl Fn(&Rdd<T>, Batch) -> Rdd<U> + Send + Sync + 'static,
    ) -> DStream<U> {
        self.step("transform", move |rdd, run| Ok(f(&rdd, run.batch)))
    }

    /// The elements of both streams, batch by batch.
    ///
    /// # Panics
    /// When `other` belongs to another [`super::StreamingContext`].
    #[track_caller]
    pub fn union(&self, other: &DStream<T>) -> DStream<T> {
        self.graph.check_same(&other.graph);
        let (a, b) = (self.node.clone(), other.node.clone());
        self.graph
            .add(desc("union", None, &[a.id, b.id]), move |run| {
                Ok(a.rdd(run)?.union(&b.rdd(run)?))
            })
    }

    /// A stream with one element per batch: the number of elements in the batch.
    #[track_caller]
    pub fn count(&self) -> DStream<u64> {
        self.step("count", |rdd, run| {
            Ok(run.ctx.parallelize(vec![rdd.count()?], 1))
        })
    }

    /// Runs `f` on every batch's RDD (Spark's `foreachRDD`): the way to act on a stream.
    /// **At-least-once**: after a crash, the batch that was running is run again, and `f`
    /// with it. For exactly-once output, use [`DStream::sink`]. An error from `f` fails the
    /// batch: it is not committed, and the stream stops with that error.
    #[track_caller]
    pub fn foreach_rdd(
        &self,
        name: &str,
        f: impl Fn(&Rdd<T>, Batch) -> Result<()> + Send + Sync + 'static,
    ) {
        let output = super::sink::foreach_output(name, self.node.clone(), f);
        self.add_output(name, "foreach_rdd", output);
    }

    /// Writes every batch to `sink`, **exactly once** across crashes and restarts: a batch
    /// that the sink reports written ([`Sink::last_committed`]) is skipped, and a replayed
    /// batch computes the same RDD (replay is deterministic for deterministic closures).
    #[track_caller]
    pub fn sink(&self, name: &str, sink: impl Sink<T>) {
        let output = super::sink::sink_output(name, self.node.clone(), sink);
        self.add_output(name, "sink", output);
    }

    #[track_caller]
    fn add_output(&self, name: &str, kind: &str, output: Arc<dyn OutputOps>) {
        let parent = self.node.clone();
        // The output's node computes nothing itself; it records the output in the graph.
        let stream: DStream<T> = self
            .graph
            .add(desc(kind, Some(name), &[self.node.id]), move |run| {
                parent.rdd(run)
            });
        drop(stream);
        self.graph.inner.lock().outputs.push(output);
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Applies `f` to every value, keeping the keys.
    #[track_caller]
    pub fn map_values<U: Data>(
        &self,
        f: impl Fn(V) -> U + Send + Sync + 'static,
    ) -> DStream<(K, U)> {
        let f = Arc::new(f);
        self.step("map_values", move |rdd, _| {
            let f = f.clone();
            Ok(rdd.map_values(move |v| f(v)))
        })
    }

    /// Merges the values of each key within each batch with `f` (associative and
    /// commutative), through a shuffle.
    #[track_caller]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> DStream<(K, V)> {
        let f = Arc::new(f);
        self.step("reduce_by_key", move |rdd, _| {
            let f = f.clone();
            Ok(rdd.reduce_by_key(move |a, b| f(a, b)))
        })
    }
}
