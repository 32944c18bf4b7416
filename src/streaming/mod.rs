//! Micro-batch streaming on the RDD engine: Spark Streaming's half of the story.
//!
//! A [`StreamingContext`] cuts time into batches of a fixed interval. Batch `id` is at
//! *logical* time `zero + id × interval`; every batch builds one RDD per [`DStream`] from
//! its sources and runs the outputs on them. Stateful operators
//! ([`DStream::update_state_by_key`], [`DStream::map_with_state`],
//! [`DStream::reduce_by_key_and_window_inv`]) carry per-key state from batch to batch; windows ([`DStream::window`],
//! [`DStream::reduce_by_key_and_window`]) see the last batches.
//!
//! ```
//! use std::time::Duration;
//! use flintlock::streaming::{FileSink, ManualClock, RddQueue, StreamingContext, Until};
//! use flintlock::Context;
//! # let dir = tempfile::tempdir().unwrap();
//! # let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
//! let ctx = Context::new();
//! let build = |ctx: &Context| {
//!     let queue = RddQueue::from_rdds((0..4).map(|b| ctx.parallelize(vec![b % 2, 7], 1)));
//!     let mut ssc = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
//!     ssc.queue_stream("numbers", queue)
//!         .map(|x: u64| (x, 1u64))
//!         .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
//!             Some(old.unwrap_or(0) + new.len() as u64)
//!         })
//!         .checkpoint_every(2)
//!         .map(|(k, n)| format!("{k}:{n}"))
//!         .sink("out", FileSink::new(&out));
//!     Ok(ssc)
//! };
//! // First run: a new stream; it runs 3 batches and "crashes" (is dropped).
//! let (mut ssc, recovery) = StreamingContext::get_or_create(&ctx, &ckpt, build)?;
//! assert_eq!(recovery.committed, None);
//! ssc.run(Until::Batches(3))?;
//! drop(ssc);
//! // A restart finds batch 2 committed and continues with batch 3.
//! let (mut ssc, recovery) = StreamingContext::get_or_create(&ctx, &ckpt, build)?;
//! assert_eq!(recovery.committed, Some(2));
//! ssc.run(Until::Batches(1))?;
//! let mut last = FileSink::new(&out).read_batch(3)?.unwrap();
//! last.sort();
//! assert_eq!(last, vec!["0:2", "1:2", "7:4"]);
//! # Ok::<(), flintlock::Error>(())
//! ```
//!
//! ## Checkpoints and recovery (S1–S17 of the design)
//! With a checkpoint folder ([`StreamingContext::checkpoint`], or
//! [`StreamingContext::get_or_create`]):
//! - **Metadata**: before a batch runs, its *plan* is written: batch id and time, the
//!   graph's fingerprint, the semantic configuration and, per source, exactly what it reads
//!   (a queue index; file names with lengths and checksums). After its state checkpoints
//!   and outputs succeed, its *commit* is written. Both are checksummed, versioned JSON
//!   written by the crate's temp → fsync → no-replace rename → folder fsync protocol.
//! - **State**: every batch's state RDD is locally truncated (cached, its lineage cut), so
//!   lineage depth and memory stay constant however long the stream runs; every k-th batch
//!   ([`StateStream::checkpoint_every`], default 10) it is written as a reliable checkpoint
//!   *during the batch's own computation*, in one pass (Spark computes it twice).
//! - **Recovery**: `get_or_create` always runs `build` (closures cannot be stored), compares
//!   the rebuilt graph with the recorded one ([`crate::Error::GraphChanged`] names each
//!   difference), opens each operator's newest state checkpoint, rebuilds the batches after
//!   it from their plans without output, and runs the one planned-but-uncommitted batch
//!   again with its recorded input.
//! - **Exactly-once output**: a [`Sink`] is keyed by batch id; replay is deterministic (for
//!   deterministic closures), so a batch reaches a sink once. A sink that already holds a
//!   batch this stream never ran holds another stream's output: that is an error, not a
//!   skipped write. [`DStream::foreach_rdd`] is at-least-once.
//! - **Offline queries**: [`open_state`] reads an operator's committed state at a retained
//!   batch as an RDD, without stopping the stream.
//! - **Retention**: only what recovery needs is kept (each operator's newest committed
//!   state, the plans after it, the newest commit and [`StreamingContext::retain`] older
//!   ones), so the folder stays bounded whatever the run length.
//!
//! Differences from Spark: a changed graph is a named diff, not a deserialization failure
//! or stale code (S17); missed intervals are not replayed one by one after a restart (the
//! next batch takes all new input); the checkpoint folder is locked by one process.
//!
//! Limits: the recorded graph holds each step's kind, order, name and types, not its
//! closure's code, so a changed closure with the same types is not detected (replayed
//! batches then rebuild state with the new code). Chained stateful operators must share
//! their checkpoint interval.

mod clock;
mod dstream;
mod graph;
mod inv_window;
mod map_state;
pub(crate) mod meta;
mod query;
mod sink;
mod socket;
mod sources;
mod state;
mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, ManualClock, StopSignal, WallClock};
pub use dstream::DStream;
pub use graph::GraphPolicy;
pub use inv_window::WindowStateStream;
pub use map_state::{MapWithStateStream, State, StateSpec};
pub use meta::STREAM_FORMAT_VERSION;
pub use query::{open_state, state_batches};
pub use sink::{FileSink, Sink, SINK_MANIFEST};
pub use socket::SOCKET_BUFFER_BYTES;
pub use sources::RddQueue;
pub use state::{StateStream, DEFAULT_CHECKPOINT_EVERY};

use dstream::{desc, Graph, GraphInner};
use graph::{GraphDesc, Role};
use meta::{Commit, Plan, ReplayToken, SemanticConfig, StreamDir, LOG};
use sources::SourceOps;

use crate::checkpoint::AppDir;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{Data, Rdd};

/// A batch's id: batch `id` is at time `zero + id × interval`.
pub type BatchId = u64;

/// One batch: its id and its logical time (since the stream's time zero... plus zero:
/// `zero + id × interval` on the stream's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// The batch id.
    pub id: BatchId,
    /// The batch's logical time on the stream's clock (recorded in its plan, so a replay
    /// sees the same time).
    pub time: Duration,
}

/// When [`StreamingContext::run`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Until {
    /// After this many batches of this call have committed.
    Batches(u64),
    /// Once the batch with this id has committed (at once if it already has).
    Committed(BatchId),
    /// When stopped ([`StreamingContext::stop`] or a [`StopHandle`]).
    Stopped,
}

/// What [`StreamingContext::get_or_create`] found in the checkpoint folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The newest committed batch: `None` for a new stream (or one that never committed).
    pub committed: Option<BatchId>,
    /// The batch that was planned but not committed, which runs again first.
    pub rerun: Option<BatchId>,
    /// How many batches were rebuilt from their plans (without output) to restore state.
    pub replayed: u64,
    /// Graph differences the policy accepted (a new partition count, ...).
    pub changes: Vec<String>,
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.committed {
            None => write!(f, "new stream")?,
            Some(c) => write!(f, "recovered at batch {c}")?,
        }
        if let Some(r) = self.rerun {
            write!(f, ", re-running batch {r}")?;
        }
        if self.replayed > 0 {
            write!(f, ", {} batches rebuilt from their plans", self.replayed)?;
        }
        Ok(())
    }
}

/// Stops a running stream from another thread or from inside an output.
#[derive(Clone, Debug)]
pub struct StopHandle(Arc<StopSignal>);

impl StopHandle {
    /// Asks the stream to stop. `graceful`: the running batch finishes and commits, then
    /// `run` returns. Otherwise the running batch is abandoned at its next output (nothing
    /// of it is committed: its plan stays, and the next `run` or a restart runs it again).
    pub fn stop(&self, graceful: bool) {
        self.0.raise(graceful);
    }
}

/// The input of one batch, as the graph's nodes compute it.
pub(crate) struct BatchRun<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) batch: Batch,
    pub(crate) tokens: &'a BTreeMap<String, ReplayToken>,
    /// Rebuilding state from a plan during recovery: nothing is materialised or output.
    pub(crate) replay: bool,
    /// When this batch may have run before (an earlier attempt in this process, or a
    /// planned batch found by recovery): the newest batch id those runs may have written to
    /// a sink. `None` for a first run: a sink that already holds the batch holds another
    /// stream's output.
    pub(crate) written_upto: Option<BatchId>,
}

/// The driver of a stream: its batch interval, clock, graph and checkpoint folder. Spark's
/// `StreamingContext`.
pub struct StreamingContext {
    ctx: Context,
    interval: Duration,
    graph: Arc<Graph>,
    clock: Arc<dyn Clock>,
    stop: Arc<StopSignal>,
    retain: usize,
    policy: GraphPolicy,
    meta: Option<StreamDir>,
    started: bool,
    zero: Duration,
    next_batch: BatchId,
    /// A planned batch to run (again) before planning a new one.
    pending: Option<Plan>,
    fingerprint: String,
    config: SemanticConfig,
    last_committed: Option<BatchId>,
    /// The accepted graph changes found by `start` on a restart, for `Recovery`.
    changes: Option<Vec<String>>,
    /// The newest batch a previous process may have run (its last commit or pending plan).
    recovered_upto: Option<BatchId>,
    /// The newest batch this process has started to run.
    attempted_upto: Option<BatchId>,
    /// Set when a commit failed after the batch's state moved on: the in-memory stream is
    /// ahead of its folder, so only a restart from the folder may continue.
    poisoned: Option<String>,
}

impl fmt::Debug for StreamingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingContext")
            .field("interval", &self.interval)
            .field("dir", &self.meta.as_ref().map(|m| m.path().to_path_buf()))
            .field("next_batch", &self.next_batch)
            .finish_non_exhaustive()
    }
}

impl StreamingContext {
    /// A stream driver over `ctx` with batches of `interval`, on the wall clock, without a
    /// checkpoint folder.
    ///
    /// # Panics
    /// When `interval` is zero or longer than `u64::MAX` nanoseconds (about 584 years:
    /// times are recorded in nanoseconds).
    #[track_caller]
    pub fn new(ctx: &Context, interval: Duration) -> StreamingContext {
        assert!(
            !interval.is_zero() && u64::try_from(interval.as_nanos()).is_ok(),
            "the batch interval must be longer than zero and at most u64::MAX nanoseconds \
             (about 584 years), not {interval:?}"
        );
        StreamingContext {
            ctx: ctx.clone(),
            interval,
            graph: Arc::new(Graph {
                ctx: ctx.clone(),
                interval,
                inner: parking_lot::Mutex::new(GraphInner::default()),
            }),
            clock: Arc::new(WallClock),
            stop: Arc::new(StopSignal::default()),
            retain: 1,
            policy: GraphPolicy::Strict,
            meta: None,
            started: false,
            zero: Duration::ZERO,
            next_batch: 0,
            pending: None,
            fingerprint: String::new(),
            config: SemanticConfig {
                interval_nanos: interval.as_nanos() as u64,
                states: BTreeMap::new(),
            },
            last_committed: None,
            changes: None,
            recovered_upto: None,
            attempted_upto: None,
            poisoned: None,
        }
    }

    /// Uses `clock` instead of the wall clock ([`ManualClock`] in tests).
    pub fn clock(mut self, clock: impl Clock + 'static) -> StreamingContext {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps the newest commit and `n` older ones (default 1); older commits, and plans and
    /// state checkpoints recovery no longer needs, are removed after each commit.
    pub fn retain(mut self, n: usize) -> StreamingContext {
        self.retain = n;
        self
    }

    /// How strictly a restart must match the recorded graph (default
    /// [`GraphPolicy::Strict`]).
    pub fn graph_policy(mut self, policy: GraphPolicy) -> StreamingContext {
        self.policy = policy;
        self
    }

    /// The RDD context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.interval
    }

    /// The newest committed batch of this stream, if any.
    pub fn last_committed(&self) -> Option<BatchId> {
        self.last_committed
    }

    /// The checkpoint folder, if any.
    pub fn checkpoint_dir(&self) -> Option<&Path> {
        self.meta.as_ref().map(|m| m.path())
    }

    /// A handle that stops the stream from another thread or from inside an output.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Asks the stream to stop (see [`StopHandle::stop`]). A stop asked for while no
    /// `run` is going makes the next `run` return at once; it is honoured once.
    pub fn stop(&self, graceful: bool) {
        self.stop.raise(graceful);
    }

    /// The lineage depth of stateful operator `name`'s current state RDD.
    pub fn state_lineage_depth(&self, name: &str) -> Option<usize> {
        let g = self.graph.inner.lock();
        g.stateful
            .iter()
            .find(|(_, op)| op.name() == name)
            .and_then(|(_, op)| op.lineage_depth())
    }

    /// Enables metadata and state checkpoints in `dir`, for a **new** stream (S8). To
    /// restart a stream from its folder, use [`StreamingContext::get_or_create`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `dir` already holds a stream or other files;
    /// [`Error::Locked`] when another stream uses it; I/O errors.
    pub fn checkpoint(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        if self.started {
            return Err(Error::InvalidArgument(
                "checkpoint(dir) after the stream started".to_string(),
            ));
        }
        let storage = self.ctx.inner.config.storage.clone();
        let meta = StreamDir::open(dir.as_ref(), storage, self.ctx.inner.config.fsync)?;
        if !meta.is_fresh() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a stream: restart it with StreamingContext::get_or_create, \
                 or give this stream a new folder",
                meta.path().display()
            )));
        }
        self.meta = Some(meta);
        Ok(())
    }

    /// Builds a stream with `build` and either starts it fresh in `dir` or, when `dir` holds
    /// a stream, restores it (S9, S10): the rebuilt graph is compared with the recorded one,
    /// each stateful operator's newest state checkpoint is opened, the batches after it are
    /// rebuilt from their plans without output, and a batch that was planned but not
    /// committed is queued to run again first, with its recorded input.
    ///
    /// `build` always runs (closures cannot be stored), on both paths; so does code after
    /// this call.
    ///
    /// # Errors
    /// [`Error::GraphChanged`] listing each difference the [`GraphPolicy`] does not allow;
    /// [`Error::CorruptCheckpoint`] / [`Error::UnsupportedVersion`] naming a damaged,
    /// foreign or newer metadata file (never a silent fallback to an older one);
    /// [`Error::Locked`] when another process runs the stream; errors of `build`.
    pub fn get_or_create(
        ctx: &Context,
        dir: impl AsRef<Path>,
        build: impl FnOnce(&Context) -> Result<StreamingContext>,
    ) -> Result<(StreamingContext, Recovery)> {
        let storage = ctx.inner.config.storage.clone();
        let meta = StreamDir::open(dir.as_ref(), storage, ctx.inner.config.fsync)?;
        let mut ssc = build(ctx)?;
        if !Arc::ptr_eq(&ssc.ctx.inner, &ctx.inner) {
            return Err(Error::InvalidArgument(
                "get_or_create: build returned a StreamingContext over another Context".to_string(),
            ));
        }
        if ssc.started || ssc.meta.is_some() {
            return Err(Error::InvalidArgument(
                "get_or_create: build must return a stream that has not started and has no \
                 checkpoint folder of its own"
                    .to_string(),
            ));
        }
        let fresh = meta.is_fresh();
        ssc.meta = Some(meta);
        ssc.start()?;
        let recovery = if fresh {
            Recovery::default()
        } else {
            ssc.recover()?
        };
        Ok((ssc, recovery))
    }

    /// Adds a source node (for the source constructors).
    #[track_caller]
    pub(crate) fn add_source<T: Data>(
        &mut self,
        name: &str,
        kind: &str,
        input: Option<String>,
        ops: Arc<dyn SourceOps>,
        compute: impl Fn(&BatchRun<'_>) -> Result<Rdd<T>> + Send + Sync + 'static,
    ) -> DStream<T> {
        let mut d = desc(kind, Some(name), &[]);
        d.input = input;
        let stream = self.graph.add(d, compute);
        self.graph.inner.lock().sources.push(ops);
        stream
    }

    /// Fixes the graph, checks it, and prepares the checkpoint folder.
    fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        let (nodes, stateful) = {
            let mut g = self.graph.inner.lock();
            g.frozen = true;
            if !g.errors.is_empty() {
                let mut unique: Vec<&str> = Vec::new();
                for e in &g.errors {
                    if !unique.contains(&e.as_str()) {
                        unique.push(e);
                    }
                }
                let errors = unique.join("; ");
                g.frozen = false;
                return Err(Error::InvalidArgument(errors));
            }
            let stateful: Vec<(usize, Arc<dyn state::StatefulOps>)> = g
                .stateful
                .iter()
                .filter(|(_, op)| op.checkpointed())
                .cloned()
                .collect();
            for (id, op) in &stateful {
                let (partitions, every) = op.settings();
                g.nodes[*id].partitions = Some(partitions);
                g.nodes[*id].every = Some(every);
            }
            (g.nodes.clone(), stateful)
        };
        check_graph(&nodes)?;
        if !stateful.is_empty() && self.meta.is_none() {
            return Err(Error::InvalidArgument(format!(
                "stateful operator `{}` needs a checkpoint folder for its state (S6): call \
                 ssc.checkpoint(dir) or use StreamingContext::get_or_create",
                stateful[0].1.name()
            )));
        }
        let graph = GraphDesc::new(self.interval, nodes);
        self.config.states = stateful
            .iter()
            .map(|(_, op)| (op.name().to_string(), op.settings()))
            .collect();
        self.fingerprint = graph.fingerprint();
        self.zero = self.clock.now();
        if nanos(self.zero).is_none() {
            return Err(Error::InvalidArgument(format!(
                "the clock reads {:?}, past what a stream records (u64::MAX nanoseconds)",
                self.zero
            )));
        }
        if let Some(meta) = &mut self.meta {
            // A restart's graph is checked before anything is written: a refused one
            // leaves the folder as it was.
            if !meta.is_fresh() {
                self.changes = Some(diff_recorded(meta, &graph, self.policy)?);
            }
            self.zero = meta.init(self.zero)?;
            meta.write_graph(&graph)?;
            for (_, op) in &stateful {
                let app = AppDir::open(&meta.state_dir(), op.name(), &self.ctx.inner.config)?;
                op.attach(Arc::new(app));
            }
            let newest_plan = meta.log()?.0.last().copied();
            let sources = self.graph.inner.lock().sources.clone();
            for s in &sources {
                s.attach(meta, &self.ctx, newest_plan)?;
            }
        }
        let sources = self.graph.inner.lock().sources.clone();
        for s in &sources {
            s.start()?;
        }
        self.started = true;
        Ok(())
    }

    /// Restores progress and state from the checkpoint folder (see `get_or_create`).
    fn recover(&mut self) -> Result<Recovery> {
        let meta = self
            .meta
            .as_ref()
            .expect("recover runs with a checkpoint folder");
        let (plans, commits) = meta.log()?;
        let commit = match commits.last() {
            Some(&c) => Some(meta.read_commit(c)?),
            None => None,
        };
        if plans.is_empty()
            && commits.is_empty()
            && meta::state_checkpoints_exist(meta.storage(), meta.path())
        {
            return Err(Error::corrupt(
                meta.path().join(LOG),
                "the stream's log is empty, but state checkpoints exist: its plans and \
                 commits were removed, so its progress is lost",
            ));
        }
        let mut recovery = Recovery {
            committed: commit.as_ref().map(|c| c.batch),
            changes: self.changes.take().unwrap_or_default(),
            ..Recovery::default()
        };
        let (sources, stateful) = {
            let g = self.graph.inner.lock();
            (g.sources.clone(), g.stateful.clone())
        };
        // State: each operator's newest committed checkpoint, then the batches after it.
        for (_, op) in &stateful {
            let r = commit
                .as_ref()
                .filter(|_| op.checkpointed())
                .and_then(|c| c.states.get(op.name()));
            op.restore(&self.ctx, meta.path(), r)?;
        }
        if let Some(c) = &commit {
            let low = low_water(&stateful, c.batch);
            // The plans from `low` to the commit, following each plan's `prev` link (ids
            // skipped after downtime were never planned).
            let mut last: Option<BatchId> = None;
            let mut graphs: BTreeMap<String, GraphDesc> = BTreeMap::new();
            for &b in plans.iter().filter(|&&b| b >= low && b <= c.batch) {
                let plan = meta.read_plan(b)?;
                if !graphs.contains_key(&plan.graph) {
                    graphs.insert(plan.graph.clone(), meta.read_graph(&plan.graph)?);
                }
                let recorded = &graphs[&plan.graph];
                for (_, op) in &stateful {
                    let node = recorded
                        .nodes
                        .iter()
                        .find(|n| n.name.as_deref() == Some(op.name()));
                    op.replay_under(node);
                }
                let linked = match last {
                    None => plan.prev.is_none_or(|p| p < low),
                    Some(l) => plan.prev == Some(l),
                };
                if !linked {
                    let missing = plan.prev.unwrap_or(0);
                    return Err(missing_plan(meta.path(), missing, low, c.batch));
                }
                last = Some(b);
                let run = BatchRun {
                    ctx: &self.ctx,
                    batch: Batch {
                        id: b,
                        time: Duration::from_nanos(plan.time_nanos),
                    },
                    tokens: &plan.sources,
                    replay: true,
                    written_upto: None,
                };
                // Every operator sees every replayed batch: one restored past it skips it
                // (a state), one keeping history records it (a window).
                for (_, op) in &stateful {
                    op.step(&run)?;
                    op.promote();
                }
                self.clear_batch();
                recovery.replayed += 1;
            }
            for (_, op) in &stateful {
                op.replay_under(None);
            }
            if low <= c.batch && last != Some(c.batch) {
                return Err(missing_plan(meta.path(), c.batch, low, c.batch));
            }
            for s in &sources {
                s.restore(c.sources.get(s.name()))?;
            }
            self.last_committed = Some(c.batch);
            self.next_batch = c.batch + 1;
        }
        // At most one plan is newer than the newest commit: the batch that was running.
        let committed = commit.as_ref().map(|c| c.batch);
        match plans
            .last()
            .copied()
            .filter(|&p| committed.is_none_or(|c| p > c))
        {
            Some(p) => {
                let plan = meta.read_plan(p)?;
                if plan.prev != committed {
                    return Err(Error::corrupt(
                        meta.path().join(LOG),
                        format!(
                            "batch {p} was planned after batch {} committed, but the newest \
                             commit found is {}: commits are missing from the log",
                            plan.prev.map_or("none".into(), |b| b.to_string()),
                            committed.map_or("none".into(), |b| b.to_string()),
                        ),
                    ));
                }
                self.next_batch = p;
                self.pending = Some(plan);
                recovery.rerun = Some(p);
                self.recovered_upto = Some(p);
            }
            None => {
                self.recovered_upto = committed;
                if let Some(c) = committed {
                    // Missed intervals are not run one by one: the next batch is the one
                    // due now.
                    let due = self.clock.now().saturating_sub(self.zero).as_nanos()
                        / self.interval.as_nanos().max(1);
                    self.next_batch = self.next_batch.max(due as BatchId).max(c + 1);
                }
            }
        }
        Ok(recovery)
    }

    /// Runs batches until `until` (or a stop). Each batch waits for its time on the clock,
    /// is planned (the plan written first when checkpointing), computes its stateful
    /// operators and outputs, and commits.
    ///
    /// # Errors
    /// The first failing batch's error (a task failure, an output's error, I/O): the batch
    /// is not committed, and calling `run` again retries it with the same input. An error
    /// writing a commit leaves the stream ahead of its folder: `run` then refuses to go on,
    /// and a restart with `get_or_create` continues from the folder.
    pub fn run(&mut self, until: Until) -> Result<()> {
        self.ctx.inner.single_process("streaming")?;
        if let Some(why) = &self.poisoned {
            return Err(Error::InvalidArgument(format!(
                "the stream cannot continue in this process: {why}; restart it with \
                 StreamingContext::get_or_create"
            )));
        }
        self.start()?;
        let result = self.run_batches(until);
        // A stop is honoured once: by the run it ended, or by this one when it was asked
        // for before (never carried into the next run).
        self.stop.reset();
        result
    }

    fn run_batches(&mut self, until: Until) -> Result<()> {
        let mut done = 0u64;
        loop {
            let finished = match until {
                Until::Batches(n) => done >= n,
                Until::Committed(id) => self.last_committed.is_some_and(|c| c >= id),
                Until::Stopped => false,
            };
            if finished {
                return Ok(());
            }
            if self.stop.is_raised() {
                return Ok(());
            }
            if self.pending.is_none() {
                let id = self.next_batch;
                let time = batch_offset(self.interval, id)
                    .and_then(|t| self.zero.checked_add(t))
                    .filter(|&t| nanos(t).is_some())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("batch {id}'s time overflows"))
                    })?;
                if !self.clock.wait_until(time, &self.stop) {
                    continue; // stopped while waiting
                }
                self.pending = Some(self.plan_batch(id, time)?);
            }
            // The plan stays pending until its batch commits, whatever happens meanwhile
            // (an error, a panic in an output, a stop): the next `run` runs it again.
            let plan = self.pending.clone().expect("planned above");
            match self.run_batch(&plan) {
                Ok(true) => {
                    self.pending = None;
                    done += 1;
                }
                Ok(false) => continue, // abandoned by a stop: the loop returns
                Err(e) => {
                    if self.poisoned.is_some() {
                        self.pending = None;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Plans batch `id` at `time`: its sources' input, written as its plan when
    /// checkpointing. An earlier attempt in this process may have written the plan and then
    /// failed (its folder fsync, say): that plan is the batch, as after a restart, and the
    /// sources are not asked again (a socket would log other lines).
    fn plan_batch(&self, id: BatchId, time: Duration) -> Result<Plan> {
        if let Some(meta) = &self.meta
            && meta.log()?.0.last() == Some(&id)
        {
            let existing = meta.read_plan(id)?;
            if existing.prev != self.last_committed {
                return Err(Error::corrupt(
                    meta.path().join(LOG),
                    format!(
                        "batch {id} has a plan this stream did not write (it follows \
                             batch {:?}, not {:?})",
                        existing.prev, self.last_committed
                    ),
                ));
            }
            // Its folder fsync may be what failed: durable before use.
            meta.sync_log()?;
            return Ok(existing);
        }
        let sources = self.graph.inner.lock().sources.clone();
        let plan = Plan::new(
            id,
            self.last_committed,
            time,
            self.fingerprint.clone(),
            self.config.clone(),
            sources::plan_all(&sources, &self.ctx, id)?,
        );
        if let Some(meta) = &self.meta {
            meta.write_plan(&plan)?;
        }
        Ok(plan)
    }

    /// Runs one planned batch with output and commits it. `Ok(false)`: abandoned by a
    /// non-graceful stop.
    fn run_batch(&mut self, plan: &Plan) -> Result<bool> {
        let (sources, stateful, outputs) = {
            let g = self.graph.inner.lock();
            (g.sources.clone(), g.stateful.clone(), g.outputs.clone())
        };
        let prior = self.recovered_upto.max(self.attempted_upto);
        self.attempted_upto = self.attempted_upto.max(Some(plan.batch));
        let run = BatchRun {
            ctx: &self.ctx,
            batch: Batch {
                id: plan.batch,
                time: Duration::from_nanos(plan.time_nanos),
            },
            tokens: &plan.sources,
            replay: false,
            written_upto: prior.filter(|&p| p >= plan.batch),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (_, op) in &stateful {
                op.step(&run)?;
            }
            for out in &outputs {
                if self.stop.is_raised() && !self.stop.is_graceful() {
                    return Ok(false);
                }
                out.run(&run)?;
            }
            // A stop raised by the last output abandons the batch too.
            Ok(!self.stop.is_raised() || self.stop.is_graceful())
        }));
        self.clear_batch();
        let rollback = || {
            for (_, op) in &stateful {
                op.rollback();
            }
        };
        match result {
            Ok(Ok(true)) => {}
            Ok(other) => {
                rollback();
                return other;
            }
            Err(panic) => {
                // The batch is not committed and its plan stays pending; the panic is the
                // caller's to see.
                rollback();
                std::panic::resume_unwind(panic);
            }
        }
        for (_, op) in &stateful {
            op.promote();
        }
        for s in &sources {
            if let Some(t) = plan.sources.get(s.name()) {
                s.advance(t);
            }
        }
        if let Some(meta) = &self.meta {
            let states = stateful
                .iter()
                .filter(|(_, op)| op.checkpointed())
                .filter_map(|(_, op)| Some((op.name().to_string(), op.committed()?)))
                .collect();
            let low_water = low_water(&stateful, plan.batch);
            let positions = sources
                .iter()
                .map(|s| (s.name().to_string(), s.position()))
                .collect();
            // Under the graph the batch ran with (a re-run plan may name an older one).
            let commit = Commit::new(plan, &self.fingerprint, states, positions, low_water);
            if let Err(e) = meta.write_commit(&commit) {
                self.poisoned = Some(format!(
                    "writing the commit of batch {} failed: {e}",
                    plan.batch
                ));
                return Err(e);
            }
            // Retention only after the commit is durable; best effort.
            let _ = meta.retain(&commit, self.retain);
            for (_, op) in stateful.iter().filter(|(_, op)| op.checkpointed()) {
                meta.retain_state(op.name(), commit.states.get(op.name()));
            }
            for s in &sources {
                s.retain(commit.low_water);
            }
        }
        self.last_committed = Some(plan.batch);
        self.next_batch = plan.batch + 1;
        Ok(true)
    }

    /// Drops every node's RDD of the batch that just ran.
    fn clear_batch(&self) {
        let caches = self.graph.inner.lock().caches.clone();
        for c in caches {
            c.clear();
        }
    }
}

impl Drop for StreamingContext {
    /// Stops the sources' background work (a socket's receiver thread).
    fn drop(&mut self) {
        let sources = self.graph.inner.lock().sources.clone();
        for s in sources {
            s.shutdown();
        }
    }
}

/// The differences between the graph recorded in `meta` (of the newest commit, else of the
/// newest plan) and `current` that `policy` accepts; [`Error::GraphChanged`] when any is
/// not accepted.
fn diff_recorded(
    meta: &StreamDir,
    current: &GraphDesc,
    policy: GraphPolicy,
) -> Result<Vec<String>> {
    let (plans, commits) = meta.log()?;
    let recorded_fp = match (commits.last(), plans.last()) {
        (Some(&c), _) => meta.read_commit(c)?.graph,
        (None, Some(&p)) => meta.read_plan(p)?.graph,
        (None, None) => return Ok(Vec::new()),
    };
    let recorded = meta.read_graph(&recorded_fp)?;
    let (breaking, accepted) = graph::diff(&recorded, current, policy);
    if !breaking.is_empty() {
        return Err(Error::GraphChanged {
            dir: meta.path().to_path_buf(),
            differences: breaking,
        });
    }
    Ok(accepted)
}

/// The oldest batch whose plan a recovery from commit `committed` replays: the least the
/// stateful operators and windows need (none: no plan).
///
/// Every batch from the operators' least low water on is replayed (the next batch,
/// `committed + 1`, when none replays), and each batch from there reads the whole window
/// ending at it: a state fed by `window(3, 1)` replaying batch `b` needs the window's
/// slices of `b − 2` and `b − 1` too. So each window reaches back `len − 1` batches before
/// that first batch (a window beside the state, not above it, replays those few batches
/// for nothing).
fn low_water(stateful: &[(usize, Arc<dyn state::StatefulOps>)], committed: BatchId) -> BatchId {
    let replayed = stateful
        .iter()
        .map(|(_, op)| op.low_water(committed))
        .min()
        .unwrap_or(committed + 1);
    stateful
        .iter()
        .filter_map(|(_, op)| op.window_len())
        .map(|len| (replayed + 1).saturating_sub(len))
        .fold(replayed, BatchId::min)
}

/// The error for a plan recovery needs but cannot find.
fn missing_plan(dir: &Path, batch: BatchId, low: BatchId, committed: BatchId) -> Error {
    Error::corrupt(
        dir.join(LOG),
        format!(
            "the plan of batch {batch} is missing; recovering the state committed at batch \
             {committed} needs every plan from batch {low} on"
        ),
    )
}

/// `d` in nanoseconds, as the stream's files record times; `None` past `u64::MAX`.
fn nanos(d: Duration) -> Option<u64> {
    u64::try_from(d.as_nanos()).ok()
}

/// `id × interval`, or `None` on overflow.
fn batch_offset(interval: Duration, id: BatchId) -> Option<Duration> {
    let nanos = interval.as_nanos().checked_mul(u128::from(id))?;
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// Checks names (unique among sources, stateful operators and outputs) and that chained
/// stateful operators checkpoint together.
fn check_graph(nodes: &[graph::NodeDesc]) -> Result<()> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for n in nodes {
        if let Some(name) = &n.name
            && let Some(first) = names.insert(name, &n.kind)
        {
            return Err(Error::InvalidArgument(format!(
                "two stream operators are named `{name}` ({first} and {}): names must be \
                     unique, since a restart finds state and progress by them",
                n.kind
            )));
        }
    }
    // A stateful operator reading another's state must checkpoint in the same batches:
    // recovery restores both at one batch and rebuilds the rest from the plans.
    for n in nodes.iter().filter(|n| n.role() == Role::Stateful) {
        let mut stack = n.parents.clone();
        let mut seen = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let p = &nodes[id];
            if p.role() == Role::Stateful && p.every != n.every {
                return Err(Error::InvalidArgument(format!(
                    "stateful `{}` reads the state of `{}`: their checkpoint intervals must \
                     be equal ({} ≠ {} batches)",
                    n.name.as_deref().unwrap_or("?"),
                    p.name.as_deref().unwrap_or("?"),
                    n.every.unwrap_or(0),
                    p.every.unwrap_or(0)
                )));
            }
            stack.extend(p.parents.iter().copied());
        }
    }
    Ok(())
}
