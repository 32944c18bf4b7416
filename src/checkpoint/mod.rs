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
pub mod format;
mod layout;
mod live;
mod local;
mod reliable;
mod series;
mod storage;
mod strict;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashSet;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use format::{
    Compression, ManifestBody, PartFile, PartHeader, PartInfo, SeriesEntry, FORMAT_VERSION,
    MANIFEST,
};
pub use series::{Checkpointer, SeriesCheckpoint};
pub use storage::{FaultyStorage, LocalFs, Storage, StorageFile, StorageLock, StorageOp};

pub(crate) use reliable::open_checkpoint;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::rdd::node::{CallSite, Node, PartitionIter, RddBase, RddNode};
use crate::scheduler::TaskContext;
use crate::storage::StorageLevel;
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

/// Encodes and decodes records of `T` (postcard), captured where `T: Serialize +
/// DeserializeOwned` is known, i.e. in `checkpoint()` and `open_checkpoint()`.
pub(crate) trait Codec<T>: Send + Sync {
    /// Appends `x`'s postcard encoding to `out`; refuses what would not read back as the
    /// same value (see `strict`). The error says why.
    fn encode(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String>;
    fn decode_frame(&self, bytes: &[u8], records: u32) -> std::result::Result<Vec<T>, String>;
    /// Decodes each record of a frame from exactly its own bytes (`ends[i]` is where record
    /// `i` ends), as the writer's check that everything it commits reads back. Returns the
    /// index of the first record that does not, and why.
    fn verify_frame(&self, bytes: &[u8], ends: &[u32]) -> std::result::Result<(), (usize, String)>;
    fn type_name(&self) -> &'static str;
    /// The element type's structural layout, when it can be traced.
    fn layout(&self) -> Option<layout::Layout>;
}

/// What to do about a type postcard cannot read back, for error messages.
const SERDE_ADVICE: &str = "postcard is not self-describing: serde attributes that need \
    field names or type tags (untagged, internally or adjacently tagged enums, flatten) and \
    deserialize_any types such as serde_json::Value do not read back; give the element type \
    a plain serde form";

pub(crate) struct SerdeCodec<T>(PhantomData<fn() -> T>);

impl<T> SerdeCodec<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(SerdeCodec(PhantomData))
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Codec<T> for SerdeCodec<T> {
    fn encode(&self, x: &T, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        strict::encode(x, AppendTo(out))
    }

    fn decode_frame(&self, bytes: &[u8], records: u32) -> std::result::Result<Vec<T>, String> {
        let mut out = Vec::with_capacity((records as usize).min(bytes.len()));
        let mut rest = bytes;
        for i in 0..records {
            let (x, r) = postcard::take_from_bytes::<T>(rest).map_err(|e| {
                format!(
                    "record {i} of the frame does not decode as `{}`: {e} (damaged, or \
                         holding values this type's Deserialize rejects)",
                    std::any::type_name::<T>()
                )
            })?;
            out.push(x);
            rest = r;
        }
        if !rest.is_empty() {
            return Err(format!(
                "{} bytes left after the frame's {records} records",
                rest.len()
            ));
        }
        Ok(out)
    }

    fn verify_frame(&self, bytes: &[u8], ends: &[u32]) -> std::result::Result<(), (usize, String)> {
        let mut start = 0usize;
        for (i, &end) in ends.iter().enumerate() {
            let end = end as usize;
            let own = &bytes[start..end];
            match postcard::take_from_bytes::<T>(own) {
                Ok((_, [])) => {}
                Ok((_, rest)) => {
                    return Err((
                        i,
                        format!(
                            "it was written as {} bytes but reads back from {} of them \
                             ({SERDE_ADVICE})",
                            own.len(),
                            own.len() - rest.len()
                        ),
                    ))
                }
                Err(e) => {
                    return Err((i, format!("its {} bytes do not read back: {e}", own.len())))
                }
            }
            start = end;
        }
        if start != bytes.len() {
            return Err((
                ends.len(),
                format!("{} bytes follow the frame's records", bytes.len() - start),
            ));
        }
        Ok(())
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn layout(&self) -> Option<layout::Layout> {
        layout::Layout::of::<T>()
    }
}

/// A postcard output that appends to a borrowed `Vec`: about 3x faster per record than
/// `postcard::to_extend`, which moves the buffer in and out of a serializer for every call
/// (measured: 10 ns against 34 ns per `u64`).
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
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
    write: Option<Arc<reliable::WriteSession<T>>>,
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
        source: PartitionIter<T>,
    ) -> PartitionIter<T> {
        if !tc.checkpoints().owns(node.id) {
            return source;
        }
        let session = self.inner.lock().write.clone();
        match session {
            Some(session) => reliable::tee(session, split, tc, source),
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
                if self.ctx.inner.checkpoint_dir.read().is_none() {
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
                    return Err(Error::CheckpointState {
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
    /// Marked → InProgress, if this job can own the write. Errors are I/O errors creating
    /// the checkpoint folder.
    fn claim(&self) -> Result<bool>;
    /// The partitions the job's stages did not write (reliable) or cache (local): the
    /// scheduler computes them in a `CheckpointCompletion` stage before [`Self::commit`].
    fn missing_partitions(&self) -> Result<Vec<usize>>;
    /// Commits the claimed checkpoint (every partition written or cached), moves to
    /// Checkpointed and swaps the lineage for the checkpoint RDD.
    fn commit(&self) -> Result<()>;
    /// Removes the attempt's files and returns to Marked (no-op once committed).
    fn abort(&self);
    /// True for a marked RDD.
    fn is_marked(&self) -> bool;
}

impl<T: Data> CheckpointOps for RddNode<T> {
    fn is_marked(&self) -> bool {
        self.checkpoint.state() == CheckpointState::Marked
    }

    fn claim(&self) -> Result<bool> {
        let event = {
            let mut c = self.checkpoint.inner.lock();
            if c.state != CheckpointState::Marked {
                return Ok(false);
            }
            match c.mode.clone() {
                Some(Mode::Reliable(codec, tag)) => {
                    let app = self
                        .ctx
                        .inner
                        .checkpoint_dir
                        .read()
                        .clone()
                        .ok_or(Error::NoCheckpointDir)?;
                    let session = reliable::WriteSession::begin(self, app, codec, tag)?;
                    c.write = Some(session);
                }
                Some(Mode::Local) => {}
                None => return Ok(false),
            }
            self.transition(&mut c, CheckpointState::InProgress)
        };
        self.ctx.inner.emit(event);
        Ok(true)
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

    fn commit(&self) -> Result<()> {
        let ctx = &self.ctx;
        let (mode, session, site) = {
            let c = self.checkpoint.inner.lock();
            (c.mode.clone(), c.write.clone(), c.marked_at)
        };
        let site = site.unwrap_or(self.call_site);
        let mut retain = None;
        let (checkpoint_rdd, path) = match (mode, session) {
            (Some(Mode::Reliable(codec, tag)), Some(s)) => {
                let manifest = s.commit()?;
                let path = s.dir().to_path_buf();
                retain = tag.map(|t| (t, s.app().clone()));
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
                    return Err(Error::CheckpointState {
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
        self.swap_lineage(checkpoint_rdd);
        ctx.inner.emit(event);
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
/// `checkpoint_all_marked_ancestors`) and claims them for this job, parents first.
pub(crate) fn claim_for_job(ctx: &Context, root: &Arc<dyn Node>) -> Result<Arc<JobCheckpoints>> {
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
    let mut job = JobCheckpoints::default();
    for node in marked {
        match node.checkpoint_ops().claim() {
            Ok(true) => {
                job.ids.insert(node.id());
                job.nodes.push(node);
            }
            Ok(false) => {}
            Err(e) => {
                job.abort(ctx);
                return Err(e);
            }
        }
    }
    Ok(Arc::new(job))
}

/// The lock file of an app folder.
pub(crate) const LOCK_FILE: &str = ".lock";

/// The file that says "this is a flintlock app folder". Cleanup only ever touches folders
/// that have it: a folder of another tool that happens to hold a `.lock` file, `*.tmp`
/// files or `rdd-*` folders is never cleaned. (App folders of flintlock 0.1 lack it and are
/// left alone too.)
const APP_MARKER: &str = ".flintlock-app";

/// The lock a *visitor* of an app folder holds: anyone who takes an app's [`LOCK_FILE`]
/// without owning the app (start-up cleanup of other apps, `flintlock gc` and `list`) holds
/// this lock first and releases it last. So an owner that finds `.lock` busy can tell a live
/// owner (the visit lock is free) from a visitor at work (it is not), and waits for the
/// visitor instead of reporting [`Error::Locked`].
pub(crate) const VISIT_LOCK: &str = ".visit.lock";

/// What a visitor found in an app folder.
pub(crate) enum Visit<R> {
    /// No live owner: the visit ran with both locks held and returned this.
    Unowned(R),
    /// A live process owns the app.
    Owned,
    /// Another visitor is at work (only when not waiting for it).
    Busy,
}

/// Visits app folder `dir` as a non-owner: takes its visit lock (waiting for another
/// visitor when `wait`), then its owner lock, and runs `f` only when both are free.
pub(crate) fn visit<R>(
    storage: &dyn Storage,
    dir: &Path,
    wait: bool,
    f: impl FnOnce() -> R,
) -> Result<Visit<R>> {
    let visit_path = dir.join(VISIT_LOCK);
    let mut backoff = Backoff::new();
    let _visit = loop {
        match take_lock(storage, &visit_path)? {
            Some(held) => break held,
            None if wait => backoff.sleep(),
            None => return Ok(Visit::Busy),
        }
    };
    // Dropped at the end of the arm: the owner lock goes before the visit lock.
    Ok(match take_lock(storage, &dir.join(LOCK_FILE))? {
        Some(_owner) => Visit::Unowned(f()),
        None => Visit::Owned,
    })
}

fn take_lock(storage: &dyn Storage, path: &Path) -> Result<Option<Box<dyn StorageLock>>> {
    storage
        .try_lock(path)
        .map_err(|e| Error::io("lock", path, e))
}

/// Sleeps 1, 2, 4 … up to 50 ms between polls of a lock.
struct Backoff(std::time::Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(std::time::Duration::from_millis(1))
    }
    fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Start-up cleanup: in every flintlock app folder under `root` (one with the app marker and
/// a lock file) that no live process owns, removes temp files and `rdd-*` folders without a
/// committed manifest — the leftovers of interrupted writes. Folders of live apps, and apps
/// another visitor is cleaning, are not touched; committed checkpoints are never removed.
/// `own`, the caller's app folder, is skipped. Best effort: errors are ignored, the next
/// start tries again.
fn startup_cleanup(storage: &dyn Storage, root: &Path, own: &Path) {
    let Ok(apps) = storage.list(root) else {
        return;
    };
    for app in apps {
        let dir = root.join(&app);
        if dir == own || !is_app_folder(storage, &dir) {
            continue; // ours (`AppDir::open` cleans it) or not a flintlock app folder
        }
        // An owner lock held elsewhere (a live process, or another context of this one: the
        // locks conflict per open) means hands off.
        let _ = visit(storage, &dir, false, || clean_app_folder(storage, &dir));
    }
}

/// Removes a committed checkpoint folder so that no moment of the removal looks committed:
/// the manifest goes first, made durable, then the parts and the folder. A crash in between
/// leaves a folder without a manifest, which start-up cleanup removes; never a manifest
/// whose parts are half gone. Best effort: when the manifest cannot be removed, nothing is.
pub(crate) fn remove_checkpoint(storage: &dyn Storage, dir: &Path) {
    match storage.remove_file(&dir.join(MANIFEST)) {
        Ok(()) => {
            let _ = storage.sync_dir(dir);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return, // whole rather than half
    }
    let _ = storage.remove_dir_all(dir);
}

/// Whether `dir` is a flintlock app folder: it has the app marker and a lock file.
pub(crate) fn is_app_folder(storage: &dyn Storage, dir: &Path) -> bool {
    storage.list(dir).is_ok_and(|names| {
        names.iter().any(|n| n == APP_MARKER) && names.iter().any(|n| n == LOCK_FILE)
    })
}

/// Removes temp files and unmanifested `rdd-*` folders from one app folder.
pub(crate) fn clean_app_folder(storage: &dyn Storage, dir: &Path) {
    let Ok(entries) = storage.list(dir) else {
        return;
    };
    for name in entries {
        let path = dir.join(&name);
        if name.starts_with("rdd-") {
            let committed = storage
                .list(&path)
                .map(|files| files.iter().any(|f| f == MANIFEST))
                .unwrap_or(true);
            if !committed {
                let _ = storage.remove_dir_all(&path);
            } else if let Ok(files) = storage.list(&path) {
                for f in files.iter().filter(|f| f.ends_with(".tmp")) {
                    let _ = storage.remove_file(&path.join(f));
                }
            }
        } else if name.ends_with(".tmp") {
            let _ = storage.remove_file(&path);
        }
    }
}

/// The absolute form of a checkpoint directory (symbolic links resolved when it exists), so
/// that two spellings of one folder compare equal.
pub(crate) fn resolve_root(root: &Path) -> Result<PathBuf> {
    let abs = if root.is_absolute() {
        root.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("resolve", root, e))?
            .join(root)
    };
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

/// A context's checkpoint folder `<root>/<app-id>/`, locked for this process.
///
/// Checkpoints committed in it hold an `Arc` of it, so the folder stays locked for as long
/// as an RDD reads one of them, even after the context moved to another directory.
pub(crate) struct AppDir {
    root: PathBuf,
    dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) fsync: bool,
    pub(crate) compression: Compression,
    /// Decode every frame again before committing its part.
    pub(crate) verify: bool,
    /// The largest frame payload the writer produces.
    pub(crate) frame_limit: u32,
    _lock: Box<dyn StorageLock>,
    remove_if_empty: AtomicBool,
}

impl AppDir {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open(
        root: &Path,
        app_id: &str,
        storage: Arc<dyn Storage>,
        fsync: bool,
        compression: Compression,
        verify: bool,
        frame_limit: u32,
    ) -> Result<AppDir> {
        let root = resolve_root(root)?;
        let dir = root.join(app_id);
        let was_app_folder = is_app_folder(storage.as_ref(), &dir);
        // Only a folder flintlock makes (or finds empty) becomes an app folder that cleanup
        // may work in; a folder with other contents is used, never cleaned.
        let fresh = storage.list(&dir).map_or(true, |names| names.is_empty());
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create folder", &dir, e))?;
        let lock = Self::lock(storage.as_ref(), &dir)?;
        // Holding our own lock, clean what dead owners left: in our own folder (a stable app
        // id whose previous process died mid-write) and in every app folder whose lock is
        // free. (A second `try_lock` of our own lock file would fail, so ours is explicit.)
        // A folder that was not a flintlock app folder before is never cleaned.
        if was_app_folder {
            clean_app_folder(storage.as_ref(), &dir);
        } else if fresh {
            match storage.create_new(&dir.join(APP_MARKER)) {
                Ok(mut f) => {
                    let _ = f.write_all(b"flintlock app folder: checkpoints of one app id\n");
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create", dir.join(APP_MARKER), e)),
            }
        }
        startup_cleanup(storage.as_ref(), &root, &dir);
        Ok(AppDir {
            root,
            dir,
            storage,
            fsync,
            compression,
            verify,
            frame_limit,
            _lock: lock,
            remove_if_empty: AtomicBool::new(false),
        })
    }

    /// Takes the app folder's owner lock, so that a second process (or context) pointed at
    /// the same app folder fails fast with [`Error::Locked`] instead of clobbering its files.
    ///
    /// A busy lock may be a visitor's (another process's start-up cleanup or `flintlock gc`
    /// holds a free app's lock while it removes leftovers, which can take long): then the
    /// visit lock is busy too, and this waits for the visitor. Holding the visit lock, a busy
    /// owner lock is a live owner.
    fn lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn StorageLock>> {
        let path = dir.join(LOCK_FILE);
        let mut backoff = Backoff::new();
        loop {
            if let Some(held) = take_lock(storage, &path)? {
                return Ok(held);
            }
            if let Some(_visit) = take_lock(storage, &dir.join(VISIT_LOCK))? {
                // No visitor holds the owner lock, and none can take it now.
                return take_lock(storage, &path)?.ok_or(Error::Locked { path });
            }
            backoff.sleep();
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of one write attempt: `rdd-<id>-<write id, 16 hex digits>`. RDD ids
    /// restart at 0 in every run, so the write id keeps a rerun with the same app id from
    /// meeting the folders of earlier runs.
    pub(crate) fn rdd_dir(&self, rdd_id: usize, write_id: u64) -> PathBuf {
        self.dir.join(format!("rdd-{rdd_id}-{write_id:016x}"))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the app folder when the last reference goes, if nothing but its lock file is
    /// left in it (a context with a generated app id dropped with `clean_checkpoints(true)`;
    /// such a folder is never used by another context).
    pub(crate) fn remove_if_empty_on_drop(&self) {
        self.remove_if_empty.store(true, Ordering::Release);
    }
}

impl Drop for AppDir {
    fn drop(&mut self) {
        if !self.remove_if_empty.load(Ordering::Acquire) {
            return;
        }
        let only_lock = self.storage.list(&self.dir).is_ok_and(|names| {
            names
                .iter()
                .all(|n| n == LOCK_FILE || n == APP_MARKER || n == VISIT_LOCK)
        });
        if only_lock {
            let _ = self.storage.remove_file(&self.dir.join(APP_MARKER));
            let _ = self.storage.remove_file(&self.dir.join(VISIT_LOCK));
            let _ = self.storage.remove_file(&self.dir.join(LOCK_FILE));
            let _ = self.storage.remove_dir(&self.dir);
        }
    }
}
