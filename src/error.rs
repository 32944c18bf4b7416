//! The one error type of flintlock.
//!
//! Every variant carries facts as fields (path, RDD id, partition, expected, found) and its
//! message adds the likely cause and the remedy where there is one. I/O errors are kept as the
//! `#[source]` beside the path they happened on.
//!
//! The rule for bad input: runtime conditions (files, data, user closures, checkpoints) are an
//! `Err`; programmer misuse of a *lazy transformation* that cannot return a `Result` (zero
//! partitions, zipping RDDs with different partition counts, a sampling fraction out of range)
//! panics at the caller's line through `#[track_caller]`, with a message, as `rayon` does.
//! Functions that already return `Result` (sources reading files, actions, `checkpoint`) report
//! invalid arguments as [`Error::InvalidArgument`].

use std::io;
use std::path::PathBuf;

use crate::checkpoint::CheckpointState;

/// `Result<T, flintlock::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in flintlock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task failed: a user closure panicked while computing `partition` of RDD `rdd_id`.
    #[error("task failed: partition {partition} of {rdd} (rdd {rdd_id}) panicked: {message}")]
    TaskFailed {
        /// Id of the RDD the task was computing.
        rdd_id: usize,
        /// Display name of that RDD (`MapPartitionsRdd[3] at map at src/main.rs:12`).
        rdd: String,
        /// The partition index.
        partition: usize,
        /// The panic message.
        message: String,
    },

    /// An argument was out of range (zero partitions, a negative fraction, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An I/O operation on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `write`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A line of an input file could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },

    /// `checkpoint()` was called on a context without a checkpoint directory.
    #[error(
        "no checkpoint directory is set: call Context::builder().checkpoint_dir(..) or \
         ctx.set_checkpoint_dir(..) before rdd.checkpoint()"
    )]
    NoCheckpointDir,

    /// A checkpoint on disk is not what the reader expected: damaged, foreign, or incomplete.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The file (part file or manifest) or folder.
        path: PathBuf,
        /// What was expected and what was found.
        reason: String,
    },

    /// A shuffle's spill file (see [`ContextBuilder::memory_limit`](crate::ContextBuilder::memory_limit))
    /// does not read back: damaged on disk or changed by another process. The shuffle's
    /// outputs are marked damaged, so the next action runs its map stage again.
    #[error(
        "damaged spill file {path}: {reason} (what it held is computed again from the \
         lineage: a shuffle's map stage at the next action, a disk block when it is next read)"
    )]
    SpillDamaged {
        /// The spill file.
        path: PathBuf,
        /// What did not check.
        reason: String,
    },

    /// Records that had to go to disk (a shuffle over `ContextBuilder::memory_limit`, or a
    /// `StorageLevel::MemoryAndDisk` / `DiskOnly` block) cannot be written in the spill
    /// format, or were written and do not read back: their serde form is not one postcard
    /// reads back as the same value. The action fails; nothing is lost, since spills and
    /// disk blocks are copies of what the lineage computes.
    #[error(
        "cannot spill elements of type `{type_name}` to disk: {reason}. Nothing was lost (a \
         spill is a copy of what the lineage computes): give the type a serde form postcard \
         reads back, or keep it in memory (no memory limit, StorageLevel::MemoryOnly)"
    )]
    UnspillableRecord {
        /// `std::any::type_name` of the elements.
        type_name: String,
        /// What went wrong.
        reason: String,
    },

    /// A checkpoint folder has no committed manifest: the write never finished.
    #[error(
        "{path} is not a committed checkpoint: it has no _manifest.json (the write was \
         interrupted, or this is not a checkpoint folder)"
    )]
    NotCommitted {
        /// The folder.
        path: PathBuf,
    },

    /// A checkpoint file was written by a newer flintlock.
    #[error(
        "{path}: checkpoint format version {found} is newer than the newest this build reads \
         ({max}); upgrade flintlock to read it"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        max: u32,
    },

    /// A checkpoint holds elements of another type than the one asked for: another type
    /// name, or (format version 2) the same name with another structural layout.
    #[error(
        "{path}: checkpoint holds elements of type `{found}`, but it was opened as `{expected}`{}",
        difference.as_ref().map(|d| format!(": the layouts differ at {d}")).unwrap_or_default()
    )]
    TypeMismatch {
        /// The manifest or part file.
        path: PathBuf,
        /// The type asked for.
        expected: String,
        /// The type recorded in the checkpoint.
        found: String,
        /// For a layout mismatch, the first difference between the layout written and the
        /// layout of the type asked for.
        difference: Option<String>,
    },

    /// A checkpoint write (or a [`save_as_object_file`](crate::Rdd::save_as_object_file))
    /// was refused because a record would not read back: the element type's serde
    /// implementation produces bytes that the checkpoint reader cannot decode into the same
    /// record (or cannot encode at all), or a record exceeds a limit of the reader. Nothing
    /// was committed: a checkpointed RDD is still Marked, with its lineage; a save removed
    /// what it wrote.
    #[error(
        "cannot store elements of type `{type_name}` in the checkpoint format: {reason}. \
         Nothing was committed: a checkpoint stays Marked with its lineage intact (every \
         action retries the write until rdd.cancel_checkpoint()); a save removed what it wrote"
    )]
    UnreadableRecord {
        /// `std::any::type_name` of the elements.
        type_name: String,
        /// What went wrong, with the partition and record.
        reason: String,
    },

    /// A restarted job's series checkpoint was written by another computation: its recorded
    /// meta (graph digest, parameters, ...) differs from the series' meta.
    #[error(
        "cannot resume from step {step} ({path}): meta {key:?} was {} when it \
         was written, but is {} now; resume with the same input and parameters, or use \
         another checkpoint directory or app id",
        recorded.as_deref().map_or("not set".to_string(), |v| format!("{v:?}")),
        expected.as_deref().map_or("not set".to_string(), |v| format!("{v:?}"))
    )]
    ResumeMismatch {
        /// The step of the checkpoint.
        step: u64,
        /// Its folder.
        path: PathBuf,
        /// The meta key that differs.
        key: String,
        /// Its value in the checkpoint (`None`: not recorded).
        recorded: Option<String>,
        /// Its value in the series now (`None`: not set).
        expected: Option<String>,
    },

    /// RDDs of two different contexts were combined (`union`, `zip`, `join`, ...). Each
    /// context has its own ids, shuffle and block stores, so the result cannot be computed.
    #[error(
        "rdd {rdd_id} combines RDDs of two contexts ({this} and {other}); RDDs can only be \
         combined with RDDs of the same Context"
    )]
    ContextMismatch {
        /// The RDD whose lineage mixes contexts.
        rdd_id: usize,
        /// The context the RDD belongs to (its app id and serial number).
        this: String,
        /// The other context found in its lineage.
        other: String,
    },

    /// A checkpoint was partitioned by a custom partitioner this context has no
    /// implementation of: register the same scheme (name, key type, partition count and
    /// parameters) with [`Context::register_partitioner`](crate::Context::register_partitioner)
    /// before opening it.
    #[error(
        "{path} is partitioned by custom partitioner {name:?} (keys `{key_type}`, {partitions} \
         partitions), which this context does not know{}: register it with \
         Context::register_partitioner before opening the checkpoint",
        if registered.is_empty() {
            String::new()
        } else {
            format!(
                " (registered under that name with other settings: {})",
                registered.join("; ")
            )
        }
    )]
    UnknownPartitioner {
        /// The manifest.
        path: PathBuf,
        /// The partitioner's name.
        name: String,
        /// Its key type, as recorded.
        key_type: String,
        /// Its partition count.
        partitions: usize,
        /// The partitioners registered under the same name, described: none matched (another
        /// key type, count or parameters).
        registered: Vec<String>,
    },

    /// The job was cancelled ([`Context::cancel_job_group`](crate::Context::cancel_job_group),
    /// [`Context::cancel_all_jobs`](crate::Context::cancel_all_jobs) or
    /// [`Context::cancel_job`](crate::Context::cancel_job)). Its running tasks stopped at
    /// their next batch; its checkpoints were rolled back to Marked, as after any failure.
    #[error("job {job_id} was cancelled: {reason}")]
    Cancelled {
        /// The job.
        job_id: usize,
        /// The job group it ran in, if any.
        group: Option<String>,
        /// Why: which call cancelled it.
        reason: String,
    },

    /// Code outside any task panicked while a job ran (a listener is not such code: its
    /// panics are caught and reported): the job's checkpoints were rolled back to Marked.
    /// Or the user's code panicked after the job, while the action merged the partitions'
    /// results on the calling thread (`reduce`'s function, an `Ord`, `Hash` or `Eq` impl;
    /// the message then says "merging the partitions' results on the driver"): the job
    /// itself succeeded, and the checkpoints it wrote stay committed.
    #[error("job on rdd {rdd_id} failed: a panic outside the tasks: {message}")]
    JobPanicked {
        /// The RDD the action ran on.
        rdd_id: usize,
        /// The panic message.
        message: String,
    },

    /// A block of a local checkpoint is gone, and local checkpoints have no lineage to
    /// recompute it from.
    #[error(
        "block rdd_{rdd_id}_{partition} of a locally checkpointed RDD was lost (evicted, \
         unpersisted, or never materialised). Local checkpoints trade fault tolerance for \
         speed: its lineage was truncated, so the block cannot be recomputed. Use \
         rdd.checkpoint() for a reliable checkpoint instead"
    )]
    LocalCheckpointBlockLost {
        /// The RDD.
        rdd_id: usize,
        /// The partition.
        partition: usize,
    },

    /// An RDD is in a checkpoint state that does not allow the operation.
    #[error("rdd {rdd_id} is {state:?}: {message}")]
    InvalidCheckpointState {
        /// The RDD.
        rdd_id: usize,
        /// Its state.
        state: CheckpointState,
        /// What was attempted.
        message: String,
    },

    /// Another process, or another live user in this process, holds the lock of this folder:
    /// a checkpoint application folder, a streaming checkpoint folder or a sink folder.
    #[error(
        "{path} is locked: another process, or another live context or stream of this \
         process, uses the folder (a checkpoint app folder: the same app id in the same \
         checkpoint_dir, also kept locked while its checkpoints are read; a streaming or sink \
         folder: another running stream); use another folder or app_id, or drop the other \
         user first"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A transformation's contract was broken by the data (e.g. `zip` of partitions with
    /// different element counts).
    #[error("rdd {rdd_id}, partition {partition}: {message}")]
    DataMismatch {
        /// The RDD.
        rdd_id: usize,
        /// The partition.
        partition: usize,
        /// What did not match.
        message: String,
    },

    /// Serializing or deserializing records failed.
    #[error("{context}: {source}")]
    Serialization {
        /// Where (file, partition).
        context: String,
        /// The codec's error.
        #[source]
        source: postcard::Error,
    },

    /// A streaming application was restarted from its checkpoint folder with an operator graph
    /// that differs from the recorded one in a way its state cannot follow (a renamed
    /// stateful operator, another state type, another batch interval, ...). Spark either
    /// fails to deserialize or runs the old code here; flintlock names each difference.
    #[error(
        "the streaming graph changed since {dir} was written: {}; restore the code, choose \
         another GraphPolicy, or start over in a fresh folder",
        differences.join("; ")
    )]
    GraphChanged {
        /// The streaming checkpoint folder.
        dir: PathBuf,
        /// One line per difference, e.g. "stateful `counts`: state type u64 → i64".
        differences: Vec<String>,
    },

    /// The processes of a cluster could not go on together (feature `cluster`): a process
    /// died, left, hung past the epoch timeout, did not connect, or ran another stage; or
    /// a stage failed on another process (`process` names it); or the processes disagree
    /// about the app id, the checkpoint settings or the checkpoints they write, or do not
    /// share the checkpoint directory; or the program used what cluster mode does not
    /// support yet. The message says which.
    #[error("cluster: {message}")]
    Cluster {
        /// The process the error is about, when one is known.
        process: Option<usize>,
        /// What happened.
        message: String,
    },

    /// Records of `type_name` had to cross processes (a shuffle or an action's result in
    /// cluster mode) and the context has no codec for them.
    #[error(
        "records of type `{type_name}` cross processes here and have no codec: call \
         ctx.register_spillable::<{type_name}>() before the job (built in: the primitive \
         types, String, and (K, V) pairs of u32, u64, i32, i64, usize or String keys with \
         those or f32, f64, bool values)"
    )]
    NoCodec {
        /// `std::any::type_name` of the records.
        type_name: String,
    },

    /// An internal invariant did not hold. This is a flintlock bug: please report it.
    #[error("internal error (a flintlock bug, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A [`Error::CorruptCheckpoint`] for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::CorruptCheckpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A copy of this error, for an error that more than one action reports (e.g. a failed
    /// `sort_by_key` sampling job). I/O errors keep their kind and message but not their
    /// source chain.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::TaskFailed {
                rdd_id,
                rdd,
                partition,
                message,
            } => Error::TaskFailed {
                rdd_id: *rdd_id,
                rdd: rdd.clone(),
                partition: *partition,
                message: message.clone(),
            },
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Parse {
                path,
                line,
                message,
            } => Error::Parse {
                path: path.clone(),
                line: *line,
                message: message.clone(),
            },
            Error::NoCheckpointDir => Error::NoCheckpointDir,
            Error::CorruptCheckpoint { path, reason } => Error::CorruptCheckpoint {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::SpillDamaged { path, reason } => Error::SpillDamaged {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::UnspillableRecord { type_name, reason } => Error::UnspillableRecord {
                type_name: type_name.clone(),
                reason: reason.clone(),
            },
            Error::NotCommitted { path } => Error::NotCommitted { path: path.clone() },
            Error::Cluster { process, message } => Error::Cluster {
                process: *process,
                message: message.clone(),
            },
            Error::NoCodec { type_name } => Error::NoCodec {
                type_name: type_name.clone(),
            },
            Error::UnsupportedVersion { path, found, max } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                max: *max,
            },
            Error::TypeMismatch {
                path,
                expected,
                found,
                difference,
            } => Error::TypeMismatch {
                path: path.clone(),
                expected: expected.clone(),
                found: found.clone(),
                difference: difference.clone(),
            },
            Error::UnreadableRecord { type_name, reason } => Error::UnreadableRecord {
                type_name: type_name.clone(),
                reason: reason.clone(),
            },
            Error::ContextMismatch {
                rdd_id,
                this,
                other,
            } => Error::ContextMismatch {
                rdd_id: *rdd_id,
                this: this.clone(),
                other: other.clone(),
            },
            Error::ResumeMismatch {
                step,
                path,
                key,
                recorded,
                expected,
            } => Error::ResumeMismatch {
                step: *step,
                path: path.clone(),
                key: key.clone(),
                recorded: recorded.clone(),
                expected: expected.clone(),
            },
            Error::UnknownPartitioner {
                path,
                name,
                key_type,
                partitions,
                registered,
            } => Error::UnknownPartitioner {
                path: path.clone(),
                name: name.clone(),
                key_type: key_type.clone(),
                partitions: *partitions,
                registered: registered.clone(),
            },
            Error::Cancelled {
                job_id,
                group,
                reason,
            } => Error::Cancelled {
                job_id: *job_id,
                group: group.clone(),
                reason: reason.clone(),
            },
            Error::JobPanicked { rdd_id, message } => Error::JobPanicked {
                rdd_id: *rdd_id,
                message: message.clone(),
            },
            Error::LocalCheckpointBlockLost { rdd_id, partition } => {
                Error::LocalCheckpointBlockLost {
                    rdd_id: *rdd_id,
                    partition: *partition,
                }
            }
            Error::InvalidCheckpointState {
                rdd_id,
                state,
                message,
            } => Error::InvalidCheckpointState {
                rdd_id: *rdd_id,
                state: *state,
                message: message.clone(),
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::DataMismatch {
                rdd_id,
                partition,
                message,
            } => Error::DataMismatch {
                rdd_id: *rdd_id,
                partition: *partition,
                message: message.clone(),
            },
            Error::Serialization { context, source } => Error::Serialization {
                context: context.clone(),
                source: source.clone(),
            },
            Error::GraphChanged { dir, differences } => Error::GraphChanged {
                dir: dir.clone(),
                differences: differences.clone(),
            },
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }

    /// The [`io::ErrorKind`] when this is an I/O error, e.g. to tell a full disk
    /// (`StorageFull`) from other failures.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
