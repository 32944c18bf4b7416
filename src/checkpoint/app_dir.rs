//! App folders: the owner lock (with the visit lock that start-up cleanup and `flintlock
//! gc` take), the marker that makes a folder eligible for cleanup, the cleanup of what dead
//! owners left, and manifest-first removal of a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::format::{Compression, MANIFEST};
use super::storage::{Storage, StorageLock};

use crate::context::Config;
use crate::error::{Error, Result};

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

/// What names a takeover marker of a lease on an object store: `<lock>.takeover-<lock
/// instance>.<taker>`, beside the lock.
pub(crate) const TAKEOVER: &str = ".takeover-";

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
        Err(e) => {
            // Whole rather than half.
            tracing::warn!(path = %dir.display(), error = %e, "checkpoint not removed: its manifest could not be");
            return;
        }
    }
    match storage.remove_dir_all(dir) {
        Ok(()) => tracing::debug!(path = %dir.display(), "checkpoint removed"),
        Err(e) => tracing::debug!(
            path = %dir.display(),
            error = %e,
            "checkpoint folder left behind without its manifest (start-up cleanup removes it)"
        ),
    }
}

/// Whether `name` is a checkpoint write attempt's folder name: `rdd-<id>-<write id, 16 hex
/// digits>`, or flintlock 0.1's `rdd-<id>`. Nothing else below an app folder is ever taken
/// for an attempt (an app folder named `rdd-team` nested in another is not one).
pub(crate) fn is_attempt_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("rdd-") else {
        return false;
    };
    let (id, write_id) = match rest.split_once('-') {
        Some((id, w)) => (id, Some(w)),
        None => (rest, None),
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && write_id.is_none_or(|w| w.len() == 16 && w.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `dir` is a flintlock app folder: it has the app marker and a lock file (on an
/// object store, whose lock object exists only while held, the marker alone).
pub(crate) fn is_app_folder(storage: &dyn Storage, dir: &Path) -> bool {
    storage.list(dir).is_ok_and(|names| {
        names.iter().any(|n| n == APP_MARKER)
            && (names.iter().any(|n| n == LOCK_FILE) || !storage.has_locks(dir))
    })
}

/// Removes temp files and unmanifested `rdd-*` folders from one app folder. On a store
/// whose locks are leases (an object store), an unmanifested folder goes only once the
/// store calls it abandoned (nothing written below it for a grace period): a holder that
/// stalled past its lease may still be filling it. Leftovers are harmless meanwhile (no
/// manifest names them).
pub(crate) fn clean_app_folder(storage: &dyn Storage, dir: &Path) {
    let leases = !storage.has_locks(dir);
    let Ok(entries) = storage.list(dir) else {
        return;
    };
    for name in entries {
        let path = dir.join(&name);
        if is_attempt_name(&name) {
            let Ok(files) = storage.list(&path) else {
                continue;
            };
            if files.iter().any(|f| f == APP_MARKER) {
                continue; // an app folder nested here (another app's checkpoint_dir)
            }
            if files.iter().any(|f| f == MANIFEST) {
                for f in files.iter().filter(|f| f.ends_with(".tmp")) {
                    let _ = storage.remove_file(&path.join(f));
                }
            } else if !leases || storage.is_abandoned(&path) {
                let _ = storage.remove_dir_all(&path);
            }
        } else if name.ends_with(".tmp") {
            let _ = storage.remove_file(&path);
        }
    }
}

/// The absolute form of a checkpoint directory (symbolic links resolved when it exists), so
/// that two spellings of one folder compare equal.
pub(crate) fn resolve_root(root: &Path) -> Result<PathBuf> {
    let text = root.to_string_lossy();
    if let Some(rest) = text.strip_prefix("s3://") {
        // An object-store location is absolute already; empty segments fold away (as in
        // the store's keys), so two spellings of one prefix are one root.
        let folded: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        return Ok(PathBuf::from(format!("s3://{}", folded.join("/"))));
    }
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
    lock: Box<dyn StorageLock>,
    remove_if_empty: AtomicBool,
    /// This process owns the folder: it holds the lock, cleans up and removes checkpoints.
    /// False for the processes of a cluster other than process 0 (see
    /// [`AppDir::open_shared`]), which only write parts into attempt folders process 0
    /// created and read checkpoints.
    owner: bool,
}

impl std::fmt::Debug for AppDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl AppDir {
    pub(crate) fn open(root: &Path, app_id: &str, config: &Config) -> Result<AppDir> {
        if is_attempt_name(app_id) {
            return Err(Error::InvalidArgument(format!(
                "app id {app_id:?} has the shape of a checkpoint folder's name (rdd-<id>...); \
                 choose another"
            )));
        }
        let storage = config.storage.clone();
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
        Ok(AppDir::new(root, dir, config, lock, true))
    }

    fn new(
        root: PathBuf,
        dir: PathBuf,
        config: &Config,
        lock: Box<dyn StorageLock>,
        owner: bool,
    ) -> AppDir {
        AppDir {
            root,
            dir,
            storage: config.storage.clone(),
            fsync: config.fsync,
            compression: config.compression,
            verify: config.verify,
            frame_limit: config.frame_limit,
            lock,
            remove_if_empty: AtomicBool::new(false),
            owner,
        }
    }

    /// The app folder as a process of a cluster other than process 0 uses it: process 0
    /// owns it (lock, start-up cleanup, commits, removals); this process writes the parts
    /// of its partitions into the attempt folders process 0 creates and reads checkpoints.
    /// Nothing is locked, cleaned or removed from here. The folder is created when missing,
    /// as process 0 creates it too (a shared filesystem or object store).
    pub(crate) fn open_shared(root: &Path, app_id: &str, config: &Config) -> Result<AppDir> {
        let storage = config.storage.clone();
        let root = resolve_root(root)?;
        let dir = root.join(app_id);
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create folder", &dir, e))?;
        Ok(AppDir::new(root, dir, config, Box::new(NoLock), false))
    }

    /// Whether this process owns the folder (see [`AppDir::open_shared`]): only the owner
    /// removes checkpoints from it.
    pub(crate) fn is_owner(&self) -> bool {
        self.owner
    }

    /// The parent folder of an output written in the checkpoint format
    /// ([`Rdd::save_as_object_file`](crate::Rdd::save_as_object_file)): the writer creates
    /// its own folder in it exclusively, so no lock and no app marker are needed, and no
    /// cleanup ever runs in it. The folder must exist (`storage::create_parents`).
    pub(crate) fn output_parent(parent: &Path, config: &Config) -> AppDir {
        let dir = parent.to_path_buf();
        AppDir::new(dir.clone(), dir, config, Box::new(NoLock), true)
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

    /// Fails with [`Error::Locked`] when this process no longer holds the folder's lock (a
    /// lease on an object store, lost by a stall past its time to live): checked before a
    /// commit, so that a writer that lost the folder publishes nothing into it.
    pub(crate) fn check_still_owned(&self) -> Result<()> {
        let path = self.dir.join(LOCK_FILE);
        match self.lock.is_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Locked { path }),
            Err(e) => Err(Error::io("check the lock", &path, e)),
        }
    }

    /// Removes the app folder when the last reference goes, if nothing but its lock file is
    /// left in it (a context with a generated app id dropped with `clean_checkpoints(true)`;
    /// such a folder is never used by another context).
    pub(crate) fn remove_if_empty_on_drop(&self) {
        self.remove_if_empty.store(true, Ordering::Release);
    }
}

/// The lock of an output folder's parent: nothing to hold (see [`AppDir::output_parent`]).
#[derive(Debug)]
struct NoLock;

impl crate::checkpoint::StorageLock for NoLock {}

impl Drop for AppDir {
    fn drop(&mut self) {
        // The removals this process started below the folder finish while its lock is held:
        // none runs in a folder another owner has taken, and an emptied folder is seen empty.
        super::live::wait_for_removals(Some(&self.dir));
        if !self.owner || !self.remove_if_empty.load(Ordering::Acquire) {
            return;
        }
        // A folder whose lease was lost (an object store's, by a stall) may be another
        // owner's now, or this context's again under a new lock: not ours to empty.
        if !matches!(self.lock.is_held(), Ok(true)) {
            return;
        }
        // Visitors (other processes' start-up cleanup, `flintlock gc` and `list`) take the
        // visit lock of every app folder, find the owner lock busy and leave at once: wait
        // for one a little, and leave the folder to a visitor that stays (removing its lock
        // file would let a second visitor in, and on an object store end its lease).
        let visit_path = self.dir.join(VISIT_LOCK);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut backoff = Backoff::new();
        let _visit = loop {
            match self.storage.try_lock(&visit_path) {
                Ok(Some(held)) => break held,
                Ok(None) if std::time::Instant::now() < deadline => backoff.sleep(),
                _ => return,
            }
        };
        let Ok(names) = self.storage.list(&self.dir) else {
            return;
        };
        if !names.iter().all(|n| is_lock_leftover(n)) {
            return;
        }
        // The app marker first (the folder is no app folder any more), the locks last. An
        // object store's lock objects are leases: their guards delete them (`_visit` at
        // the end of this function, the owner lock right after), so that no refresher
        // finds its lease gone while held. Takeover markers stay: one may be a live
        // taker's (of a lease that looked over), whose marker keeps a second taker out; a
        // dead taker's is a few bytes left behind.
        let _ = self.storage.remove_file(&self.dir.join(APP_MARKER));
        if self.storage.has_locks(&self.dir) {
            let _ = self.storage.remove_file(&visit_path);
            let _ = self.storage.remove_file(&self.dir.join(LOCK_FILE));
        }
        let _ = self.storage.remove_dir(&self.dir);
    }
}

/// Whether `name` in an app folder is one of the files that hold no data: the app marker,
/// the lock files, and the takeover markers an object store's lease leaves beside a lock
/// (`.lock.takeover-...`; a killed taker's stays).
fn is_lock_leftover(name: &str) -> bool {
    name == APP_MARKER
        || name == LOCK_FILE
        || name == VISIT_LOCK
        || [LOCK_FILE, VISIT_LOCK].iter().any(|lock| {
            name.strip_prefix(lock)
                .is_some_and(|rest| rest.starts_with(TAKEOVER))
        })
}
