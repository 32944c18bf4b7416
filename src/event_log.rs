//! The event log: every [`Event`] of a context as one JSON object per line, for
//! `flintlock report` (Spark's event log and history server, in one file).
//!
//! Turn it on with [`crate::ContextBuilder::event_log`]. The first line is a
//! [`Record::LogStart`] naming the format and its version; every later line is one event,
//! with the microseconds since the log started (`t_us`) and, for events sent from a worker
//! thread, the worker's index (`worker`):
//!
//! ```text
//! {"t_us":0,"event":"LogStart","format":"flintlock-event-log","version":1,...}
//! {"t_us":812,"event":"JobStarted","job_id":0,"rdd_id":3,"partitions":4}
//! {"t_us":1650,"worker":1,"event":"TaskEnded","stage_id":0,"partition":2,"succeeded":true,"elapsed_us":402}
//! ```
//!
//! Writes are buffered, and flushed when a job ends (at most every 50 ms), at least every
//! half second by a background thread, and when the context is dropped, so a process killed
//! mid-job leaves a log whose last line may be cut off; [`read`] reads such a
//! log and says what it skipped. A failed write (a full disk) is reported once on stderr
//! and ends the log; it never fails a job.
//!
//! The format is versioned ([`VERSION`]); every released version stays readable, with a
//! golden log per version under `tests/data/event-log/`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::listener::{Event, Listener};
use crate::Partitioner;

/// The `format` of a [`Record::LogStart`] line.
pub const FORMAT: &str = "flintlock-event-log";

/// The event-log format version this build writes (and the newest it knows).
pub const VERSION: u32 = 1;

/// Lines longer than this are skipped by [`read`] (a lineage snapshot of 100,000 RDDs is
/// about 30 MiB).
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// One line of an event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Line {
    /// Microseconds since the log started.
    pub t_us: u64,
    /// The index of the worker thread that sent the event (none: the driver's thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
    /// The event.
    #[serde(flatten)]
    pub record: Record,
}

/// One RDD of a [`Record::JobLineage`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoggedNode {
    /// The RDD's id.
    pub id: u64,
    /// Its kind (`MapPartitionsRdd`, `ShuffledRdd`, `ReliableCheckpointRdd`, ...).
    pub kind: String,
    /// The user-given name.
    #[serde(default)]
    pub name: Option<String>,
    /// Where it was created.
    pub call_site: String,
    /// Number of partitions.
    pub partitions: u64,
    /// Its partitioner (`hash, 8 partitions`), if known.
    #[serde(default)]
    pub partitioner: Option<String>,
    /// Its storage level (`None`, `MemoryOnly`, ...).
    pub storage_level: String,
    /// Its checkpoint state as the job started (`Initialized`, `Marked`, `InProgress`,
    /// `Checkpointed`).
    pub checkpoint_state: String,
    /// Edges to its parents.
    #[serde(default)]
    pub parents: Vec<LoggedEdge>,
}

/// An edge of a [`LoggedNode`] to a parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoggedEdge {
    /// The parent's id.
    pub parent: u64,
    /// The dependency kind (`OneToOne`, `Range`, `Narrow`, `Shuffle`).
    pub kind: String,
}

/// What a line records: the first line's [`Record::LogStart`], then one [`Event`] each
/// (durations in microseconds, enums by name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
#[non_exhaustive]
#[allow(missing_docs)] // the fields mirror those of the `Event` of the same name
pub enum Record {
    /// The first line: what wrote the log, and for which context.
    LogStart {
        /// Always [`FORMAT`].
        format: String,
        /// The format version ([`VERSION`] when this build wrote it).
        version: u32,
        /// The flintlock version that wrote it.
        flintlock: String,
        /// The context's app name.
        app_name: String,
        /// The context's app id.
        app_id: String,
        /// Wall-clock time of `t_us = 0` (RFC 3339, UTC).
        started_at: String,
        /// Worker threads of the context.
        threads: u64,
    },
    /// An action started a job ([`Event::JobStarted`]).
    JobStarted {
        job_id: u64,
        rdd_id: u64,
        partitions: u64,
    },
    /// The job's lineage as it starts ([`Event::JobLineage`]).
    JobLineage {
        job_id: u64,
        /// The longest path from the job's RDD to a source or checkpoint.
        #[serde(default)]
        depth: Option<u64>,
        /// At most [`MAX_LOGGED_NODES`], the job's RDD first.
        nodes: Vec<LoggedNode>,
        /// RDDs of the lineage left out of `nodes`.
        #[serde(default)]
        omitted_nodes: u64,
    },
    /// A job failed, with its error ([`Event::JobFailed`]).
    JobFailed { job_id: u64, error: String },
    /// A job ended ([`Event::JobEnded`]).
    JobEnded {
        job_id: u64,
        succeeded: bool,
        elapsed_us: u64,
    },
    /// A stage started ([`Event::StageStarted`]).
    StageStarted {
        job_id: u64,
        stage_id: u64,
        /// `ShuffleMap`, `Result` or `CheckpointCompletion`.
        kind: String,
        rdd_id: u64,
        #[serde(default)]
        shuffle_id: Option<u64>,
        tasks: u64,
    },
    /// A stage ended ([`Event::StageEnded`]).
    StageEnded {
        job_id: u64,
        stage_id: u64,
        succeeded: bool,
        elapsed_us: u64,
    },
    /// A task started ([`Event::TaskStarted`]).
    TaskStarted { stage_id: u64, partition: u64 },
    /// A task failed, with its error ([`Event::TaskFailed`]).
    TaskFailed {
        stage_id: u64,
        partition: u64,
        error: String,
    },
    /// A task ended ([`Event::TaskEnded`]).
    TaskEnded {
        stage_id: u64,
        partition: u64,
        succeeded: bool,
        elapsed_us: u64,
    },
    /// An RDD moved in the checkpoint state machine ([`Event::CheckpointStateChanged`]).
    CheckpointStateChanged {
        rdd_id: u64,
        from: String,
        to: String,
    },
    /// A checkpoint part file was written ([`Event::CheckpointPartitionWritten`]).
    CheckpointPartitionWritten {
        rdd_id: u64,
        partition: u64,
        records: u64,
        bytes: u64,
    },
    /// A checkpoint's manifest was committed ([`Event::CheckpointCommitted`]).
    CheckpointCommitted {
        rdd_id: u64,
        path: String,
        bytes: u64,
    },
    /// A checkpoint replaced an RDD's lineage ([`Event::LineageTruncated`]).
    LineageTruncated {
        rdd_id: u64,
        checkpoint_rdd_id: u64,
        checkpoint_kind: String,
        released_parents: Vec<u64>,
    },
    /// A checkpoint request was not taken ([`Event::CheckpointRequestIgnored`]).
    CheckpointRequestIgnored { rdd_id: u64, reason: String },
    /// A series' checkpoint was passed over ([`Event::CheckpointSkipped`]).
    CheckpointSkipped {
        series: String,
        path: String,
        reason: String,
    },
    /// A series' checkpoint fell outside `keep` ([`Event::CheckpointReleased`]).
    CheckpointReleased {
        series: String,
        step: u64,
        path: String,
        deleted_now: bool,
    },
    /// A reopened checkpoint's partitioner was not trusted ([`Event::PartitionerDropped`]).
    PartitionerDropped { rdd_id: u64, reason: String },
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn id(n: usize) -> u64 {
    n as u64
}

/// `hash, 8 partitions` / `range, 4 partitions`.
pub(crate) fn describe_partitioner(p: &Partitioner) -> String {
    match p {
        Partitioner::Hash(h) => format!("hash, {} partitions", h.num_partitions()),
        Partitioner::Range(r) => format!("range, {} partitions", r.num_partitions()),
        Partitioner::Custom(c) => {
            format!("{} (custom), {} partitions", c.name(), c.num_partitions())
        }
    }
}

impl Record {
    /// The record of `event`.
    fn of(event: &Event) -> Record {
        match event {
            Event::JobStarted {
                job_id,
                rdd_id,
                partitions,
            } => Record::JobStarted {
                job_id: id(*job_id),
                rdd_id: id(*rdd_id),
                partitions: id(*partitions),
            },
            Event::JobLineage { job_id, nodes } => {
                let mut logged: Vec<LoggedNode> = nodes
                    .iter()
                    .map(|n| LoggedNode {
                        id: id(n.id),
                        kind: n.kind.to_string(),
                        name: n.name.clone(),
                        call_site: n.call_site.clone(),
                        partitions: id(n.partitions),
                        partitioner: n.partitioner.as_ref().map(describe_partitioner),
                        storage_level: format!("{:?}", n.storage_level),
                        checkpoint_state: n.checkpoint_state.to_string(),
                        parents: n
                            .parents
                            .iter()
                            .map(|e| LoggedEdge {
                                parent: id(e.parent),
                                kind: format!("{:?}", e.kind),
                            })
                            .collect(),
                    })
                    .collect();
                let depth = lineage_depth(&logged);
                let omitted = logged.len().saturating_sub(MAX_LOGGED_NODES);
                logged.truncate(MAX_LOGGED_NODES);
                Record::JobLineage {
                    job_id: id(*job_id),
                    depth: Some(depth),
                    nodes: logged,
                    omitted_nodes: id(omitted),
                }
            }
            Event::JobFailed { job_id, error } => Record::JobFailed {
                job_id: id(*job_id),
                error: error.clone(),
            },
            Event::JobEnded {
                job_id,
                succeeded,
                elapsed,
            } => Record::JobEnded {
                job_id: id(*job_id),
                succeeded: *succeeded,
                elapsed_us: micros(*elapsed),
            },
            Event::StageStarted {
                job_id,
                stage_id,
                kind,
                rdd_id,
                shuffle_id,
                tasks,
            } => Record::StageStarted {
                job_id: id(*job_id),
                stage_id: id(*stage_id),
                kind: format!("{kind:?}"),
                rdd_id: id(*rdd_id),
                shuffle_id: shuffle_id.map(id),
                tasks: id(*tasks),
            },
            Event::StageEnded {
                job_id,
                stage_id,
                succeeded,
                elapsed,
            } => Record::StageEnded {
                job_id: id(*job_id),
                stage_id: id(*stage_id),
                succeeded: *succeeded,
                elapsed_us: micros(*elapsed),
            },
            Event::TaskStarted {
                stage_id,
                partition,
            } => Record::TaskStarted {
                stage_id: id(*stage_id),
                partition: id(*partition),
            },
            Event::TaskFailed {
                stage_id,
                partition,
                error,
            } => Record::TaskFailed {
                stage_id: id(*stage_id),
                partition: id(*partition),
                error: error.clone(),
            },
            Event::TaskEnded {
                stage_id,
                partition,
                succeeded,
                elapsed,
            } => Record::TaskEnded {
                stage_id: id(*stage_id),
                partition: id(*partition),
                succeeded: *succeeded,
                elapsed_us: micros(*elapsed),
            },
            Event::CheckpointStateChanged { rdd_id, from, to } => Record::CheckpointStateChanged {
                rdd_id: id(*rdd_id),
                from: from.to_string(),
                to: to.to_string(),
            },
            Event::CheckpointPartitionWritten {
                rdd_id,
                partition,
                records,
                bytes,
            } => Record::CheckpointPartitionWritten {
                rdd_id: id(*rdd_id),
                partition: id(*partition),
                records: *records,
                bytes: *bytes,
            },
            Event::CheckpointCommitted {
                rdd_id,
                path,
                bytes,
            } => Record::CheckpointCommitted {
                rdd_id: id(*rdd_id),
                path: path.display().to_string(),
                bytes: *bytes,
            },
            Event::LineageTruncated {
                rdd_id,
                checkpoint_rdd_id,
                checkpoint_kind,
                released_parents,
            } => Record::LineageTruncated {
                rdd_id: id(*rdd_id),
                checkpoint_rdd_id: id(*checkpoint_rdd_id),
                checkpoint_kind: checkpoint_kind.to_string(),
                released_parents: released_parents.iter().map(|&p| id(p)).collect(),
            },
            Event::CheckpointRequestIgnored { rdd_id, reason } => {
                Record::CheckpointRequestIgnored {
                    rdd_id: id(*rdd_id),
                    reason: reason.clone(),
                }
            }
            Event::CheckpointSkipped {
                series,
                path,
                reason,
            } => Record::CheckpointSkipped {
                series: series.clone(),
                path: path.display().to_string(),
                reason: reason.clone(),
            },
            Event::CheckpointReleased {
                series,
                step,
                path,
                deleted_now,
            } => Record::CheckpointReleased {
                series: series.clone(),
                step: *step,
                path: path.display().to_string(),
                deleted_now: *deleted_now,
            },
            Event::PartitionerDropped { rdd_id, reason } => Record::PartitionerDropped {
                rdd_id: id(*rdd_id),
                reason: reason.clone(),
            },
        }
    }

    /// The variant's name, as in the `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            Record::LogStart { .. } => "LogStart",
            Record::JobStarted { .. } => "JobStarted",
            Record::JobLineage { .. } => "JobLineage",
            Record::JobFailed { .. } => "JobFailed",
            Record::JobEnded { .. } => "JobEnded",
            Record::StageStarted { .. } => "StageStarted",
            Record::StageEnded { .. } => "StageEnded",
            Record::TaskStarted { .. } => "TaskStarted",
            Record::TaskFailed { .. } => "TaskFailed",
            Record::TaskEnded { .. } => "TaskEnded",
            Record::CheckpointStateChanged { .. } => "CheckpointStateChanged",
            Record::CheckpointPartitionWritten { .. } => "CheckpointPartitionWritten",
            Record::CheckpointCommitted { .. } => "CheckpointCommitted",
            Record::LineageTruncated { .. } => "LineageTruncated",
            Record::CheckpointRequestIgnored { .. } => "CheckpointRequestIgnored",
            Record::CheckpointSkipped { .. } => "CheckpointSkipped",
            Record::CheckpointReleased { .. } => "CheckpointReleased",
            Record::PartitionerDropped { .. } => "PartitionerDropped",
        }
    }
}

/// The most RDDs a [`Record::JobLineage`] line lists (the job's RDD first, then in
/// depth-first order); the rest are counted in its `omitted_nodes`. The report draws at most
/// 250, and without a cap an iterative job that is never checkpointed writes a log that
/// grows with the square of its iterations.
pub const MAX_LOGGED_NODES: usize = 500;

/// How often a background thread flushes what the log has buffered, so that it reaches the
/// file even when no job ends and the context is never dropped (a listener that holds a
/// clone of its own context keeps it alive).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The longest path from the first node to a node without parents, over the edges whose
/// parents are listed (a cycle in a damaged log is cut where it closes).
pub(crate) fn lineage_depth(nodes: &[LoggedNode]) -> u64 {
    let Some(root) = nodes.first() else {
        return 0;
    };
    let by_id: std::collections::HashMap<u64, &LoggedNode> =
        nodes.iter().map(|n| (n.id, n)).collect();
    let mut depth: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut on_stack: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut stack: Vec<(u64, bool)> = vec![(root.id, false)];
    while let Some((id, expanded)) = stack.pop() {
        let Some(node) = by_id.get(&id) else {
            continue;
        };
        if expanded {
            on_stack.remove(&id);
            let d = node
                .parents
                .iter()
                .filter_map(|e| depth.get(&e.parent).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            depth.insert(id, d);
            continue;
        }
        if depth.contains_key(&id) || !on_stack.insert(id) {
            continue;
        }
        stack.push((id, true));
        for e in &node.parents {
            if by_id.contains_key(&e.parent)
                && !depth.contains_key(&e.parent)
                && !on_stack.contains(&e.parent)
            {
                stack.push((e.parent, false));
            }
        }
    }
    depth.get(&root.id).copied().unwrap_or(0)
}

/// What the writer and its flushing thread share.
struct Shared {
    path: PathBuf,
    start: Instant,
    out: Mutex<Out>,
    /// The file's lock, held through a second handle of the same open file: a failed
    /// write closes the writer's handle, and the log must stay locked for the context's
    /// lifetime even then (another context taking the path would empty what was logged).
    lock: File,
}

struct Out {
    /// `None` once a write failed: the log ends there.
    file: Option<BufWriter<File>>,
    /// Written since the last flush.
    dirty: bool,
    /// When the buffer was last flushed.
    flushed: Instant,
}

/// A job's end flushes the log only when the last flush is older than this: a flush per
/// job would cost a system call for every small job, and the flushing thread catches up
/// within [`FLUSH_EVERY`] anyway.
const FLUSH_AT_JOB_END_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

impl Shared {
    /// Encodes the line with the time taken under the lock (so times never go back from
    /// line to line) and writes it.
    fn write(&self, worker: Option<usize>, record: Record, flush: bool) {
        let mut out = self.out.lock();
        if out.file.is_none() {
            return;
        }
        let line = Line {
            t_us: micros(self.start.elapsed()),
            worker,
            record,
        };
        let mut buf = match serde_json::to_vec(&line) {
            Ok(buf) => buf,
            Err(e) => {
                eprintln!(
                    "flintlock: event log {}: a {} event could not be encoded ({e}); it is left out",
                    self.path.display(),
                    line.record.name()
                );
                return;
            }
        };
        buf.push(b'\n');
        let flush = flush && out.flushed.elapsed() >= FLUSH_AT_JOB_END_AFTER;
        let Some(w) = out.file.as_mut() else {
            return;
        };
        let written = w
            .write_all(&buf)
            .and_then(|()| if flush { w.flush() } else { Ok(()) });
        match written {
            Ok(()) if flush => {
                out.dirty = false;
                out.flushed = Instant::now();
            }
            Ok(()) => out.dirty = true,
            Err(e) => self.fail(&mut out, &e),
        }
    }

    fn flush(&self) {
        let mut out = self.out.lock();
        if !out.dirty {
            return;
        }
        if let Some(w) = out.file.as_mut() {
            match w.flush() {
                Ok(()) => {
                    out.dirty = false;
                    out.flushed = Instant::now();
                }
                Err(e) => self.fail(&mut out, &e),
            }
        }
    }

    fn fail(&self, out: &mut Out, e: &std::io::Error) {
        eprintln!(
            "flintlock: writing the event log {} failed ({e}); the log ends here, jobs go on",
            self.path.display()
        );
        out.file = None;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush();
        // Unlocked explicitly, not only closed: a child process started at this instant
        // holds a copy of the descriptor until its `exec`, and the lock would stay held
        // through it (see `LocalLock`'s `Drop` in `checkpoint::storage`).
        let _ = self.lock.unlock();
    }
}

/// The listener behind [`crate::ContextBuilder::event_log`]. It holds an exclusive lock on
/// the file while it lives, so two contexts (or processes) never write one log.
pub(crate) struct EventLogWriter {
    shared: Arc<Shared>,
}

/// Whether `path` starts with a URL scheme (`s3://`, `file://`, ...).
fn has_scheme(path: &str) -> bool {
    let Some((scheme, _)) = path.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl EventLogWriter {
    /// Takes `path` (created, or emptied once its lock is taken) and writes the
    /// [`Record::LogStart`] line.
    pub(crate) fn create(
        path: &Path,
        app_name: &str,
        app_id: &str,
        threads: usize,
    ) -> Result<EventLogWriter> {
        let text = path.to_string_lossy();
        if text.is_empty() {
            return Err(Error::InvalidArgument(
                "the event log path is empty".to_string(),
            ));
        }
        if has_scheme(&text) {
            return Err(Error::InvalidArgument(format!(
                "event logs are written to local files; {} is a URL",
                path.display()
            )));
        }
        // Opening a FIFO for writing would wait for a reader; a folder cannot be written.
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            return Err(Error::io(
                "create",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (an event log is one)",
                ),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::InvalidArgument(format!(
                    "the event log {} is being written by another live context or process; \
                     give each its own file",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
        }
        file.set_len(0)
            .map_err(|e| Error::io("truncate", path, e))?;
        let lock = file.try_clone().map_err(|e| Error::io("lock", path, e))?;
        let shared = Arc::new(Shared {
            lock,
            path: path.to_path_buf(),
            start: Instant::now(),
            out: Mutex::new(Out {
                file: Some(BufWriter::with_capacity(64 << 10, file)),
                dirty: false,
                // The first line is flushed.
                flushed: Instant::now() - FLUSH_AT_JOB_END_AFTER,
            }),
        });
        shared.write(
            None,
            Record::LogStart {
                format: FORMAT.to_string(),
                version: VERSION,
                flintlock: env!("CARGO_PKG_VERSION").to_string(),
                app_name: app_name.to_string(),
                app_id: app_id.to_string(),
                started_at: humantime::format_rfc3339_micros(std::time::SystemTime::now())
                    .to_string(),
                threads: id(threads),
            },
            true,
        );
        if shared.out.lock().file.is_none() {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::other("the event log's first line could not be written"),
            ));
        }
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("flintlock-event-log".to_string())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                match weak.upgrade() {
                    Some(shared) => shared.flush(),
                    None => return,
                }
            })
            .map_err(|e| Error::io("start the flushing thread of", path, e))?;
        Ok(EventLogWriter { shared })
    }
}

/// The index of the flintlock worker thread running this code, if it is one.
fn worker_index() -> Option<usize> {
    let index = rayon::current_thread_index()?;
    std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("flintlock-worker-"))
        .then_some(index)
}

impl Listener for EventLogWriter {
    fn on_event(&self, event: &Event) {
        let record = Record::of(event);
        // Flushed where a reader would want to see everything so far: at the end of each
        // job, and at the rare events outside jobs; the flushing thread does the rest.
        let flush = matches!(
            record,
            Record::JobEnded { .. }
                | Record::CheckpointSkipped { .. }
                | Record::CheckpointReleased { .. }
        );
        self.shared.write(worker_index(), record, flush);
    }
}

/// A line [`read`] left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedLine {
    /// Its line number (from 1).
    pub line: usize,
    /// Why it was left out.
    pub reason: String,
}

/// An event log as [`read`] returns it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventLog {
    /// The file it was read from.
    pub path: PathBuf,
    /// The format version of its first line.
    pub version: u32,
    /// The first line.
    pub start: Line,
    /// Every later line that was read, in file order.
    pub lines: Vec<Line>,
    /// The lines left out (damaged, cut off, of unknown events or wrong types).
    pub skipped: Vec<SkippedLine>,
    /// Set when the log was written by a newer flintlock than this one.
    pub newer_version: bool,
}

/// Reads an event log, keeping every line it can and saying which it left out: a log cut
/// off mid-write (a killed process), lines of unknown events (a newer writer), lines with
/// wrong types or numbers too large, lines that are not UTF-8 or longer than
/// [`MAX_LINE_BYTES`]. Never panics on any input.
///
/// # Errors
/// [`Error::Io`] naming the path when it cannot be read; [`Error::Parse`] when its first
/// line is not a flintlock event log's [`Record::LogStart`].
pub fn read(path: impl AsRef<Path>) -> Result<EventLog> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    read_from(BufReader::with_capacity(1 << 20, file), path)
}

/// [`read`] over any reader; `path` names the log in errors.
///
/// # Errors
/// As [`read`].
pub fn read_from(mut reader: impl BufRead, path: &Path) -> Result<EventLog> {
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    let mut start: Option<(Line, u32)> = None;
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        if !complete && buf.len() > MAX_LINE_BYTES {
            // Skip to the end of this over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut reader)
                    .take(1 << 20)
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| Error::io("read", path, e))?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            if start.is_none() {
                return Err(not_a_log(
                    path,
                    number,
                    format!("its first line is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            skipped.push(SkippedLine {
                line: number,
                reason: format!("longer than {MAX_LINE_BYTES} bytes"),
            });
            continue;
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim(),
            Err(_) if start.is_none() => {
                return Err(not_a_log(
                    path,
                    number,
                    "its first line is not UTF-8 text".to_string(),
                ))
            }
            Err(_) => {
                skipped.push(SkippedLine {
                    line: number,
                    reason: "not UTF-8".to_string(),
                });
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let parsed = parse_line(text);
        if start.is_none() {
            // The first line decides whether this is an event log at all.
            let line = parsed.map_err(|why| not_a_log(path, number, why))?;
            match &line.record {
                Record::LogStart {
                    format, version, ..
                } if format == FORMAT && *version > 0 => {
                    let version = *version;
                    start = Some((line, version));
                    continue;
                }
                Record::LogStart {
                    format, version, ..
                } => {
                    return Err(not_a_log(
                        path,
                        number,
                        if format == FORMAT {
                            format!("its first line names version {version}; versions start at 1")
                        } else {
                            format!("its first line names format {format:?}, not {FORMAT:?}")
                        },
                    ))
                }
                other => {
                    return Err(not_a_log(
                        path,
                        number,
                        format!("its first line is a {} event, not LogStart", other.name()),
                    ))
                }
            }
        }
        match parsed {
            Ok(Line {
                record: Record::LogStart { .. },
                ..
            }) => skipped.push(SkippedLine {
                line: number,
                reason: "a second LogStart line (two logs written into one file?)".to_string(),
            }),
            Ok(line) => lines.push(line),
            Err(why) => skipped.push(SkippedLine {
                line: number,
                reason: if complete {
                    why
                } else {
                    format!("the last line is cut off (the writer stopped mid-line): {why}")
                },
            }),
        }
    }
    let Some((start, version)) = start else {
        return Err(not_a_log(path, 1, "it is empty".to_string()));
    };
    Ok(EventLog {
        path: path.to_path_buf(),
        version,
        start,
        lines,
        skipped,
        newer_version: version > VERSION,
    })
}

fn not_a_log(path: &Path, line: usize, why: String) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        message: format!("not a flintlock event log: {why}"),
    }
}

/// One line: JSON first (a syntax error is told apart from an unknown event), then the
/// record.
fn parse_line(text: &str) -> std::result::Result<Line, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let event = match value.get("event") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("its \"event\" field is not a string".to_string()),
        None => return Err("no \"event\" field".to_string()),
    };
    serde_json::from_value::<Line>(value).map_err(|e| {
        let e = e.to_string();
        if e.starts_with("unknown variant") {
            format!("unknown event {event:?} (written by a newer flintlock?)")
        } else {
            format!("a {event} event with {e}")
        }
    })
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    fn busy(path: &Path) -> bool {
        let other = File::options().write(true).open(path).unwrap();
        matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    }

    #[test]
    fn a_log_whose_write_failed_stays_locked_until_its_writer_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let writer = EventLogWriter::create(&path, "app", "id", 1).unwrap();
        assert!(busy(&path));
        // A write fails (a full disk): the writer's handle is closed, the log ends there.
        {
            let shared = &writer.shared;
            let mut out = shared.out.lock();
            shared.fail(&mut out, &std::io::Error::other("disk full"));
            assert!(out.file.is_none());
        }
        assert!(busy(&path), "still locked: no other context may empty it");
        drop(writer);
        assert!(!busy(&path), "released with the writer");
    }
}
