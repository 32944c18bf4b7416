//! `update_state_by_key` (S5, S6): per-key state carried from batch to batch, locally
//! truncated every batch and reliably checkpointed every k-th, in the batch's own pass.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dstream::{desc, DNode, DStream};
use super::graph::NodeDesc;
use super::meta::StateRef;
use super::{BatchId, BatchRun};
use crate::checkpoint::AppDir;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{Data, Key, Partitioner, Rdd, StorageLevel};

/// The default reliable checkpoint interval of a stateful operator, in batches (Spark's
/// `mapWithState` choice, inside the 5–10 slides Spark recommends).
pub const DEFAULT_CHECKPOINT_EVERY: u32 = 10;

/// A stateful operator as the driver sees it.
pub(crate) trait StatefulOps: Send + Sync {
    fn name(&self) -> &str;
    /// (state partitions, reliable checkpoint interval in batches).
    fn settings(&self) -> (usize, u32);
    /// Gives the operator its state folder (`<stream>/state/<name>/`).
    fn attach(&self, dir: Arc<AppDir>);
    /// Computes the state of `run`'s batch from the previous one and stages it. Outside a
    /// replay it is materialised: cached and locally truncated, or (every k-th batch)
    /// reliably checkpointed while it computes.
    fn step(&self, run: &BatchRun<'_>) -> Result<()>;
    /// The staged state becomes the current one (the batch committed or was replayed).
    fn promote(&self);
    /// Drops the staged state (the batch failed).
    fn rollback(&self);
    /// The newest reliable state checkpoint of a promoted batch.
    fn committed(&self) -> Option<StateRef>;
    /// Opens the recorded state checkpoint `state` (relative to `stream_dir`), or starts
    /// from the initial state when `None`.
    fn restore(&self, ctx: &Context, stream_dir: &Path, state: Option<&StateRef>) -> Result<()>;
    /// The lineage depth of the current state RDD.
    fn lineage_depth(&self) -> Option<usize>;
    /// Whether the operator has a named state checkpointed in the stream's folder (a
    /// window keeps only recent slices, rebuilt from the plans on recovery).
    fn checkpointed(&self) -> bool {
        true
    }
    /// The oldest batch whose plan a recovery from commit `committed` must replay for this
    /// operator (the commit's low water is the least over the operators, reached back by
    /// each window's [`StatefulOps::window_len`]); `committed + 1` when none.
    fn low_water(&self, committed: BatchId) -> BatchId;
    /// A window's length in batches (`None` for every other operator): a replayed batch
    /// reads the whole window ending at it, so recovery rebuilds the window's slices from
    /// `len − 1` batches before the first batch any operator replays.
    fn window_len(&self) -> Option<u64> {
        None
    }
    /// Recovery is about to replay a batch planned under a graph in which this operator
    /// was `recorded` (`None`: not recorded, or the replay is over): settings that shape
    /// the state (a timeout) are taken from there while replaying.
    fn replay_under(&self, _recorded: Option<&NodeDesc>) {}
}

type UpdateFn<K, V, S> = dyn Fn(&K, Vec<V>, Option<S>) -> Option<S> + Send + Sync;

struct Settings<K: Data, S: Data> {
    partitions: usize,
    every: u32,
    initial: Option<Rdd<(K, S)>>,
}

struct Staged<K: Data, S: Data> {
    batch: BatchId,
    rdd: Rdd<(K, S)>,
    written: Option<StateRef>,
}

pub(crate) struct StateOp<K: Data, V: Data, S: Data> {
    name: String,
    parent: Arc<DNode<(K, V)>>,
    f: Arc<UpdateFn<K, V, S>>,
    settings: Mutex<Settings<K, S>>,
    dir: OnceLock<Arc<AppDir>>,
    /// The state after the last promoted batch.
    cell: StateCell<(K, S)>,
    staged: Mutex<Option<Staged<K, S>>>,
}

impl<K, V, S> StateOp<K, V, S>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
    S: Data + Serialize + DeserializeOwned,
{
    /// The state RDD of `batch` (staged or current).
    fn state_of(&self, batch: BatchId) -> Result<Rdd<(K, S)>> {
        if let Some(s) = &*self.staged.lock()
            && s.batch == batch
        {
            return Ok(s.rdd.clone());
        }
        match self.cell.at(batch) {
            Some(rdd) => Ok(rdd),
            None => Err(Error::Internal(format!(
                "stateful `{}` has no state for batch {batch}",
                self.name
            ))),
        }
    }
}

impl<K, V, S> StatefulOps for StateOp<K, V, S>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
    S: Data + Serialize + DeserializeOwned,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> (usize, u32) {
        let s = self.settings.lock();
        (s.partitions, s.every)
    }

    fn attach(&self, dir: Arc<AppDir>) {
        let _ = self.dir.set(dir);
    }

    fn step(&self, run: &BatchRun<'_>) -> Result<()> {
        let b = run.batch.id;
        if self.cell.restored_past(b) {
            return Ok(()); // restored from a checkpoint at or after this batch
        }
        let (partitions, every, initial) = {
            let s = self.settings.lock();
            (s.partitions, s.every, s.initial.clone())
        };
        let prev = match self.cell.get() {
            Some((_, rdd)) => rdd,
            None => initial.unwrap_or_else(|| run.ctx.empty()),
        };
        let input = self.parent.rdd(run)?;
        let f = self.f.clone();
        let state = prev
            .cogroup_with(&input, Partitioner::hash(partitions))
            .map_partitions_preserving_partitioning(move |groups| {
                let f = f.clone();
                groups.filter_map(move |(k, (old, new))| {
                    let s = f(&k, new, old.into_iter().next());
                    s.map(|s| (k, s))
                })
            })
            .set_name(format!("state `{}` @ batch {b}", self.name));
        let written = if run.replay {
            None
        } else {
            let reliable = self
                .dir
                .get()
                .filter(|_| (b + 1).is_multiple_of(u64::from(every)));
            materialize(&state, reliable, &self.name, b)?
        };
        *self.staged.lock() = Some(Staged {
            batch: b,
            rdd: state,
            written,
        });
        Ok(())
    }

    fn promote(&self) {
        if let Some(s) = self.staged.lock().take() {
            self.cell.promote(s.batch, s.rdd, s.written);
        }
    }

    fn rollback(&self) {
        let staged = self.staged.lock().take();
        drop(staged);
    }

    fn committed(&self) -> Option<StateRef> {
        self.cell.committed()
    }

    fn restore(&self, ctx: &Context, stream_dir: &Path, state: Option<&StateRef>) -> Result<()> {
        *self.staged.lock() = None;
        self.cell.restore(ctx, stream_dir, &self.name, state)
    }

    fn lineage_depth(&self) -> Option<usize> {
        self.cell.lineage_depth()
    }

    fn low_water(&self, _committed: BatchId) -> BatchId {
        // Without a state checkpoint yet, recovery starts from the initial state.
        self.committed().map_or(0, |s| s.batch + 1)
    }
}

/// A stateful operator's promoted state: its state RDD after the last promoted batch, and
/// its newest committed reliable checkpoint.
pub(crate) struct StateCell<T: Data> {
    current: Mutex<Option<(BatchId, Rdd<T>)>>,
    committed: Mutex<Option<StateRef>>,
}

impl<T: Data> StateCell<T> {
    pub(crate) fn new() -> Self {
        StateCell {
            current: Mutex::new(None),
            committed: Mutex::new(None),
        }
    }

    /// The promoted state and its batch.
    pub(crate) fn get(&self) -> Option<(BatchId, Rdd<T>)> {
        self.current.lock().clone()
    }

    /// The promoted state when it is batch `batch`'s.
    pub(crate) fn at(&self, batch: BatchId) -> Option<Rdd<T>> {
        self.get().filter(|(b, _)| *b == batch).map(|(_, r)| r)
    }

    /// Whether the state is already at or past batch `batch` (restored from a checkpoint
    /// while recovery replays the batches before it).
    pub(crate) fn restored_past(&self, batch: BatchId) -> bool {
        self.current
            .lock()
            .as_ref()
            .is_some_and(|(b, _)| *b >= batch)
    }

    /// Batch `batch`'s state becomes the promoted one (`written`: its reliable checkpoint).
    pub(crate) fn promote(&self, batch: BatchId, rdd: Rdd<T>, written: Option<StateRef>) {
        if let Some(w) = written {
            *self.committed.lock() = Some(w);
        }
        *self.current.lock() = Some((batch, rdd));
    }

    pub(crate) fn committed(&self) -> Option<StateRef> {
        self.committed.lock().clone()
    }

    /// Opens operator `name`'s recorded state checkpoint `state` (of records `C`, made
    /// into the state RDD by `convert`), or forgets the state (back to the initial one)
    /// when `None`.
    pub(crate) fn restore_via<C: Data + Serialize + DeserializeOwned>(
        &self,
        ctx: &Context,
        stream_dir: &Path,
        name: &str,
        state: Option<&StateRef>,
        convert: impl FnOnce(Rdd<C>) -> Rdd<T>,
    ) -> Result<()> {
        match state {
            None => {
                *self.current.lock() = None;
                *self.committed.lock() = None;
            }
            Some(r) => {
                let rdd = convert(open_state_checkpoint::<C>(ctx, stream_dir, name, r)?);
                *self.current.lock() = Some((r.batch, rdd));
                *self.committed.lock() = Some(r.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn lineage_depth(&self) -> Option<usize> {
        self.current.lock().as_ref().map(|(_, r)| r.lineage_depth())
    }
}

impl<T: Data + Serialize + DeserializeOwned> StateCell<T> {
    /// Opens operator `name`'s recorded state checkpoint `state`, or forgets the state
    /// (back to the initial one) when `None`.
    pub(crate) fn restore(
        &self,
        ctx: &Context,
        stream_dir: &Path,
        name: &str,
        state: Option<&StateRef>,
    ) -> Result<()> {
        self.restore_via::<T>(ctx, stream_dir, name, state, |rdd| rdd)
    }
}

/// Materialises a stateful operator's new state of batch `b`: into `reliable`, in the
/// same pass, as a checkpoint of the operator's series (its record returned), else
/// cached and locally truncated.
pub(crate) fn materialize<T: Data + Serialize + DeserializeOwned>(
    state: &Rdd<T>,
    reliable: Option<&Arc<AppDir>>,
    name: &str,
    b: BatchId,
) -> Result<Option<StateRef>> {
    match reliable {
        Some(dir) => {
            // One pass: the action computes, caches and writes the state.
            state.persist(StorageLevel::MemoryOnly);
            write_state(state, dir, name, b).map(Some)
        }
        None => {
            state.local_checkpoint()?;
            state.count()?;
            Ok(None)
        }
    }
}

/// Writes `rdd` as operator `name`'s reliable state checkpoint of batch `b` (into the
/// operator's series, by one action) and returns the commit's record of it.
pub(crate) fn write_state<T: Data + Serialize + DeserializeOwned>(
    rdd: &Rdd<T>,
    dir: &Arc<AppDir>,
    name: &str,
    b: BatchId,
) -> Result<StateRef> {
    Ok(state_ref(name, b, &write_series(rdd, dir, name, b)?))
}

/// Writes `rdd` into `dir` as step `b` of series `name` (by one action) and returns the
/// committed checkpoint folder.
pub(crate) fn write_series<T: Data + Serialize + DeserializeOwned>(
    rdd: &Rdd<T>,
    dir: &Arc<AppDir>,
    name: &str,
    b: BatchId,
) -> Result<std::path::PathBuf> {
    crate::checkpoint::mark_into(rdd, dir.clone(), name, b)?;
    rdd.count()?;
    rdd.checkpoint_path()
        .ok_or_else(|| Error::Internal(format!("`{name}` of batch {b} has no checkpoint")))
}

/// Opens the state checkpoint `r` of operator `name` (relative to `stream_dir`), checking
/// that its manifest records that operator and batch.
pub(crate) fn open_state_checkpoint<T: Data + Serialize + DeserializeOwned>(
    ctx: &Context,
    stream_dir: &Path,
    name: &str,
    r: &StateRef,
) -> Result<Rdd<T>> {
    let path = stream_dir.join(&r.path);
    let manifest = crate::checkpoint::read_manifest(
        ctx.inner.config.storage.as_ref(),
        &path.join(crate::checkpoint::MANIFEST),
    )
    .map_err(|e| match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::corrupt(
                &path,
                format!(
                    "the state checkpoint of `{name}` at batch {} that the newest commit \
                     names is missing: the state cannot be restored",
                    r.batch
                ),
            )
        }
        e => e,
    })?;
    match &manifest.series {
        Some(s) if s.name == name && s.step == r.batch => {}
        other => {
            return Err(Error::corrupt(
                &path,
                format!(
                    "the commit names this folder as the state of `{name}` at batch {}, but \
                     its manifest records {other:?}",
                    r.batch
                ),
            ))
        }
    }
    ctx.open_checkpoint::<T>(&path)
}

/// The commit's record of a state checkpoint folder (`state/<op>/rdd-<id>-<write id>`).
fn state_ref(op: &str, batch: BatchId, path: &Path) -> StateRef {
    let folder = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let write_id = folder
        .rsplit('-')
        .next()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    StateRef {
        batch,
        path: format!("{}/{op}/{folder}", super::meta::STATE),
        write_id,
    }
}

/// The stream of an `update_state_by_key` operator's state: a [`DStream`] of `(key,
/// state)` with settings for the operator. Settings take effect when the stream starts.
pub struct StateStream<K: Data, S: Data> {
    stream: DStream<(K, S)>,
    settings: Arc<dyn StateSettings<K, S>>,
}

trait StateSettings<K: Data, S: Data>: Send + Sync {
    fn set_every(&self, k: u32);
    fn set_partitions(&self, n: usize);
    fn set_initial(&self, rdd: Rdd<(K, S)>);
}

impl<K: Data, V: Data, S: Data> StateSettings<K, S> for StateOp<K, V, S> {
    fn set_every(&self, k: u32) {
        self.settings.lock().every = k;
    }
    fn set_partitions(&self, n: usize) {
        self.settings.lock().partitions = n;
    }
    fn set_initial(&self, rdd: Rdd<(K, S)>) {
        self.settings.lock().initial = Some(rdd);
    }
}

impl<K: Data, S: Data> fmt::Debug for StateStream<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.stream, f)
    }
}

impl<K: Data, S: Data> Clone for StateStream<K, S> {
    fn clone(&self) -> Self {
        StateStream {
            stream: self.stream.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<K: Data, S: Data> std::ops::Deref for StateStream<K, S> {
    type Target = DStream<(K, S)>;
    fn deref(&self) -> &DStream<(K, S)> {
        &self.stream
    }
}

impl<K: Data, S: Data> StateStream<K, S> {
    /// Writes the state as a reliable checkpoint every `k` batches (batches `k − 1`,
    /// `2k − 1`, ...; default [`DEFAULT_CHECKPOINT_EVERY`]), during that batch's own
    /// computation. Between them the state is locally truncated, so its lineage stays
    /// constant either way; `k` trades the batches a recovery replays (at most `k`) against
    /// write cost (S12–S14).
    ///
    /// # Panics
    /// When `k` is 0.
    #[track_caller]
    pub fn checkpoint_every(self, k: u32) -> Self {
        assert!(
            k >= 1,
            "checkpoint_every(0): the interval is at least 1 batch"
        );
        self.settings.set_every(k);
        self
    }

    /// The number of state partitions (default: the context's thread count when the
    /// operator was made). Changing it between runs repartitions the recovered state once.
    ///
    /// # Panics
    /// When `n` is 0.
    #[track_caller]
    pub fn partitions(self, n: usize) -> Self {
        assert!(n >= 1, "partitions(0): a state has at least 1 partition");
        self.settings.set_partitions(n);
        self
    }

    /// The state before the first batch (Spark's `initialRDD`). With duplicate keys, the
    /// first value of a key is its state.
    pub fn initial_state(self, rdd: Rdd<(K, S)>) -> Self {
        self.settings.set_initial(rdd);
        self
    }

    /// The state as a plain [`DStream`].
    pub fn stream(&self) -> DStream<(K, S)> {
        self.stream.clone()
    }
}

impl<K, V> DStream<(K, V)>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
{
    /// Per-key state across batches (Spark's `updateStateByKey`, S6): for **every** key
    /// with a state or with values in the batch, `f(key, values of this batch, previous
    /// state)` gives the new state; `None` removes the key. The result is the state after
    /// each batch.
    ///
    /// The state needs a streaming checkpoint folder ([`super::StreamingContext::checkpoint`]
    /// or [`super::StreamingContext::get_or_create`]): every k-th batch's state is written
    /// there ([`StateStream::checkpoint_every`]), and a restart resumes from it. `name` is
    /// the operator's stable, unique name: its state folder and its entry in the commits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flintlock::streaming::{ManualClock, RddQueue, StreamingContext, Until};
    /// use flintlock::Context;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ctx = Context::new();
    /// let queue = RddQueue::from_rdds([
    ///     ctx.parallelize(vec!["a", "b", "a"], 1),
    ///     ctx.parallelize(vec!["b"], 1),
    /// ]);
    /// let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    /// ssc.checkpoint(dir.path())?;
    /// let counts = ssc
    ///     .queue_stream("words", queue)
    ///     .map(|w| (w.to_string(), 1u64))
    ///     .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
    ///         Some(old.unwrap_or(0) + new.iter().sum::<u64>())
    ///     });
    /// let last = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let out = last.clone();
    /// counts.foreach_rdd("show", move |rdd, _| {
    ///     let mut v = rdd.collect()?;
    ///     v.sort();
    ///     *out.lock().unwrap() = v;
    ///     Ok(())
    /// });
    /// ssc.run(Until::Batches(2))?;
    /// assert_eq!(*last.lock().unwrap(), vec![("a".to_string(), 2), ("b".to_string(), 2)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    pub fn update_state_by_key<S>(
        &self,
        name: &str,
        f: impl Fn(&K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    ) -> StateStream<K, S>
    where
        S: Data + Serialize + DeserializeOwned,
    {
        let op = Arc::new(StateOp {
            name: name.to_string(),
            parent: self.node.clone(),
            f: Arc::new(f),
            settings: Mutex::new(Settings {
                partitions: self.graph.ctx.threads().max(1),
                every: DEFAULT_CHECKPOINT_EVERY,
                initial: None,
            }),
            dir: OnceLock::new(),
            cell: StateCell::new(),
            staged: Mutex::new(None),
        });
        let reader = op.clone();
        let stream = self.add_stateful::<S, _>(
            desc("update_state_by_key", Some(name), &[self.node.id]),
            op.clone(),
            move |run| reader.state_of(run.batch.id),
        );
        StateStream {
            stream,
            settings: op,
        }
    }
}
