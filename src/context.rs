//! [`Context`] (Spark's `SparkContext`): the thread pool, id counters, block store, shuffle
//! store, checkpoint directory and listeners that every RDD of a job shares.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use crate::block_store::BlockStore;
use crate::checkpoint::{AppDir, Compression, Storage};
use crate::error::{Error, Result};
use crate::listener::{Event, Listener};
use crate::shuffle::ShuffleStore;

/// The entry point: creates RDDs and runs their jobs on its own rayon pool.
///
/// A `Context` is a cheap handle (`Arc` inside); clones share everything. It is `Send + Sync`,
/// and actions may run from several threads at once.
///
/// ```
/// use flintlock::Context;
/// let ctx = Context::builder().app_name("doc").threads(2).build()?;
/// assert_eq!(ctx.threads(), 2);
/// assert_eq!(ctx.parallelize(vec![1, 2, 3], 2).count()?, 3);
/// # Ok::<(), flintlock::Error>(())
/// ```
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<ContextInner>,
}

pub(crate) struct ContextInner {
    pub(crate) app_name: String,
    pub(crate) app_id: String,
    /// Unique per context in this process: tells contexts apart even when they share an app
    /// id (RDDs of two contexts must never be combined).
    pub(crate) serial: u64,
    /// Whether the app id was generated (unique to this context) rather than given.
    pub(crate) generated_app_id: bool,
    pub(crate) pool: rayon::ThreadPool,
    next_rdd_id: AtomicUsize,
    next_shuffle_id: AtomicUsize,
    /// Ids of RDDs and shuffles made inside tasks, in a cluster (see
    /// [`ContextInner::new_rdd_id`]).
    next_task_local_id: AtomicUsize,
    next_job_id: AtomicUsize,
    next_stage_id: AtomicUsize,
    pub(crate) blocks: BlockStore,
    pub(crate) shuffles: ShuffleStore,
    /// Copy on write: `emit` clones the `Arc` and calls the listeners with no lock held, so
    /// a listener may add listeners or run jobs.
    listeners: RwLock<Arc<Vec<Arc<RegisteredListener>>>>,
    pub(crate) checkpoint_dir: RwLock<Option<Arc<AppDir>>>,
    /// Checkpoint directories this context used before, as long as RDDs still read them:
    /// setting one again takes it back (its lock is this process's already).
    replaced_dirs: parking_lot::Mutex<Vec<std::sync::Weak<AppDir>>>,
    pub(crate) jobs: crate::scheduler::JobRegistry,
    pub(crate) partitioners: crate::partitioner::PartitionerRegistry,
    /// The memory budget, spill folder and spill codecs.
    pub(crate) memory: Arc<crate::spill::MemoryManager>,
    /// How many keys a map-side combine table ended with, by the call site of its by-key
    /// operation: the next run of the same site (an iterative job's next step, a repeated
    /// query) sizes its table so instead of growing it from empty.
    pub(crate) combine_sizes: crate::shuffle::SizeHints,
    pub(crate) config: Config,
    /// Which process runs which tasks: this process alone, or a cluster (see
    /// `scheduler::executor`).
    pub(crate) executor: Arc<dyn crate::scheduler::Executor>,
}

/// Settings fixed when the context is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) checkpoint_all_marked_ancestors: bool,
    pub(crate) clean_checkpoints: bool,
    pub(crate) compression: Compression,
    pub(crate) fsync: bool,
    pub(crate) storage: Arc<dyn Storage>,
    /// Decode every frame again before a part file is committed (see
    /// [`ContextBuilder::checkpoint_verify`]).
    pub(crate) verify: bool,
    /// The largest frame payload the checkpoint writer produces (at most
    /// [`crate::checkpoint::format::MAX_FRAME_BYTES`], the reader's limit).
    pub(crate) frame_limit: u32,
    /// Attempts of a task before its job fails (see [`ContextBuilder::task_max_failures`]).
    pub(crate) task_max_failures: usize,
}

/// A listener and whether it has panicked (its first panic is reported, later ones are
/// counted silently).
struct RegisteredListener {
    listener: Box<dyn Listener>,
    panicked: AtomicBool,
}

impl ContextInner {
    /// A new RDD id. In a cluster, an RDD made inside a task (by a closure) exists only on
    /// the processes that run that task: its id comes from a range of its own, so that the
    /// ids the processes' drivers draw, which their exchanges compare, stay equal.
    pub(crate) fn new_rdd_id(&self) -> usize {
        self.task_local_id()
            .unwrap_or_else(|| self.next_rdd_id.fetch_add(1, Ordering::Relaxed))
    }
    /// How many RDD ids the driver drew so far.
    pub(crate) fn rdd_ids_drawn(&self) -> u64 {
        self.next_rdd_id.load(Ordering::Relaxed) as u64
    }
    /// Continues drawing RDD ids at `next` at least (a cluster's processes agreeing on
    /// their ids after process 0 drew more).
    pub(crate) fn skip_rdd_ids_to(&self, next: u64) {
        let next = usize::try_from(next).unwrap_or(usize::MAX / 2);
        self.next_rdd_id.fetch_max(next, Ordering::Relaxed);
    }
    /// A new shuffle id (in a cluster, inside a task: as [`ContextInner::new_rdd_id`]).
    pub(crate) fn new_shuffle_id(&self) -> usize {
        self.task_local_id()
            .unwrap_or_else(|| self.next_shuffle_id.fetch_add(1, Ordering::Relaxed))
    }
    /// An id from the task-local range (its top half), in a cluster inside a task.
    fn task_local_id(&self) -> Option<usize> {
        (self.executor.processes() > 1 && crate::accumulator::in_task())
            .then(|| (usize::MAX / 2 + 1) + self.next_task_local_id.fetch_add(1, Ordering::Relaxed))
    }
    pub(crate) fn new_job_id(&self) -> usize {
        self.next_job_id.fetch_add(1, Ordering::Relaxed)
    }
    /// `Ok` unless this context is one process of a cluster, which `what` does not support
    /// yet: then the error that says so, before anything runs.
    pub(crate) fn single_process(&self, what: &str) -> Result<()> {
        if self.executor.processes() > 1 {
            return Err(Error::Cluster {
                process: None,
                message: format!("{what} is not supported in cluster mode yet"),
            });
        }
        Ok(())
    }

    pub(crate) fn new_stage_id(&self) -> usize {
        self.next_stage_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `event` to every listener. No lock is held while a listener runs, and a
    /// listener's panic is caught: it never changes what the caller does next. The first
    /// panic of each listener is reported on stderr.
    pub(crate) fn emit(&self, event: Event) {
        crate::trace::guarded(&event);
        let listeners = self.listeners.read().clone();
        for l in listeners.iter() {
            let outcome = catch_unwind(AssertUnwindSafe(|| l.listener.on_event(&event)));
            if let Err(payload) = outcome
                && !l.panicked.swap(true, Ordering::AcqRel)
            {
                eprintln!(
                    "flintlock: a listener of context {} panicked on {event:?}: {} (the \
                         event was dropped for it; its later panics are not reported)",
                    self.describe(),
                    crate::scheduler::panic_message(payload.as_ref())
                );
            }
        }
    }

    pub(crate) fn has_listeners(&self) -> bool {
        !self.listeners.read().is_empty()
    }

    /// `#<serial> (app id "<id>")`, for messages about mixed contexts.
    pub(crate) fn describe(&self) -> String {
        format!("context #{} (app id {:?})", self.serial, self.app_id)
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        if self.config.clean_checkpoints
            && self.generated_app_id
            && let Some(dir) = self.checkpoint_dir.get_mut().take()
        {
            dir.remove_if_empty_on_drop();
        }
    }
}

impl Context {
    /// A context with every default: one thread per available core, no checkpoint directory.
    ///
    /// # Panics
    /// When the operating system refuses to start the thread pool; use
    /// [`Context::builder`] to get that as an error instead.
    pub fn new() -> Context {
        match ContextBuilder::default().build() {
            Ok(ctx) => ctx,
            Err(e) => panic!("cannot create a flintlock Context: {e}"),
        }
    }

    /// A builder for a context with non-default settings.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// The application name (default `flintlock`).
    pub fn app_name(&self) -> &str {
        &self.inner.app_name
    }

    /// This context's unique application id; checkpoints go to `<checkpoint_dir>/<app_id>/`.
    /// The processes of a cluster share one: process 0's when it was generated.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.inner.pool.current_num_threads()
    }

    /// Sets (or replaces) the checkpoint directory. RDDs checkpointed from now on are written
    /// under `<dir>/<app_id>/`; the folder is created and locked for this process. Setting
    /// the directory the context already uses is a no-op.
    ///
    /// Replacing the directory never deletes anything: checkpoints already committed under
    /// the old one stay where they are, and RDDs reading them keep the old folder locked
    /// until they are dropped. Setting an old directory again while RDDs still hold it
    /// takes that folder back (A, then B, then A again writes into A's folder).
    ///
    /// # In a cluster
    /// Every process must call it at the same point of the program, as an action (the
    /// processes agree that each opened the folder). Process 0 owns the app folder (its
    /// lock and start-up cleanup); the others write their parts into it. The folder must be
    /// storage every process sees (one filesystem, or an object store), and the checkpoint
    /// settings (compression, frame limit, fsync, verify) must be equal on all.
    ///
    /// # Errors
    /// When the folder cannot be created or is locked by another process. In a cluster,
    /// [`Error::Cluster`] on the processes other than the one that failed (naming it), and
    /// on every process when the checkpoint settings differ.
    pub fn set_checkpoint_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let root = crate::checkpoint::resolve_root(dir.as_ref())?;
        let mut current = self.inner.checkpoint_dir.write();
        if current.as_ref().is_some_and(|d| d.root() == root) {
            return Ok(());
        }
        // A folder this context used before and RDDs still read is this process's: taken
        // back as it is (opening it again would find its lock taken, by ourselves).
        let used_before = {
            let mut replaced = self.inner.replaced_dirs.lock();
            replaced.retain(|d| d.strong_count() > 0);
            replaced
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                // Not one whose lease was lost (an object store's, by a stall): opened anew.
                .find(|d| d.root() == root && d.check_still_owned().is_ok())
        };
        // In a cluster, process 0 owns the app folder; the others write into it. Every
        // process learns whether every other one opened it (process 0's lock may be
        // taken), so that all fail here together, saying why.
        let exec = self.inner.executor.as_ref();
        let app = match used_before {
            Some(app) => Ok(app),
            None if exec.process() == 0 => {
                AppDir::open(&root, &self.inner.app_id, &self.inner.config).map(Arc::new)
            }
            None => {
                AppDir::open_shared(&root, &self.inner.app_id, &self.inner.config).map(Arc::new)
            }
        };
        let app = if exec.processes() > 1 {
            let key = crate::scheduler::StageKey::agreement(
                usize::MAX,
                self.inner.new_stage_id(),
                0,
                "checkpoint dir",
                &[],
            );
            // The settings every process writes parts with, which one manifest records.
            let config = &self.inner.config;
            let settings = format!(
                "compression {:?}, frame limit {}, fsync {}, verify {}",
                config.compression, config.frame_limit, config.fsync, config.verify
            );
            let (outcome, app) = match app {
                Ok(app) => (Ok(settings.clone().into_bytes()), Some(app)),
                Err(e) => (Err(e), None),
            };
            let bodies = crate::scheduler::all_gather(exec, key, outcome)?;
            if let Some((process, theirs)) = bodies
                .iter()
                .enumerate()
                .find(|(_, b)| b.as_slice() != bodies[0].as_slice())
            {
                return Err(Error::Cluster {
                    process: Some(process),
                    message: format!(
                        "process {process} writes checkpoints with other settings ({}) than \
                         process 0 ({}): the processes of a cluster write one checkpoint \
                         together, so their checkpoint settings must be equal",
                        String::from_utf8_lossy(theirs),
                        String::from_utf8_lossy(&bodies[0])
                    ),
                });
            }
            app.ok_or_else(|| Error::Internal("the checkpoint folder was not opened".into()))?
        } else {
            app?
        };
        {
            // The current folder is not in the list (once), the replaced one is, both
            // before another call can look.
            let mut replaced = self.inner.replaced_dirs.lock();
            replaced.retain(|d| !std::ptr::eq(d.as_ptr(), Arc::as_ptr(&app)));
            if let Some(old) = current.as_ref() {
                replaced.push(Arc::downgrade(old));
            }
        }
        let old = current.replace(app);
        // Dropped (perhaps the folder's last reference, whose drop may wait for a visitor
        // or the store) with the lock released.
        drop(current);
        if let Some(old) = old
            && self.inner.config.clean_checkpoints
            && self.inner.generated_app_id
        {
            old.remove_if_empty_on_drop();
        }
        Ok(())
    }

    /// This process's index in its cluster, `0..processes()` (see [`ContextBuilder`]'s
    /// `cluster`, feature `cluster`); 0 when the context is one process. Every process runs
    /// the same program: use it for what only one should do, such as writing the output.
    pub fn process(&self) -> usize {
        self.inner.executor.process()
    }

    /// How many processes run the program: 1 unless the context is one process of a
    /// cluster.
    pub fn processes(&self) -> usize {
        self.inner.executor.processes()
    }

    /// The current checkpoint directory (the one given, not the per-app folder inside).
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.inner
            .checkpoint_dir
            .read()
            .as_ref()
            .map(|d| d.root().to_path_buf())
    }

    /// Registers a listener for job, stage, task and checkpoint events.
    ///
    /// Any `Fn(&Event) + Send + Sync` closure is a listener. Listeners are called on the
    /// threads that produce the events (task events on pool threads), so keep them quick.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use flintlock::{Context, Event};
    /// let ctx = Context::new();
    /// let stages = Arc::new(Mutex::new(0));
    /// let s = stages.clone();
    /// ctx.add_listener(move |e: &Event| {
    ///     if matches!(e, Event::StageStarted { .. }) {
    ///         *s.lock().unwrap() += 1;
    ///     }
    /// });
    /// ctx.parallelize(vec![(1, 1), (1, 2)], 2).reduce_by_key(|a, b| a + b).count()?;
    /// assert_eq!(*stages.lock().unwrap(), 2); // map stage + result stage
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// A listener may call back into the context (add listeners, run jobs). A listener that
    /// panics never changes an action's outcome: the panic is caught and its first one is
    /// reported on stderr. Task events come from inside the running job: a job started from
    /// one that needs a shuffle stage the running job is computing waits for that stage, which
    /// waits for the listener: start such jobs on another thread.
    pub fn add_listener(&self, listener: impl Listener + 'static) {
        let mut listeners = self.inner.listeners.write();
        let mut next: Vec<Arc<RegisteredListener>> = listeners.as_ref().clone();
        next.push(Arc::new(RegisteredListener {
            listener: Box::new(listener),
            panicked: AtomicBool::new(false),
        }));
        *listeners = Arc::new(next);
    }

    /// Fault injection: drops the cached block `(rdd_id, partition)`, as a lost executor
    /// would. A persisted RDD recomputes it from its lineage at the next action; a locally
    /// checkpointed one cannot, and reports [`Error::LocalCheckpointBlockLost`].
    /// Returns true when the block was there.
    pub fn evict_block(&self, rdd_id: usize, partition: usize) -> bool {
        self.inner.blocks.remove(rdd_id, partition)
    }

    /// What the context holds in memory now: cached partitions and kept shuffle outputs.
    /// A long-running job (an iterative loop, a stream) that releases what it no longer
    /// needs keeps these flat.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..10, 2).cache();
    /// rdd.count()?;
    /// assert_eq!(ctx.memory_stats().cached_partitions, 2);
    /// drop(rdd);
    /// assert_eq!(ctx.memory_stats().cached_partitions, 0);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn memory_stats(&self) -> MemoryStats {
        let (kept, on_disk, files, unspillable) = self.inner.memory.stats();
        MemoryStats {
            cached_partitions: self.inner.blocks.len(),
            shuffles: self.inner.shuffles.held(),
            memory_limit: self.inner.memory.limit(),
            budget_used: kept,
            spilled_bytes: on_disk,
            spill_files: files,
            unspillable_outputs: unspillable,
        }
    }

    /// Lets shuffles of records of type `T` spill to disk under
    /// [`ContextBuilder::memory_limit`]. `(K, V)` pairs of `u32`, `u64`, `i32`, `i64`,
    /// `usize` and `String` keys with those, `f32`, `f64` or `bool` values need no
    /// registration; other shuffled types do (the records a shuffle moves are the `(K, V)`
    /// pairs of `partition_by`, `group_by_key`, `join` and `cogroup`, the `(K, C)` pairs of
    /// the combiners of `reduce_by_key`, `aggregate_by_key` and `combine_by_key`, and the
    /// `(T, ())` pairs of `distinct` and the set operations, which registering `T` also
    /// covers, the `(u64, T)` pairs of `repartition` and `coalesce_with(n, true)`, and the
    /// `(K, T)` pairs of `group_by` and `sort_by`). Register before running the job that shuffles them. A shuffle over the limit
    /// whose records have no codec names the type to register on stderr.
    ///
    /// Spilled records are written with postcard, each decoded again as it is written and
    /// compared with the value written, and read back when the reduce side runs; a type
    /// whose serde form postcard cannot read back as the same value fails that shuffle's
    /// job with [`Error::UnspillableRecord`] (nothing is lost: the job can run without the
    /// limit, or with a type that reads back).
    ///
    /// ```
    /// # let ctx = flintlock::Context::builder().memory_limit(64 << 20).build()?;
    /// ctx.register_spillable::<(String, Vec<u32>)>();
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn register_spillable<T>(&self)
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        self.inner.memory.register::<T>();
    }

    /// Lets this context reopen checkpoints partitioned by the custom scheme `partition`
    /// (see [`Partitioner::custom`](crate::Partitioner::custom)): a manifest records a custom
    /// partitioner by its name, key type, partition count and parameters, and
    /// [`Context::open_checkpoint`] refuses one it has no implementation of
    /// ([`Error::UnknownPartitioner`]). The reopened partitioner is then verified against the
    /// data before a by-key operation relies on it, like a hash partitioner. Registering the
    /// same identity again replaces the implementation.
    pub fn register_partitioner<K: 'static>(&self, partition: impl crate::Partition<K>) {
        if let crate::Partitioner::Custom(c) = crate::Partitioner::custom(partition) {
            self.inner.partitioners.register(c);
        }
    }

    /// Runs `f` on this context's thread pool (for user code that wants the same pool).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.inner.pool.install(f)
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("app_name", &self.inner.app_name)
            .field("app_id", &self.inner.app_id)
            .field("threads", &self.threads())
            .field("checkpoint_dir", &self.checkpoint_dir())
            .finish()
    }
}

/// What a [`Context`] holds in memory: see [`Context::memory_stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Cached partitions (persisted RDDs and local checkpoints), across all RDDs.
    pub cached_partitions: usize,
    /// Shuffles whose map outputs are kept: until their RDD is dropped or checkpointed, or,
    /// without a memory limit, until only the loss of a stored cache or of another
    /// shuffle's outputs could need them (then they are released, and computed again if
    /// that happens).
    pub shuffles: usize,
    /// The limit set with [`ContextBuilder::memory_limit`], if any.
    pub memory_limit: Option<u64>,
    /// Estimated bytes of the budget in use: finished shuffle map outputs and
    /// [`StorageLevel::MemoryAndDisk`](crate::StorageLevel::MemoryAndDisk) blocks kept in
    /// memory under the limit (0 without a limit: nothing is counted then).
    pub budget_used: u64,
    /// Bytes of shuffle data spilled to disk and still kept.
    pub spilled_bytes: u64,
    /// Spill files kept.
    pub spill_files: usize,
    /// Map outputs kept in memory past the limit because their records have no spill codec
    /// (see [`Context::register_spillable`]), since the context started.
    pub unspillable_outputs: usize,
}

/// Builds a [`Context`]; see [`Context::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ContextBuilder {
    app_name: String,
    app_id: Option<String>,
    threads: Option<usize>,
    checkpoint_dir: Option<PathBuf>,
    event_log: Option<PathBuf>,
    memory_limit: Option<u64>,
    spill_dir: Option<PathBuf>,
    config: Config,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for ContextBuilder {
    fn default() -> Self {
        ContextBuilder {
            app_name: "flintlock".to_string(),
            app_id: None,
            threads: None,
            checkpoint_dir: None,
            event_log: None,
            memory_limit: None,
            spill_dir: None,
            #[cfg(feature = "cluster")]
            cluster: None,
            config: Config {
                checkpoint_all_marked_ancestors: false,
                clean_checkpoints: false,
                compression: Compression::None,
                fsync: true,
                storage: Arc::new(crate::checkpoint::DefaultStorage::default()),
                verify: true,
                frame_limit: crate::checkpoint::format::MAX_FRAME_BYTES,
                task_max_failures: 1,
            },
        }
    }
}

impl ContextBuilder {
    /// Runs this program as one process of a cluster (feature `cluster`): every process
    /// runs the same program, and each runs the tasks of the partitions it owns (see
    /// [`crate::cluster`]). `build` connects to every process first, and fails with
    /// [`Error::Cluster`] when one does not connect within the configuration's timeout,
    /// when the processes' app ids differ (all must set the same one, or none), and, with a
    /// checkpoint directory, when process 0 cannot lock it or the checkpoint settings
    /// differ.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// The application name, used in the app id and so in checkpoint folder names.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// A fixed application id instead of a fresh one per context, so checkpoints land in
    /// the same `<checkpoint_dir>/<app_id>/` folder run after run (restartable jobs). The
    /// folder's lock file keeps two live contexts from sharing it: the second one's
    /// `build` (or `set_checkpoint_dir`) fails with [`Error::Locked`]. The processes of a
    /// cluster share one folder (process 0 holds its lock): all set the same id, or none.
    /// Only ASCII letters, digits, `-` and `_` are kept; other characters become `_`.
    pub fn app_id(mut self, id: impl Into<String>) -> Self {
        self.app_id = Some(sanitize(&id.into()));
        self
    }

    /// The number of worker threads (default: the available parallelism).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// The checkpoint directory; without one, `checkpoint()` returns
    /// [`Error::NoCheckpointDir`].
    pub fn checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Bounds the memory that shuffles hold, in bytes (default: no bound; Spark's
    /// `spark.memory.fraction`, as an absolute size). A shuffle larger than the limit then
    /// runs to completion on disk:
    /// - each map task buffers at most `limit / 2 / threads` bytes of records (or of its
    ///   map-side combine table), but at least 256 KiB (smaller runs cost more index and
    ///   reads than they save); beyond that it writes them to a spill file as a run and
    ///   goes on;
    /// - finished map outputs stay in memory while they fit in half the limit, and are
    ///   written to disk otherwise;
    /// - the reduce side reads a spilled bucket back, checking every frame's CRC-32C, when
    ///   its task starts.
    ///
    /// Cached blocks share the same half as kept map outputs (older map outputs go to disk
    /// to make room for them): a [`StorageLevel::MemoryOnly`](crate::StorageLevel::MemoryOnly)
    /// block that does not fit is not cached, and its partition is recomputed when needed
    /// again, as Spark does (a local checkpoint's blocks are always kept: they are its only
    /// copy); a [`StorageLevel::MemoryAndDisk`](crate::StorageLevel::MemoryAndDisk) block
    /// that does not fit goes to disk.
    ///
    /// Sizes are estimates: a record's own size plus the size of its postcard encoding for
    /// what it owns on the heap (sampled, then exact once a run was written).
    ///
    /// What the limit does not cover: one reduce partition (a reduce task holds its
    /// partition's records, or its aggregation table, in memory: use more partitions for
    /// larger data, as in Spark) and records whose type has no spill codec
    /// (see [`Context::register_spillable`]: pairs of common primitive types and `String`
    /// are built in; others stay in memory past the limit, said once per type on stderr
    /// and counted in [`MemoryStats::unspillable_outputs`]). Spilled results are the same
    /// records, though grouped differently: a `reduce_by_key` whose function is not
    /// associative (floating-point sums) may differ in the last bits, as in Spark. A damaged
    /// or missing spill file fails the job with [`Error::SpillDamaged`] and the map stage
    /// runs again at the next action. Sizes of records that own heap memory are estimated
    /// from their encoding (a `Vec` of small integers encodes smaller than it lives), so
    /// give such shuffles a margin.
    ///
    /// A limit of 0 is refused by [`ContextBuilder::build`].
    ///
    /// ```
    /// let ctx = flintlock::Context::builder().memory_limit(64 << 20).build()?;
    /// let n = ctx
    ///     .range(0..100_000, 4)
    ///     .map(|x| (x % 1000, 1u64))
    ///     .reduce_by_key(|a, b| a + b)
    ///     .count()?;
    /// assert_eq!(n, 1000);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Where spill files go (default: the system's temporary folder): a
    /// `flintlock-spill-*` folder is made there at the first spill and removed with the
    /// context. See [`ContextBuilder::memory_limit`].
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Writes every event of the context to `path`, one JSON object per line (see
    /// [`crate::event_log`]), for `flintlock report path -o report.html`. The file is
    /// created, or emptied if it exists, once the rest of the build has succeeded; the
    /// context holds an exclusive lock on it, so a second live context (or process) given
    /// the same path fails to build instead of mixing two logs. Writes are buffered and
    /// flushed at the end of a job (at most every 50 ms), at least every half second, and
    /// when the last handle to the context (or to an RDD of it) is dropped. A write that fails later (a full
    /// disk) ends the log with a message on stderr and never fails a job.
    ///
    /// ```no_run
    /// let ctx = flintlock::Context::builder().event_log("run.jsonl").build()?;
    /// ctx.range(0..1000, 4).map(|x| x * 2).count()?;
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn event_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.event_log = Some(path.into());
        self
    }

    /// When an action runs, checkpoint every marked ancestor of its RDD, not only the nearest
    /// ones (Spark's `spark.checkpoint.checkpointAllMarkedAncestors`). Default false.
    pub fn checkpoint_all_marked_ancestors(mut self, all: bool) -> Self {
        self.config.checkpoint_all_marked_ancestors = all;
        self
    }

    /// Delete the checkpoints this context writes once nothing reads them: a checkpoint
    /// folder goes when the last RDD of this process that reads it is dropped (the
    /// checkpointed RDD, its descendants, and any copy reopened with
    /// [`Context::open_checkpoint`]), and a generated app folder goes with the context when
    /// it is empty. Checkpoints of other runs (a stable [`ContextBuilder::app_id`] reused)
    /// and of other contexts are never deleted, nor are a stream's state and input logs (its
    /// commits retain them) or, under a given [`ContextBuilder::app_id`], the steps of a
    /// series ([`Context::checkpointer`]: its `keep` retains them, so a killed run resumes
    /// from the newest; under a generated app id no later run can, and they are cleaned
    /// like the rest). Default false: nothing is deleted.
    ///
    /// Removals run on a background thread of the process, so the thread that drops the
    /// last reader (often in the middle of a job) does not wait for a removal's fsync; the
    /// context waits for the removals in its app folder when it is dropped, and
    /// [`crate::checkpoint::wait_for_removals`] waits for them at any time.
    pub fn clean_checkpoints(mut self, clean: bool) -> Self {
        self.config.clean_checkpoints = clean;
        self
    }

    /// Compression of checkpoint frames (default none). Recorded in every file's header, so
    /// any reader decodes it.
    pub fn checkpoint_compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// Whether checkpoint writes are fsynced (default true). Turning it off keeps the
    /// temp-then-rename protocol but gives up durability across power loss; it exists for
    /// benchmarks that want to see what the syncs cost.
    pub fn checkpoint_fsync(mut self, fsync: bool) -> Self {
        self.config.fsync = fsync;
        self
    }

    /// Whether each checkpoint record is decoded again, and the value read back encoded
    /// again and compared, before its part file is committed (default true). The check
    /// makes the writer accept only what the reader will read back as the value written: a
    /// type whose serde implementation does not round-trip through postcard
    /// (`skip_serializing_if`, untagged enums, `serde_json::Value`, `from` and `into`
    /// through different types, a skip or rename for one direction only, ...) fails the
    /// write with [`Error::UnreadableRecord`] instead of committing a checkpoint that cannot
    /// be read, or that reads back other values. Turn it off only for types known to
    /// round-trip; its cost is in docs/BENCHMARKS.md. Primitive records (integers, floats,
    /// `bool` and pairs of them) have nothing to verify and cost nothing either way.
    pub fn checkpoint_verify(mut self, verify: bool) -> Self {
        self.config.verify = verify;
        self
    }

    /// Lowers the largest frame payload a checkpoint write may produce (default and maximum
    /// [`crate::checkpoint::format::MAX_FRAME_BYTES`], the limit every reader enforces). A
    /// record whose encoding does not fit fails the write with [`Error::UnreadableRecord`]
    /// before anything is committed. Values above the maximum are clamped to it. Tests use a
    /// small limit to exercise the check without gigabyte records.
    pub fn checkpoint_frame_limit(mut self, bytes: u32) -> Self {
        self.config.frame_limit = bytes.clamp(1, crate::checkpoint::format::MAX_FRAME_BYTES);
        self
    }

    /// Where checkpoint I/O goes (default [`crate::checkpoint::DefaultStorage`]: local
    /// paths on [`crate::checkpoint::LocalFs`], `s3://` paths on an object store): the seam
    /// for other storages and for fault injection ([`crate::checkpoint::FaultyStorage`]).
    pub fn checkpoint_storage(mut self, storage: impl Storage + 'static) -> Self {
        self.config.storage = Arc::new(storage);
        self
    }

    /// How many times a task may be attempted before its job fails (Spark's
    /// `spark.task.maxFailures`, or the `F` of `local[N,F]`); default 1, Spark's local mode:
    /// no retry.
    ///
    /// A failed attempt (a panic, an I/O error) is run again from its stage inputs on the
    /// same thread; it leaves nothing behind: its accumulator updates are dropped, a
    /// checkpoint part it half wrote is removed, and a partition it would have cached is not
    /// kept. A cancelled job is never retried. Values below 1 are treated as 1.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// let ctx = flintlock::Context::builder().task_max_failures(2).build()?;
    /// let failed_once = AtomicBool::new(false);
    /// let doubled = ctx.parallelize(vec![1, 2, 3], 1).map(move |x| {
    ///     if !failed_once.swap(true, Ordering::Relaxed) {
    ///         panic!("flaky: the first attempt fails");
    ///     }
    ///     x * 2
    /// });
    /// assert_eq!(doubled.collect()?, vec![2, 4, 6]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn task_max_failures(mut self, attempts: usize) -> Self {
        self.config.task_max_failures = attempts.max(1);
        self
    }

    /// Builds the context.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero threads or a pool that cannot start; the errors of
    /// [`Context::set_checkpoint_dir`] when a checkpoint directory was given;
    /// [`Error::Io`] naming the event log when it cannot be created.
    pub fn build(self) -> Result<Context> {
        #[cfg(feature = "cluster")]
        let threads_asked = self
            .threads
            .or(self.cluster.as_ref().and_then(|c| c.threads()));
        #[cfg(not(feature = "cluster"))]
        let threads_asked = self.threads;
        let threads = match threads_asked {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "threads must be at least 1".to_string(),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        if self.memory_limit == Some(0) {
            return Err(Error::InvalidArgument(
                "memory_limit must be at least 1 byte".to_string(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("flintlock-worker-{i}"))
            // Tasks recurse at most SEGMENT narrow levels; this leaves a wide margin for user
            // closures.
            .stack_size(16 << 20)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start the thread pool: {e}")))?;
        let executor: Arc<dyn crate::scheduler::Executor> = {
            #[cfg(feature = "cluster")]
            match &self.cluster {
                Some(config) => Arc::new(crate::cluster::Transport::start(config)?),
                None => Arc::new(crate::scheduler::LocalExecutor),
            }
            #[cfg(not(feature = "cluster"))]
            Arc::new(crate::scheduler::LocalExecutor)
        };
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        let generated_app_id = self.app_id.is_none();
        let app_id = self.app_id.unwrap_or_else(|| new_app_id(&self.app_name));
        let app_id = agree_app_id(executor.as_ref(), app_id, generated_app_id)?;
        let ctx = Context {
            inner: Arc::new(ContextInner {
                app_id,
                app_name: self.app_name,
                serial: SERIAL.fetch_add(1, Ordering::Relaxed),
                generated_app_id,
                pool,
                next_rdd_id: AtomicUsize::new(0),
                next_shuffle_id: AtomicUsize::new(0),
                next_task_local_id: AtomicUsize::new(0),
                next_job_id: AtomicUsize::new(0),
                next_stage_id: AtomicUsize::new(0),
                blocks: BlockStore::default(),
                shuffles: ShuffleStore::default(),
                listeners: RwLock::new(Arc::new(Vec::new())),
                checkpoint_dir: RwLock::new(None),
                replaced_dirs: Default::default(),
                jobs: Default::default(),
                partitioners: Default::default(),
                combine_sizes: Default::default(),
                memory: Arc::new(crate::spill::MemoryManager::new(
                    self.memory_limit,
                    threads,
                    self.spill_dir,
                )),
                config: self.config,
                executor,
            }),
        };
        if let Some(dir) = self.checkpoint_dir {
            ctx.set_checkpoint_dir(dir)?;
        }
        // Last: a build that fails leaves an existing log alone.
        if let Some(path) = &self.event_log {
            let writer = crate::event_log::EventLogWriter::create(
                path,
                &ctx.inner.app_name,
                &ctx.inner.app_id,
                threads,
            )?;
            ctx.add_listener(writer);
        }
        Ok(ctx)
    }
}

/// The app id every process of a cluster uses: process 0's. (One process: `app_id`.) The
/// processes write one checkpoint into one app folder, so a generated id (which names the
/// process) is replaced by process 0's; ids the programs gave must be equal.
fn agree_app_id(
    exec: &dyn crate::scheduler::Executor,
    app_id: String,
    generated: bool,
) -> Result<String> {
    if exec.processes() == 1 {
        return Ok(app_id);
    }
    let key = crate::scheduler::StageKey::agreement(usize::MAX, usize::MAX, 0, "app id", &[]);
    let mut body = vec![u8::from(generated)];
    body.extend_from_slice(app_id.as_bytes());
    let bodies = crate::scheduler::all_gather(exec, key, Ok(body))?;
    let theirs = |b: &[u8]| -> (bool, String) {
        let (flag, id) = b.split_first().unwrap_or((&1, &[]));
        (*flag == 1, String::from_utf8_lossy(id).into_owned())
    };
    let (zero_generated, zero_id) = theirs(&bodies[0]);
    // Every process checks every process, so all of them fail together.
    for (process, body) in bodies.iter().enumerate().skip(1) {
        let (their_generated, their_id) = theirs(body);
        if their_generated != zero_generated || (!zero_generated && their_id != zero_id) {
            let name = |generated: bool, id: &str| {
                if generated {
                    "generated".to_string()
                } else {
                    format!("{id:?}")
                }
            };
            let message = format!(
                "process {process}'s app id is {} and process 0's is {}: the processes of a \
                 cluster share one app folder, so they must all set the same app id (or all \
                 none)",
                name(their_generated, &their_id),
                name(zero_generated, &zero_id)
            );
            exec.fail(&message);
            return Err(Error::Cluster {
                process: Some(process),
                message,
            });
        }
    }
    Ok(zero_id)
}

/// `<app_name>-<unix millis>-<pid>-<n>`: unique per context, sortable by start time, and
/// safe as a folder name.
fn new_app_id(app_name: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let name = sanitize(app_name);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{name}-{millis}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Keeps ASCII letters, digits, `-` and `_`, so an id is always a plain folder name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".to_string()
    } else {
        s
    }
}
