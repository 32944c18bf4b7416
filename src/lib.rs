//! # flintlock
//!
//! An in-process batch RDD engine: Spark's model of lazy, typed, partitioned datasets linked
//! by narrow and wide (shuffle) dependencies, running partitions on a rayon pool inside one
//! process — with lineage truncation by checkpoints at its centre.
//!
//! ## A short tour
//!
//! ```
//! use flintlock::{CheckpointState, Context};
//! # let dir = tempfile::tempdir().unwrap();
//! let ctx = Context::builder()
//!     .app_name("tour")
//!     .threads(2)
//!     .checkpoint_dir(dir.path())
//!     .build()?;
//!
//! // Lazy transformations build a lineage graph; nothing runs yet.
//! let words = ctx.parallelize(vec!["a b", "b c", "c a b"], 2)
//!     .flat_map(|line| line.split(' ').map(String::from).collect::<Vec<_>>());
//! let counts = words.map(|w| (w, 1u32)).reduce_by_key(|a, b| a + b);
//!
//! // Mark a checkpoint: written by the next action, while it computes (one computation).
//! counts.checkpoint()?;
//! assert_eq!(counts.checkpoint_state(), CheckpointState::Marked);
//! assert_eq!(counts.count()?, 3);
//!
//! // The lineage is now cut: the RDD reads its checkpoint files.
//! assert!(counts.is_checkpointed());
//! assert_eq!(counts.lineage_depth(), 1);
//! println!("{}", counts.to_debug_string());
//! let mut all = counts.collect()?;
//! all.sort();
//! assert_eq!(all, vec![("a".to_string(), 2), ("b".to_string(), 3), ("c".to_string(), 2)]);
//! # Ok::<(), flintlock::Error>(())
//! ```
//!
//! ## Spark to flintlock
//!
//! | Spark | flintlock |
//! |---|---|
//! | `SparkContext` | [`Context`] (own rayon pool, block store, shuffle store, listeners) |
//! | `RDD[T]` | [`Rdd<T>`], a cheap handle; `T: Data` |
//! | `PairRDDFunctions` | methods of `Rdd<(K, V)>` with `K: Key` |
//! | `Dependency` | [`Dependency`]: [`DependencyKind::OneToOne`], `Range`, `Narrow`, `Shuffle` |
//! | `HashPartitioner`, `RangePartitioner` | [`Partitioner`] (hash is fixed-seed: stable across processes) |
//! | `DAGScheduler` | `scheduler`: stages split at shuffles, one task per partition |
//! | `BlockManager`, `MEMORY_ONLY`, `MEMORY_AND_DISK`, `DISK_ONLY` | [`StorageLevel::MemoryOnly`], [`StorageLevel::MemoryAndDisk`] (within [`ContextBuilder::memory_limit`]), [`StorageLevel::DiskOnly`] (checksummed spill files) |
//! | `RDDCheckpointData` | [`CheckpointState`] machine in `checkpoint` |
//! | `ReliableCheckpointRDD`, `LocalCheckpointRDD` | `ReliableCheckpointRdd`, `LocalCheckpointRdd` kinds |
//! | `SparkListener` | [`Listener`] and [`Event`] |
//! | event log (`spark.eventLog.enabled`), history server | [`ContextBuilder::event_log`], [`event_log`], `flintlock report` (module `report`, feature `report`) |
//! | log4j logging of the scheduler | `tracing` spans `job` > `stage` > `task` and an event per [`Event`] (`debug`; see "Tracing" below) |
//! | `toDebugString` | [`Rdd::to_debug_string`], plus [`Rdd::to_dot`] and [`Rdd::lineage_depth`] |
//! | `subtract`, `intersection`, `subtractByKey` | [`Rdd::subtract`], [`Rdd::intersection`], [`Rdd::subtract_by_key`] |
//! | `top`, `takeOrdered`, `takeSample` | [`Rdd::top`], [`Rdd::take_ordered`] (and [`Rdd::take_ordered_by_key`]), [`Rdd::take_sample`] |
//! | `sortBy`, `groupBy`, `keyBy` | [`Rdd::sort_by`], [`Rdd::group_by`], [`Rdd::key_by`] |
//! | `sum`, `mean`, `variance`, `stdev`, `sampleVariance`, `sampleStdev`, `stats` (`StatCounter`) | [`Rdd::sum`], [`Rdd::mean`], [`Rdd::variance`], [`Rdd::stdev`], [`Rdd::sample_variance`], [`Rdd::sample_stdev`], [`Rdd::stats`] ([`StatCounter`]), on `Rdd<T: Numeric>` |
//! | `histogram(bucketCount)`, `histogram(buckets)` | [`Rdd::histogram`], [`Rdd::histogram_with`] |
//! | `isEmpty`, `treeAggregate`, `treeReduce`, `randomSplit` | [`Rdd::is_empty`], [`Rdd::tree_aggregate`], [`Rdd::tree_reduce`], [`Rdd::random_split`] |
//! | `zipPartitions`, `mapPartitionsWithIndex`, `pipe` | [`Rdd::zip_partitions`], [`Rdd::map_partitions_with_index`], [`Rdd::pipe`] (and [`Rdd::pipe_with_env`]) |
//! | `collectAsMap`, `countApproxDistinct` | [`Rdd::collect_as_map`], [`Rdd::count_approx_distinct`] |
//! | `SparkContext.union`, `PartitionerAwareUnionRDD` | [`Context::union`]; [`Rdd::union`] keeps a shared partitioner |
//! | `coalesce(n, shuffle)`, `repartition` | [`Rdd::coalesce`], [`Rdd::coalesce_with`], [`Rdd::repartition`] (round-robin) |
//! | `cogroup(other1, other2)`, `cogroup(other1, other2, other3)` | [`Rdd::cogroup3`], [`Rdd::cogroup4`] |
//! | `range(start, end, step, numSlices)` | [`Context::range_step`] (and [`Context::range`] over `u64`) |
//! | `saveAsObjectFile`, `objectFile` | [`Rdd::save_as_object_file`], [`Context::object_file`] (the checkpoint format: checksummed, typed) |
//! | `longAccumulator`, `doubleAccumulator`, `collectionAccumulator`, `AccumulatorV2` | [`Context::long_accumulator`], [`Context::double_accumulator`], [`Context::collection_accumulator`], [`Context::accumulator`] with an [`Accumulable`] |
//! | `broadcast` (`Broadcast.value`, `destroy`) | [`Context::broadcast`] ([`Broadcast::value`], [`Broadcast::destroy`]) |
//! | `setJobGroup`, `cancelJobGroup`, `cancelAllJobs`, `cancelJob` | [`Context::set_job_group`], [`Context::cancel_job_group`], [`Context::cancel_all_jobs`], [`Context::cancel_job`] ([`Error::Cancelled`]) |
//! | custom `Partitioner` subclass | [`Partitioner::custom`] with a [`Partition`] impl; [`Context::register_partitioner`] to reopen its checkpoints |
//! | `spark.task.maxFailures`, `local[N,F]` | [`ContextBuilder::task_max_failures`] |
//! | `spark.memory.fraction`, shuffle spill, `spark.local.dir` | [`ContextBuilder::memory_limit`] (shuffles spill to checksummed files), [`ContextBuilder::spill_dir`], [`Context::register_spillable`] |
//!
//! ## Where flintlock differs from Spark
//! - A checkpoint costs **one** computation: partitions are written while the action
//!   computes them (Spark recomputes the RDD in a second job, SPARK-8582).
//! - Lineage of any depth works: every walk over the graph is iterative, deep narrow chains
//!   are computed in segments, and dropping a long chain does not recurse.
//! - Checkpoints are crash-safe (temp file, fsync, no-replace rename, manifest last),
//!   checksummed, versioned, reopenable from another process with
//!   [`Context::open_checkpoint`]; a damaged or foreign checkpoint is a precise error. The
//!   format is documented in [`checkpoint::format`].
//! - `checkpoint()` after an action still takes effect (SPARK-3625), and a failed write
//!   leaves the RDD Marked with its lineage, to be retried (or taken back with
//!   [`Rdd::cancel_checkpoint`]).
//! - A checkpoint keeps its meaning: the writer accepts only records that read back
//!   ([`Error::UnreadableRecord`] otherwise), the manifest records the element type's
//!   structural layout ([`Error::TypeMismatch`] names the first difference when a later
//!   build changed the type), a reopened hash partitioner is verified against this build's
//!   placement before a join relies on it, and no cleanup deletes a checkpoint that a live
//!   RDD reads. RDDs of two contexts never mix ([`Error::ContextMismatch`]).
//!
//! ## Performance notes
//! - Whole partitions are *drained*: actions, shuffles, caches and join build sides have
//!   the records pushed up through the transformations in batches of [`BATCH`] (see
//!   [`PartitionIterator`]), so a chain of narrow transformations costs about what the
//!   closures themselves cost. A `map_partitions` closure can do the same with
//!   [`PartitionIterator::drain_batches`] or [`PartitionIterator::drain_into`].
//! - Records read from a cached RDD are **clones** (iterators yield owned values). Keep
//!   cached records cheap to clone: a `Vec` or `String` is copied on every read, and an
//!   `Arc` per record costs an atomic increment on a cache line of its own. For large shared
//!   values, one buffer per partition with cheap handles into it is the fast layout;
//!   `examples/pagerank` packs its neighbour lists that way with
//!   [`Rdd::map_partitions_preserving_partitioning`].
//! - Shuffle outputs stay in memory while something can read them: an RDD a handle holds
//!   computes through them. Those that only the loss of a fully stored memory cache or of
//!   another shuffle's outputs could need are released (a later need runs the map stage
//!   again). [`ContextBuilder::memory_limit`] bounds the rest: then a shuffle larger than
//!   memory runs on disk (measured: a 160 MB shuffle under a 32 MB limit, 4.7× the
//!   in-memory time), and a limit that does not bind costs nothing measurable.
//!
//! ## One program, N processes (feature `cluster`)
//! [`ContextBuilder::cluster`] runs the program as one process of a cluster, SPMD: every
//! process runs the same binary, partition `p` belongs to process `p mod N`, shuffles
//! travel through timely-dataflow's exchange, and every action's result reaches every
//! process; a process that dies or leaves fails the others with an error naming it.
//! [`cluster`] says what is supported yet and what crosses processes.
//!
//! ## Tracing
//! flintlock emits [`tracing`](https://docs.rs/tracing) spans and events for whatever
//! subscriber the program installs: a `job` span (`job_id`, `rdd_id`) per action, a `stage`
//! span (`stage_id`, `kind`, `rdd_id`, `shuffle_id`) inside it per stage, and a `task` span
//! (`stage_id`, `partition`) inside that per partition, on whichever pool thread runs it.
//! Every listener [`Event`] is also a tracing event in the span where it happened: a
//! checkpoint part written inside its task, the commit and the lineage swap inside the job.
//! Shuffle map output sizes and checkpoint folder removals are traced too. All of it is at
//! `debug` (the lineage snapshot at `trace`); a dropped partitioner and a damaged
//! checkpoint passed over while resuming are `warn`. Without a subscriber, or with these
//! levels filtered out, a callsite costs one relaxed load. Targets are module paths below
//! `flintlock`, so `RUST_LOG=flintlock=debug` (with `tracing-subscriber`'s `EnvFilter`, as
//! the examples install it) selects everything.
//!
//! ## Errors and panics
//! Actions return [`Result`]. A panic inside a user closure fails its task and the job
//! returns [`Error::TaskFailed`] naming the RDD, partition and message; the context stays
//! usable. Transformations cannot fail; misusing one (zero partitions, zipping RDDs of
//! different partition counts) panics at the caller's line with a message.
//!
//! ## Layout
//! `context` (Context, builder), `rdd` (one file per RDD kind; sources, actions, by-key
//! operations, joins, and `node.rs` for the shared node and lineage swap), `dependency`,
//! `partitioner`, `scheduler` (jobs, stages, tasks, cancellation), `accumulator`,
//! `broadcast`, `shuffle`, `cluster` (processes on timely-dataflow), `block_store` (cached
//! partitions), `checkpoint` (state machine, writer, reader, local, format, codec, app
//! folders, series, storage seam), `lineage` (debug string, DOT, depth).

#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod accumulator;
mod block_store;
pub mod broadcast;
pub mod checkpoint;
#[cfg(feature = "cluster")]
pub mod cluster;
mod context;
mod dependency;
mod error;
pub mod event_log;
mod lineage;
mod listener;
mod partitioner;
mod rdd;
#[cfg(feature = "report")]
pub mod report;
mod scheduler;
mod shuffle;
mod spill;
pub mod streaming;
mod trace;

pub use accumulator::{
    Accumulable, Accumulator, CollectionAccumulator, DoubleAccumulator, LongAccumulator,
};
pub use block_store::StorageLevel;
pub use broadcast::Broadcast;
pub use checkpoint::{CheckpointState, Compression};
#[cfg(feature = "cluster")]
pub use cluster::ClusterConfig;
pub use context::{Context, ContextBuilder, MemoryStats};
pub use dependency::{Dependency, DependencyKind};
pub use error::{Error, Result};
pub use listener::{Event, LineageEdge, LineageNode, Listener, StageKind};
pub use partitioner::{
    CustomPartitioner, HashPartitioner, Partition, Partitioner, RangePartitioner,
};
pub use rdd::node::{CallSite, RddBase};
#[allow(deprecated)]
pub use rdd::PartitionIter;
pub use rdd::{BoxedPartitionIter, Numeric, PartitionIterator, Rdd, StatCounter, WeakRdd, BATCH};

/// What an RDD can hold: shared between threads and cloned when a partition is read from a
/// cache, a shuffle or a collection. Implemented for every such type.
pub trait Data: Send + Sync + Clone + 'static {}
impl<T: Send + Sync + Clone + 'static> Data for T {}

/// What can key a pair RDD: [`Data`] that hashes and compares (by-key operations group equal
/// keys; the hash partitioner places them).
pub trait Key: Data + std::hash::Hash + Eq {}
impl<T: Data + std::hash::Hash + Eq> Key for T {}
