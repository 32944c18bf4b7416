//! Events of jobs, stages, tasks and checkpoints, and the [`Listener`] trait that receives
//! them (Spark's `SparkListener`).

use std::path::PathBuf;
use std::time::Duration;

use crate::block_store::StorageLevel;
use crate::checkpoint::CheckpointState;
use crate::Partitioner;

/// Whether a stage produces shuffle outputs or the job's results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StageKind {
    /// Computes the map side of a shuffle and stores its buckets.
    ShuffleMap,
    /// Computes the job's RDD and hands each partition to the action.
    Result,
    /// Computes the partitions of a marked RDD that the job did not finish (e.g. after
    /// `take`), so that its checkpoint is complete.
    CheckpointCompletion,
}

/// One RDD of a job's lineage, as [`Event::JobLineage`] shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LineageNode {
    /// The RDD's id.
    pub id: usize,
    /// Its kind, named as in Spark (`MapPartitionsRdd`, `ShuffledRdd`,
    /// `ReliableCheckpointRdd`, ...).
    pub kind: &'static str,
    /// The user-given name, if any.
    pub name: Option<String>,
    /// Where it was created (`map at src/main.rs:12:5`).
    pub call_site: String,
    /// Its number of partitions.
    pub partitions: usize,
    /// How its keys are partitioned, if known.
    pub partitioner: Option<Partitioner>,
    /// How computed partitions are kept.
    pub storage_level: StorageLevel,
    /// Where it is in the checkpoint state machine.
    pub checkpoint_state: CheckpointState,
    /// The edges to its parents, in dependency order.
    pub parents: Vec<LineageEdge>,
}

/// An edge from an RDD to one of its parents in a [`LineageNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LineageEdge {
    /// The parent's id.
    pub parent: usize,
    /// The dependency's kind (narrow ones, or a shuffle).
    pub kind: crate::DependencyKind,
}

/// Something that happened in a context. Sent to every [`Listener`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// An action started a job on `rdd_id`.
    JobStarted {
        /// The job.
        job_id: usize,
        /// The RDD the action runs on.
        rdd_id: usize,
        /// How many of its partitions the action needs.
        partitions: usize,
    },
    /// The lineage of a job's RDD as the job starts (sent right after
    /// [`Event::JobStarted`], only when a listener is attached): every RDD it reaches once,
    /// the job's RDD first, with its checkpoint state before the job.
    JobLineage {
        /// The job.
        job_id: usize,
        /// The RDDs, each with the edges to its parents.
        nodes: Vec<LineageNode>,
    },
    /// A job failed (sent right before its [`Event::JobEnded`]).
    JobFailed {
        /// The job.
        job_id: usize,
        /// The error the action returns, as text.
        error: String,
    },
    /// A job ended.
    JobEnded {
        /// The job.
        job_id: usize,
        /// Whether it succeeded.
        succeeded: bool,
        /// Wall time.
        elapsed: Duration,
    },
    /// A stage started.
    StageStarted {
        /// The job.
        job_id: usize,
        /// The stage.
        stage_id: usize,
        /// What the stage does.
        kind: StageKind,
        /// The RDD whose partitions the tasks compute.
        rdd_id: usize,
        /// For a shuffle-map stage, the shuffle it writes.
        shuffle_id: Option<usize>,
        /// Number of tasks.
        tasks: usize,
    },
    /// A stage ended.
    StageEnded {
        /// The job.
        job_id: usize,
        /// The stage.
        stage_id: usize,
        /// Whether every task succeeded.
        succeeded: bool,
        /// Wall time.
        elapsed: Duration,
    },
    /// A task started.
    TaskStarted {
        /// The stage.
        stage_id: usize,
        /// The partition it computes.
        partition: usize,
    },
    /// A task failed (sent right before its [`Event::TaskEnded`]): it panicked or its
    /// partition could not be computed.
    TaskFailed {
        /// The stage.
        stage_id: usize,
        /// The partition it computed.
        partition: usize,
        /// The error, as text (a panic's message is in it).
        error: String,
    },
    /// A task ended.
    TaskEnded {
        /// The stage.
        stage_id: usize,
        /// The partition it computed.
        partition: usize,
        /// Whether it succeeded.
        succeeded: bool,
        /// Wall time.
        elapsed: Duration,
    },
    /// An RDD moved in the checkpoint state machine.
    CheckpointStateChanged {
        /// The RDD.
        rdd_id: usize,
        /// The old state.
        from: CheckpointState,
        /// The new state.
        to: CheckpointState,
    },
    /// One partition file of a reliable checkpoint was written and renamed into place.
    CheckpointPartitionWritten {
        /// The RDD.
        rdd_id: usize,
        /// The partition.
        partition: usize,
        /// Records in it.
        records: u64,
        /// File size in bytes.
        bytes: u64,
    },
    /// A reliable checkpoint's manifest was committed.
    CheckpointCommitted {
        /// The RDD.
        rdd_id: usize,
        /// Its `rdd-<id>-<write id>` folder.
        path: PathBuf,
        /// Total bytes of its part files.
        bytes: u64,
    },
    /// A checkpoint was swapped in for an RDD's lineage (right after its
    /// [`Event::CheckpointStateChanged`] to `Checkpointed`): the RDD now reads the
    /// checkpoint RDD, and its former parents are released.
    LineageTruncated {
        /// The checkpointed RDD.
        rdd_id: usize,
        /// The RDD that reads the checkpoint, the RDD's only parent from now on.
        checkpoint_rdd_id: usize,
        /// Its kind: `ReliableCheckpointRdd` or `LocalCheckpointRdd`.
        checkpoint_kind: &'static str,
        /// The ids of the parents the RDD held before, now released.
        released_parents: Vec<usize>,
    },
    /// A request to checkpoint was not taken, because the RDD keeps another checkpoint
    /// (e.g. `checkpoint()` after `local_checkpoint()`: the local one is kept).
    CheckpointRequestIgnored {
        /// The RDD.
        rdd_id: usize,
        /// Why.
        reason: String,
    },
    /// A series' checkpoint was passed over while looking for the newest one to resume
    /// from (`Checkpointer::latest`): its manifest or part files are damaged or missing, or
    /// it belongs to another computation (other meta or element type).
    CheckpointSkipped {
        /// The series looked for.
        series: String,
        /// The checkpoint folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A series' checkpoint fell outside `keep` after a newer one was committed: its
    /// folder's removal started now (`deleted_now`; it runs in the background, see
    /// [`crate::checkpoint::wait_for_removals`]), or will when the last RDD reading it is
    /// dropped.
    CheckpointReleased {
        /// The series.
        series: String,
        /// The step it held.
        step: u64,
        /// Its folder.
        path: PathBuf,
        /// Whether its removal started at once (no RDD read it).
        deleted_now: bool,
    },
    /// The partitioner recorded in a checkpoint reopened from disk was not trusted: this
    /// build does not place the checkpoint's keys where they are. By-key operations shuffle
    /// the RDD instead of relying on its partitioning, so results stay correct.
    PartitionerDropped {
        /// The reopened checkpoint RDD.
        rdd_id: usize,
        /// Which key was found where, and where this build would place it.
        reason: String,
    },
}

/// Receives [`Event`]s; see `Context::add_listener`. Implemented for every
/// `Fn(&Event) + Send + Sync` closure.
///
/// A listener may call back into the context (add listeners, run jobs): no lock is held
/// while it runs. Its panics are caught and never change the outcome of an action.
pub trait Listener: Send + Sync {
    /// Called once per event, on the thread that produced it.
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Listener for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}
