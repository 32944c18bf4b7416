//! Checkpointing: the state machine (Spark's `RDDCheckpointData`), reliable checkpoints to
//! files and local checkpoints onto cached blocks.
//!
//! ```text
//! Initialized --checkpoint()--> Marked --action starts--> InProgress --committed--> Checkpointed
//!                                  ^                          |
//!                                  +------ write failed ------+  (files removed, lineage intact)
//! ```
//! - `checkpoint()` / `local_checkpoint()` only mark. Marking twice, marking after
//!   Checkpointed and marking a checkpoint RDD are no-ops; marking after an action already ran
//!   still takes effect at the next action (unlike Spark, SPARK-3625).
//! - When a job starts, the scheduler walks from the job's RDD to the nearest marked RDDs
//!   (or all of them with `checkpoint_all_marked_ancestors`) and moves each from Marked to
//!   InProgress under its lock: exactly one job owns a given write, even with concurrent jobs.
//! - **One computation**: while the job computes a claimed RDD's partition, each record is
//!   also encoded into that partition's file (a tee behind the iterator). Partitions the job
//!   did not compute to the end (`take`, `first`) are computed afterwards, and only those.
//! - Then the manifest is committed, the node's lineage is swapped for a
//!   `ReliableCheckpointRdd` (or `LocalCheckpointRdd`) and the parents are released.
//! - Any failure removes the attempt's files and puts the state back to Marked; the next
//!   action retries.

pub mod admin;
mod app_dir;
pub(crate) mod codec;
pub(crate) mod crc;
mod fingerprint;
mod fixed;
pub mod format;
mod layout;
mod live;
mod local;
#[cfg(feature = "s3")]
mod object;
mod reliable;
mod series;
mod storage;
mod strict;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashSet;

pub use format::{
    Compression, ManifestBody, PartFile, PartHeader, PartInfo, SeriesEntry, FORMAT_VERSION,
    MANIFEST,
};
#[cfg(feature = "s3")]
pub use object::{S3Options, S3Storage, S3Store, S3_CLEANUP_GRACE, S3_LOCK_TTL, S3_RETRY_TIMEOUT};
/// The `object_store` crate flintlock's S3 storage is built on, for
/// [`S3Options::layer`] (this is the version it was built with).
#[cfg(feature = "s3")]
pub use object_store;
pub(crate) use series::{mark_into, read_manifest, scan};
pub use series::{Checkpointer, SeriesCheckpoint};
pub use storage::{
    DefaultStorage, FaultyStorage, LocalFs, ObjectWriter, Storage, StorageFile, StorageLock,
    StorageOp,
};

pub(crate) use app_dir::{
    clean_app_folder, is_app_folder, is_attempt_name, remove_checkpoint, resolve_root, visit,
    AppDir, Visit,
};
pub(crate) use codec::{codec_for, Codec};
pub(crate) use live::delete_when_unread;

/// Blocks until every checkpoint removal this process has started is done.
///
/// Checkpoints let go by [`crate::ContextBuilder::clean_checkpoints`], by a series'
/// [`Checkpointer::keep`] or by a streaming context's retention are removed on a background
/// thread (the manifest first, made durable, then the parts), so the thread that lets one go
/// does not wait for the fsyncs. A context waits for the removals in its app folder when it
/// is dropped; call this to see the space freed while it lives, or before the process
/// exits without dropping its contexts (removals still queued then never run). Removals
/// started after the call are not waited for. One thread removes for the whole process,
/// one folder at a time.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let ctx = flintlock::Context::builder()
///     .checkpoint_dir(dir.path())
///     .clean_checkpoints(true)
///     .build()?;
/// let rdd = ctx.range(0..100, 2).map(|x| x * 2);
/// rdd.checkpoint()?;
/// rdd.count()?;
/// let folder = rdd.checkpoint_path().expect("checkpointed");
/// drop(rdd); // its last reader: the folder's removal starts
/// flintlock::checkpoint::wait_for_removals();
/// assert!(!folder.exists());
/// # Ok(())
/// # }
/// ```
pub fn wait_for_removals() {
    live::wait_for_removals(None)
}

/// [`wait_for_removals`] for the removals below `dir` alone.
pub(crate) fn wait_for_removals_below(dir: &std::path::Path) {
    live::wait_for_removals(Some(dir))
}
pub(crate) use reliable::open_checkpoint;
pub(crate) use storage::create_parents;
pub(crate) use writer::{tee as tee_part, WriteSession};

use crate::block_store::StorageLevel;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::rdd::node::{BoxedPartitionIter, CallSite, Node, RddBase, RddNode};
use crate::scheduler::TaskContext;
use crate::Data;

/// Where an RDD is in the checkpoint state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckpointState {
    /// Not marked.
    Initialized,
    /// Marked by `checkpoint()` or `local_checkpoint()`; written at the next action.
    Marked,
    /// A job is writing it.
    InProgress,
    /// Committed: its lineage is a checkpoint RDD.
    Checkpointed,
}

impl fmt::Display for CheckpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

pub(crate) enum Mode<T> {
    /// A reliable checkpoint, of a named series when marked by a `Checkpointer`.
    Reliable(Arc<dyn Codec<T>>, Option<Arc<series::SeriesTag>>),
    Local,
}

impl<T> Clone for Mode<T> {
    fn clone(&self) -> Self {
        match self {
            Mode::Reliable(c, tag) => Mode::Reliable(c.clone(), tag.clone()),
            Mode::Local => Mode::Local,
        }
    }
}

/// A node's checkpoint data.
pub(crate) struct CheckpointCell<T> {
    inner: Mutex<CellInner<T>>,
}

struct CellInner<T> {
    state: CheckpointState,
    mode: Option<Mode<T>>,
    /// `local_checkpoint()` persisted the RDD (it was not): undone by `cancel_checkpoint()`.
    persisted_by_mark: bool,
    marked_at: Option<CallSite>,
    write: Option<Arc<writer::WriteSession<T>>>,
    path: Option<PathBuf>,
    /// A checkpoint RDD itself: never marked.
    is_checkpoint_node: bool,
}

impl<T: Data> CheckpointCell<T> {
    pub(crate) fn new() -> Self {
        CheckpointCell {
            inner: Mutex::new(CellInner {
                state: CheckpointState::Initialized,
                mode: None,
                persisted_by_mark: false,
                marked_at: None,
                write: None,
                path: None,
                is_checkpoint_node: false,
            }),
        }
    }

    /// The cell of a checkpoint RDD (opened or swapped in): Checkpointed, never re-marked.
    pub(crate) fn for_checkpoint_node(path: Option<PathBuf>) -> Self {
        let cell = Self::new();
        {
            let mut c = cell.inner.lock();
            c.is_checkpoint_node = true;
            c.state = CheckpointState::Checkpointed;
            c.path = path;
        }
        cell
    }

    pub(crate) fn state(&self) -> CheckpointState {
        self.inner.lock().state
    }

    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.inner.lock().path.clone()
    }

    /// The user chose a storage level: `cancel_checkpoint()` must not undo it.
    pub(crate) fn user_persisted(&self) {
        self.inner.lock().persisted_by_mark = false;
    }

    pub(crate) fn is_local(&self) -> bool {
        matches!(self.inner.lock().mode, Some(Mode::Local))
    }

    /// Wraps `source` so that its records are also written to the checkpoint, when the job
    /// running `tc` owns this node's write.
    pub(crate) fn tee(
        &self,
        node: &RddNode<T>,
        split: usize,
        tc: &TaskContext,
        source: BoxedPartitionIter<T>,
    ) -> BoxedPartitionIter<T> {
        if !tc.checkpoints().owns(node.id) {
            return source;
        }
        let session = self.inner.lock().write.clone();
        match session {
            Some(session) => writer::tee(session, split, tc, source),
            None => source,
        }
    }
}

impl<T: Data> RddNode<T> {
    fn transition(&self, cell: &mut CellInner<T>, to: CheckpointState) -> Event {
        let from = cell.state;
        cell.state = to;
        Event::CheckpointStateChanged {
            rdd_id: self.id,
            from,
            to,
        }
    }

    /// `checkpoint()` (and a series' `update`, with its tag): marks for a reliable
    /// checkpoint.
    pub(crate) fn mark_reliable(
        &self,
        codec: Arc<dyn Codec<T>>,
        tag: Option<Arc<series::SeriesTag>>,
        site: CallSite,
    ) -> Result<()> {
        let event = {
            let mut c = self.checkpoint.inner.lock();
            if matches!(c.mode, Some(Mode::Local)) && !c.is_checkpoint_node {
                Event::CheckpointRequestIgnored {
                    rdd_id: self.id,
                    reason: format!(
                        "checkpoint() after local_checkpoint(): the RDD keeps its local \
                         checkpoint ({}); call cancel_checkpoint() first to checkpoint it reliably",
                        c.state
                    ),
                }
            } else if c.is_checkpoint_node || c.state != CheckpointState::Initialized {
                return Ok(());
            } else {
                let has_dest = tag.as_ref().is_some_and(|t| t.dest.is_some());
                if !has_dest && self.ctx.inner.checkpoint_dir.read().is_none() {
                    return Err(Error::NoCheckpointDir);
                }
                c.mode = Some(Mode::Reliable(codec, tag));
                c.marked_at = Some(site);
                self.transition(&mut c, CheckpointState::Marked)
            }
        };
        self.ctx.inner.emit(event);
        Ok(())
    }

    /// `cancel_checkpoint()`: Marked back to Initialized (undoing the persist a local mark
    /// made). A no-op when not marked.
    pub(crate) fn cancel_mark(&self) -> Result<()> {
        let (event, unpersist) = {
            let mut c = self.checkpoint.inner.lock();
            match c.state {
                CheckpointState::Initialized => return Ok(()),
                CheckpointState::Marked => {}
                state => {
                    return Err(Error::InvalidCheckpointState {
                        rdd_id: self.id,
                        state,
                        message: match state {
                            CheckpointState::InProgress => {
                                "a running job is writing its checkpoint; cancel after the job"
                                    .to_string()
                            }
                            _ => "its lineage was replaced by the checkpoint, which cannot be \
                                  undone"
                                .to_string(),
                        },
                    })
                }
            }
            c.mode = None;
            c.marked_at = None;
            let unpersist = std::mem::take(&mut c.persisted_by_mark);
            (
                self.transition(&mut c, CheckpointState::Initialized),
                unpersist,
            )
        };
        if unpersist {
            self.set_storage_level(StorageLevel::None);
        }
        self.ctx.inner.emit(event);
        Ok(())
    }

    /// `local_checkpoint()`: marks for a local checkpoint, overriding a reliable mark that was
    /// not yet materialised, and persists the RDD so its blocks are kept.
    pub(crate) fn mark_local(&self, site: CallSite) {
        let event = {
            let mut c = self.checkpoint.inner.lock();
            if c.is_checkpoint_node
                || !matches!(
                    c.state,
                    CheckpointState::Initialized | CheckpointState::Marked
                )
            {
                return;
            }
            c.mode = Some(Mode::Local);
            c.marked_at = Some(site);
            if self.storage_level() == StorageLevel::None {
                self.set_storage_level(StorageLevel::MemoryOnly);
                c.persisted_by_mark = true;
            }
            if c.state == CheckpointState::Initialized {
                Some(self.transition(&mut c, CheckpointState::Marked))
            } else {
                None
            }
        };
        if let Some(e) = event {
            self.ctx.inner.emit(e);
        }
    }
}

/// What the scheduler asks of a node's checkpoint, untyped. The scheduler runs the stages;
/// the checkpoint says what is missing and how to commit.
pub(crate) trait CheckpointOps {
    /// Marked → InProgress, if this job can own the write. With `adopt`, the write goes
    /// into the attempt folder of that write id, which process 0 of a cluster created;
    /// otherwise into a new one. Errors are I/O errors creating the checkpoint folder (or,
    /// adopting, not seeing it).
    fn claim(&self, adopt: Option<u64>) -> Result<Claimed>;
    /// The partitions the job's stages did not write (reliable) or cache (local): the
    /// scheduler computes them in a `CheckpointCompletion` stage before [`Self::commit`].
    fn missing_partitions(&self) -> Result<Vec<usize>>;
    /// Commits the claimed checkpoint of job `job_id` (every partition written or cached),
    /// moves to Checkpointed and swaps the lineage for the checkpoint RDD. In a cluster,
    /// every process's parts are committed in one manifest by process 0.
    fn commit(&self, job_id: usize) -> Result<()>;
    /// Removes the attempt's files and returns to Marked (no-op once committed).
    fn abort(&self);
    /// True for a marked RDD.
    fn is_marked(&self) -> bool;
    /// True for an RDD marked by `local_checkpoint()`.
    fn is_local_mark(&self) -> bool;
}

/// What [`CheckpointOps::claim`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// Not claimed: the RDD is not Marked (any more).
    No,
    /// A reliable checkpoint, written as this write id.
    Reliable(u64),
    /// A local checkpoint.
    Local,
}

impl<T: Data> CheckpointOps for RddNode<T> {
    fn is_marked(&self) -> bool {
        self.checkpoint.state() == CheckpointState::Marked
    }

    fn is_local_mark(&self) -> bool {
        self.checkpoint.state() == CheckpointState::Marked && self.checkpoint.is_local()
    }

    fn claim(&self, adopt: Option<u64>) -> Result<Claimed> {
        let (event, claimed) = {
            let mut c = self.checkpoint.inner.lock();
            if c.state != CheckpointState::Marked {
                return Ok(Claimed::No);
            }
            let claimed = match c.mode.clone() {
                Some(Mode::Reliable(codec, tag)) => {
                    let dest = tag.as_ref().and_then(|t| t.dest.clone());
                    let app = match dest {
                        Some(app) => app,
                        None => self
                            .ctx
                            .inner
                            .checkpoint_dir
                            .read()
                            .clone()
                            .ok_or(Error::NoCheckpointDir)?,
                    };
                    let session = match adopt {
                        None => writer::WriteSession::begin(self, app, codec, tag)?,
                        Some(write_id) => {
                            writer::WriteSession::adopt(self, app, codec, tag, write_id)?
                        }
                    };
                    let claimed = Claimed::Reliable(session.write_id());
                    c.write = Some(session);
                    claimed
                }
                Some(Mode::Local) => Claimed::Local,
                None => return Ok(Claimed::No),
            };
            (
                self.transition(&mut c, CheckpointState::InProgress),
                claimed,
            )
        };
        self.ctx.inner.emit(event);
        Ok(claimed)
    }

    fn missing_partitions(&self) -> Result<Vec<usize>> {
        let c = self.checkpoint.inner.lock();
        match (&c.mode, &c.write) {
            (Some(Mode::Reliable(..)), Some(s)) => Ok(s.missing_partitions()),
            (Some(Mode::Local), _) => Ok((0..self.num_partitions)
                .filter(|&p| !self.ctx.inner.blocks.contains(self.id, p))
                .collect()),
            _ => Err(Error::Internal(format!(
                "rdd {} claimed without a mode",
                self.id
            ))),
        }
    }

    fn commit(&self, job_id: usize) -> Result<()> {
        let ctx = &self.ctx;
        let (mode, session, site) = {
            let c = self.checkpoint.inner.lock();
            (c.mode.clone(), c.write.clone(), c.marked_at)
        };
        let site = site.unwrap_or(self.call_site);
        let mut retain = None;
        let (checkpoint_rdd, path) = match (mode, session) {
            (Some(Mode::Reliable(codec, tag)), Some(s)) => {
                let manifest = if ctx.inner.executor.processes() > 1 {
                    s.commit_in_cluster(job_id)?
                } else {
                    s.commit()?
                };
                let path = s.dir().to_path_buf();
                // A series with its own folder (streaming state) is retained by its owner;
                // in a cluster, by process 0 (the app folder's owner) only.
                retain = tag
                    .filter(|t| t.dest.is_none() && s.app().is_owner())
                    .map(|t| (t, s.app().clone()));
                (
                    reliable::checkpoint_rdd(self, &s, manifest, codec, site),
                    Some(path),
                )
            }
            _ => {
                if let Some(p) =
                    (0..self.num_partitions).find(|&p| !ctx.inner.blocks.contains(self.id, p))
                {
                    // The lineage is intact (the job aborts this checkpoint: Marked again),
                    // so this is not a lost block of a truncated RDD.
                    let why = if self.storage_level() == StorageLevel::None {
                        "it was unpersisted after local_checkpoint(), so its partitions are \
                         not kept; persist it again, or call cancel_checkpoint()"
                    } else {
                        "its blocks were evicted while the job ran; the next action retries"
                    };
                    return Err(Error::InvalidCheckpointState {
                        rdd_id: self.id,
                        state: CheckpointState::Marked,
                        message: format!(
                            "the local checkpoint could not be taken: partition {p} is not \
                             cached ({why}); the lineage is intact"
                        ),
                    });
                }
                (local::checkpoint_rdd(self, site), None)
            }
        };
        // Checkpointed before the lineage is swapped: from here on nothing may abort (and so
        // delete) the committed files, whatever panics later.
        let event = {
            let mut c = self.checkpoint.inner.lock();
            c.write = None;
            c.path = path.clone();
            self.transition(&mut c, CheckpointState::Checkpointed)
        };
        let checkpoint_rdd_id = checkpoint_rdd.id();
        let checkpoint_kind = checkpoint_rdd.node.kind();
        let released_parents = self.swap_lineage(checkpoint_rdd);
        ctx.inner.emit(event);
        ctx.inner.emit(Event::LineageTruncated {
            rdd_id: self.id,
            checkpoint_rdd_id,
            checkpoint_kind,
            released_parents,
        });
        if let Some((tag, app)) = retain {
            // After the commit: the series' checkpoints beyond `keep` go, each when no RDD
            // reads it any more (never while one does).
            series::retain(ctx, &app, &tag, path.as_deref());
        }
        Ok(())
    }

    fn abort(&self) {
        let (session, event) = {
            let mut c = self.checkpoint.inner.lock();
            if c.state != CheckpointState::InProgress {
                return;
            }
            let session = c.write.take();
            (session, self.transition(&mut c, CheckpointState::Marked))
        };
        if let Some(s) = session {
            s.abort();
        }
        self.ctx.inner.emit(event);
    }
}

/// The checkpoint writes one job owns, parents first.
#[derive(Default)]
pub(crate) struct JobCheckpoints {
    nodes: Vec<Arc<dyn Node>>,
    ids: FxHashSet<usize>,
    committed: Mutex<FxHashSet<usize>>,
}

impl JobCheckpoints {
    /// Claims `node` for this job (see [`CheckpointOps::claim`]).
    fn claim(&mut self, node: Arc<dyn Node>, adopt: Option<u64>) -> Result<Claimed> {
        let claimed = node.checkpoint_ops().claim(adopt)?;
        if claimed != Claimed::No {
            self.ids.insert(node.id());
            self.nodes.push(node);
        }
        Ok(claimed)
    }

    pub(crate) fn owns(&self, rdd_id: usize) -> bool {
        !self.ids.is_empty() && self.ids.contains(&rdd_id)
    }

    /// The owned nodes, parents first.
    pub(crate) fn nodes(&self) -> &[Arc<dyn Node>] {
        &self.nodes
    }

    /// Records that `rdd_id`'s checkpoint committed (an abort leaves it alone).
    pub(crate) fn mark_committed(&self, rdd_id: usize) {
        self.committed.lock().insert(rdd_id);
    }

    /// Aborts every owned checkpoint that was not committed.
    pub(crate) fn abort(&self, _ctx: &Context) {
        let committed = self.committed.lock().clone();
        for node in &self.nodes {
            if !committed.contains(&node.id()) {
                node.checkpoint_ops().abort();
            }
        }
    }
}

/// Finds the marked RDDs reachable from `root` (the nearest ones, or all with
/// `checkpoint_all_marked_ancestors`) and claims them for job `job_id`, parents first. In a
/// cluster, every process claims the same RDDs for one write each (see
/// [`claim_in_cluster`]).
pub(crate) fn claim_for_job(
    ctx: &Context,
    root: &Arc<dyn Node>,
    job_id: usize,
) -> Result<Arc<JobCheckpoints>> {
    let all = ctx.inner.config.checkpoint_all_marked_ancestors;
    let mut marked: Vec<Arc<dyn Node>> = Vec::new(); // post-order: parents first
    let mut seen: FxHashSet<usize> = FxHashSet::default();
    let mut stack: Vec<(Arc<dyn Node>, bool)> = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            if node.checkpoint_ops().is_marked() {
                marked.push(node);
            }
            continue;
        }
        if !seen.insert(node.id()) {
            continue;
        }
        let is_marked = node.checkpoint_ops().is_marked();
        stack.push((node.clone(), true));
        if is_marked && !all {
            continue;
        }
        for dep in node.dependencies() {
            let parent = dep.parent_node();
            if !seen.contains(&parent.id()) {
                stack.push((parent, false));
            }
        }
    }
    if ctx.inner.executor.processes() > 1 && !marked.is_empty() {
        return claim_in_cluster(ctx, root.id(), marked, job_id);
    }
    let mut job = JobCheckpoints::default();
    for node in marked {
        if let Err(e) = job.claim(node, None) {
            job.abort(ctx);
            return Err(e);
        }
    }
    Ok(Arc::new(job))
}

/// Claims `marked` (parents first) for job `job_id` on every process of a cluster, as one
/// write each: process 0 claims first, creating the attempt folders and drawing the write
/// ids, and sends them; every other process then claims the same RDDs into those folders
/// (so each writes the parts of its own partitions there), and all agree that it worked.
/// On any failure every process aborts its claims: nothing is written.
fn claim_in_cluster(
    ctx: &Context,
    root_id: usize,
    marked: Vec<Arc<dyn Node>>,
    job_id: usize,
) -> Result<Arc<JobCheckpoints>> {
    use crate::scheduler::{all_gather, StageKey};
    let exec = ctx.inner.executor.clone();
    let refused = |message: String| Error::Cluster {
        process: None,
        message,
    };
    if let Some(node) = marked.iter().find(|n| n.checkpoint_ops().is_local_mark()) {
        return Err(refused(format!(
            "rdd {} is marked by local_checkpoint(), which is not supported in cluster mode \
             (its blocks would stay on the processes that computed them): use checkpoint(), \
             written to the shared checkpoint directory",
            node.id()
        )));
    }
    let ids: Vec<u64> = marked.iter().map(|n| n.id() as u64).collect();
    let mut job = JobCheckpoints::default();
    let key =
        |step: &str| StageKey::agreement(job_id, ctx.inner.new_stage_id(), root_id, step, &ids);
    // Process 0's write ids, one per marked RDD (`None`: not claimed there).
    let drawn = if exec.process() == 0 {
        let mut write_ids: Vec<Option<u64>> = Vec::with_capacity(marked.len());
        let claimed = marked.iter().try_for_each(|node| {
            write_ids.push(match job.claim(node.clone(), None)? {
                Claimed::Reliable(w) => Some(w),
                _ => None,
            });
            Ok(())
        });
        claimed.and_then(|()| {
            postcard::to_allocvec(&write_ids)
                .map_err(|e| Error::Internal(format!("encoding write ids: {e}")))
        })
    } else {
        Ok(Vec::new())
    };
    let from_zero = match all_gather(exec.as_ref(), key("checkpoint claim"), drawn) {
        Ok(mut bodies) => std::mem::take(&mut bodies[0]),
        Err(e) => {
            job.abort(ctx);
            return Err(e);
        }
    };
    let adopted = if exec.process() == 0 {
        Ok(())
    } else {
        postcard::from_bytes::<Vec<Option<u64>>>(&from_zero)
            .ok()
            .filter(|w| w.len() == marked.len())
            .ok_or_else(|| refused("process 0's checkpoint write ids do not read back here".into()))
            .and_then(|write_ids| {
                marked
                    .iter()
                    .zip(write_ids)
                    .try_for_each(|(node, w)| match w {
                        None => Ok(()),
                        Some(w) => match job.claim(node.clone(), Some(w))? {
                            Claimed::Reliable(_) => Ok(()),
                            _ => Err(refused(format!(
                                "rdd {} is not marked for checkpointing here, but process 0 \
                             writes its checkpoint: the processes' programs took different \
                             paths",
                                node.id()
                            ))),
                        },
                    })
            })
    };
    let adopted = adopted.map(|()| Vec::new());
    if let Err(e) = all_gather(exec.as_ref(), key("checkpoint adopt"), adopted) {
        job.abort(ctx);
        return Err(e);
    }
    Ok(Arc::new(job))
}
