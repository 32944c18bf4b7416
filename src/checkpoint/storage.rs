//! The storage seam: every byte of checkpoint I/O goes through [`Storage`].
//!
//! [`LocalFs`] (the default) is the real filesystem. Tests wrap it to fail the N-th operation
//! ([`FaultyStorage`]); object stores will implement the same trait later. The trait is kept
//! to the handful of operations the commit protocol needs, so a backend is easy to reason
//! about: create-exclusive, write, fsync a file, rename without replacing, fsync a folder,
//! list, read, remove, and try-lock (the app folder's owner lock, which dies with its process).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// A file being written through a [`Storage`].
pub trait StorageFile: Write + Send {
    /// Makes the written bytes durable (`fsync`). A failed sync must not be retried and
    /// trusted: the caller abandons the file.
    fn sync(&mut self) -> io::Result<()>;

    /// A hint that the bytes written so far may start going to the device now, so the final
    /// [`StorageFile::sync`] has little left to do and the device works while the writer
    /// computes (RocksDB's `bytes_per_sync`). Durability still comes only from `sync`;
    /// the default does nothing.
    fn start_writeback(&mut self) {}
}

/// A lock taken with [`Storage::try_lock`]: held until dropped (or until its process dies).
pub trait StorageLock: Send + Sync + fmt::Debug {
    /// Whether this lock is still held. A filesystem lock is held until dropped; a lease on
    /// an object store is lost when its holder stalled past its time to live and another
    /// process took it over. A writer asks before it commits, so that a holder that lost
    /// its lease never publishes into a folder someone else now owns.
    ///
    /// # Errors
    /// When the store cannot be asked.
    fn is_held(&self) -> io::Result<bool> {
        Ok(true)
    }
}

/// An object being written through [`Storage::create_object`] (a store without rename):
/// invisible until published, then visible whole.
pub trait ObjectWriter: Write + Send {
    /// Makes the object visible at its path, whole. With `if_absent` it fails with
    /// `AlreadyExists` when an object is there (a conditional PUT: the commit point of a
    /// manifest); without, the path is unique to the write attempt. A writer dropped
    /// unpublished leaves nothing (an open multipart upload is aborted).
    fn publish(self: Box<Self>, if_absent: bool) -> io::Result<()>;
}

/// Where checkpoints live. All paths are absolute paths under the checkpoint directory.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates a folder and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Creates one folder, exclusively: fails with `AlreadyExists` when it exists (its parent
    /// must exist). A write attempt owns the folder it created this way.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a new file; fails with `AlreadyExists` when it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens a file for reading.
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// The length of a file.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the folder's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a folder.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a folder and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty folder; fails when it is not empty.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock named by `path` without waiting, creating the lock file when
    /// it is missing (its folder must exist): `Ok(None)` when another holder has it. The lock
    /// must be released when the returned guard is dropped *and* when the holding process
    /// dies without dropping it, or a killed job's folder would stay locked forever. Two
    /// guards of one path never coexist, also within one process.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>>;
    /// Starts an object at `path` that one [`ObjectWriter::publish`] makes visible whole,
    /// for stores with no rename and no fsync (object stores). `None` (the default) means
    /// the store has files: writers then use a temp file, fsync and
    /// [`Storage::rename_no_replace`], the steps the crash model checks.
    fn create_object(&self, _path: &Path) -> Option<io::Result<Box<dyn ObjectWriter>>> {
        None
    }
    /// Whether [`Storage::try_lock`] on `path` excludes other holders for as long as they
    /// live (true for filesystems). An object store's locks are leases, which a stalled
    /// holder can lose while it still writes: cleanup then removes a write attempt's
    /// leftovers only once [`Storage::is_abandoned`] says so.
    fn has_locks(&self, _path: &Path) -> bool {
        true
    }
    /// On a store without locks ([`Storage::has_locks`] false): whether the write attempt in
    /// folder `dir` (one without a manifest) is abandoned, so that cleanup may remove it:
    /// nothing was written below it for the store's grace period, far longer than any lease.
    /// Never true on a filesystem, where the owner's lock tells instead.
    fn is_abandoned(&self, _dir: &Path) -> bool {
        false
    }
}

/// The local filesystem.
///
/// `rename_no_replace` is a hard link followed by removing the source: the link fails with
/// `AlreadyExists` when the target exists (plain `std::fs::rename` silently replaces it), and
/// a crash between the two steps leaves only a temp name behind, which cleanup removes.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalFs;

struct LocalFile(File);

/// An advisory lock (`flock` on Unix, `LockFileEx` on Windows) on an open lock file: the OS
/// releases it when the process dies, and two opens of one file conflict even within one
/// process.
#[derive(Debug)]
struct LocalLock(File);

impl StorageLock for LocalLock {}

impl Drop for LocalLock {
    /// Unlocks explicitly rather than only closing the file. A child process started
    /// (`fork`, as `std::process::Command` does) while the lock is held has a copy of the
    /// descriptor until its `exec` closes it, and an `flock` lock belongs to the open file
    /// that the copies share: closing ours alone would leave the folder locked by the child
    /// for that moment, and reopening it at once would fail with `Locked`. Unlocking
    /// through any copy releases it for all of them.
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Write for LocalFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl StorageFile for LocalFile {
    fn sync(&mut self) -> io::Result<()> {
        // fdatasync: the data and the metadata needed to read it back (the size); the name is
        // made durable by the folder fsync after the rename.
        self.0.sync_data()
    }

    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // one syscall, see SAFETY below
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor this struct owns; offset 0 and length
        // 0 mean "the whole file"; SYNC_FILE_RANGE_WRITE only starts writeback of dirty
        // pages and does not wait. Errors are ignored: this is a hint, `sync` is the contract.
        unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

impl Storage for LocalFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let f = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(LocalFile(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)?;
        fs::remove_file(from)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(LocalLock(file)))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The kinds of operation [`FaultyStorage`] counts and can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageOp {
    /// `create_dir_all` and `create_dir`.
    CreateDir,
    /// `create_new`.
    Create,
    /// One `write` call on a file.
    Write,
    /// `sync` of a file.
    Sync,
    /// `rename_no_replace`.
    Rename,
    /// `sync_dir`.
    SyncDir,
    /// `remove_file` / `remove_dir` / `remove_dir_all` (never failed: cleanup must be able to
    /// run).
    Remove,
    /// `open`, `len`, `list`.
    Read,
    /// `try_lock`.
    Lock,
}

/// A [`Storage`] wrapper that fails chosen operations, for tests of the failure paths.
///
/// ```
/// use flintlock::checkpoint::{FaultyStorage, LocalFs, StorageOp};
/// use std::sync::Arc;
/// // Fail the second fsync of a file, with "no space left on device".
/// let storage = FaultyStorage::new(Arc::new(LocalFs));
/// storage.fail_nth(StorageOp::Sync, 2, std::io::ErrorKind::StorageFull);
/// assert_eq!(storage.count(StorageOp::Sync), 0);
/// ```
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    counts: Mutex<std::collections::HashMap<StorageOp, usize>>,
    plan: Mutex<Option<(StorageOp, usize, io::ErrorKind)>>,
    /// Operations of any kind since the last `fail_any`/`fail_from`, and that plan.
    total: AtomicUsize,
    any_plan: Mutex<Option<AnyPlan>>,
    failed: AtomicUsize,
}

#[derive(Debug, Clone, Copy)]
struct AnyPlan {
    n: usize,
    kind: io::ErrorKind,
    /// Fail every operation from the n-th on, not only the n-th.
    persistent: bool,
}

impl FaultyStorage {
    /// Wraps `inner`; no faults until [`FaultyStorage::fail_nth`].
    pub fn new(inner: Arc<dyn Storage>) -> Arc<FaultyStorage> {
        Arc::new(FaultyStorage {
            inner,
            counts: Mutex::new(Default::default()),
            plan: Mutex::new(None),
            total: AtomicUsize::new(0),
            any_plan: Mutex::new(None),
            failed: AtomicUsize::new(0),
        })
    }

    /// Fails the `n`-th (1-based, counted from now) operation of kind `op` with `kind`, once.
    pub fn fail_nth(&self, op: StorageOp, n: usize, kind: io::ErrorKind) {
        self.counts.lock().insert(op, 0);
        *self.plan.lock() = Some((op, n, kind));
    }

    /// Fails the `n`-th (1-based, counted from now) operation of any kind with `kind`, once.
    /// Removals never fail: cleanup must be able to run.
    pub fn fail_any(&self, n: usize, kind: io::ErrorKind) {
        self.total.store(0, Ordering::SeqCst);
        *self.any_plan.lock() = Some(AnyPlan {
            n,
            kind,
            persistent: false,
        });
    }

    /// Fails every operation from the `n`-th on (a device that went away), until
    /// [`FaultyStorage::clear`].
    pub fn fail_from(&self, n: usize, kind: io::ErrorKind) {
        self.total.store(0, Ordering::SeqCst);
        *self.any_plan.lock() = Some(AnyPlan {
            n,
            kind,
            persistent: true,
        });
    }

    /// Removes the planned faults.
    pub fn clear(&self) {
        *self.plan.lock() = None;
        *self.any_plan.lock() = None;
    }

    /// Sets every operation counter back to zero.
    pub fn reset_counts(&self) {
        self.counts.lock().clear();
        self.total.store(0, Ordering::SeqCst);
    }

    /// How many operations of kind `op` ran since the last `fail_nth` of that kind (or
    /// [`FaultyStorage::reset_counts`]).
    pub fn count(&self, op: StorageOp) -> usize {
        self.counts.lock().get(&op).copied().unwrap_or(0)
    }

    /// How many faults were injected.
    pub fn faults_injected(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    fn check(&self, op: StorageOp) -> io::Result<()> {
        let total = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(plan) = *self.any_plan.lock()
            && (total == plan.n || (plan.persistent && total > plan.n))
        {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(
                plan.kind,
                format!("injected fault: operation #{total} ({op:?})"),
            ));
        }
        let n = {
            let mut counts = self.counts.lock();
            let c = counts.entry(op).or_insert(0);
            *c += 1;
            *c
        };
        let mut plan = self.plan.lock();
        if let Some((pop, pn, kind)) = *plan
            && pop == op
            && pn == n
        {
            *plan = None;
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(kind, format!("injected fault: {op:?} #{n}")));
        }
        Ok(())
    }
}

/// A file or object of a [`FaultyStorage`], whose writes count (and can fail).
struct Faulty<W> {
    inner: W,
    storage: Arc<FaultyStorage>,
}

impl<W: Write> Write for Faulty<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.storage.check(StorageOp::Write)?;
        self.inner.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.storage.check(StorageOp::Write)?;
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl StorageFile for Faulty<Box<dyn StorageFile>> {
    fn sync(&mut self) -> io::Result<()> {
        self.storage.check(StorageOp::Sync)?;
        self.inner.sync()
    }

    fn start_writeback(&mut self) {
        self.inner.start_writeback();
    }
}

/// The storage handed to the checkpointer: `Arc<FaultyStorage>` implements [`Storage`] so
/// that files it creates can count their own writes.
impl Storage for Arc<FaultyStorage> {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check(StorageOp::CreateDir)?;
        self.inner.create_dir_all(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.check(StorageOp::CreateDir)?;
        self.inner.create_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.check(StorageOp::Create)?;
        let inner = self.inner.create_new(path)?;
        Ok(Box::new(Faulty {
            inner,
            storage: self.clone(),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        self.check(StorageOp::Read)?;
        self.inner.open(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        self.check(StorageOp::Read)?;
        self.inner.len(path)
    }
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(StorageOp::Rename)?;
        self.inner.rename_no_replace(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check(StorageOp::SyncDir)?;
        self.inner.sync_dir(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        self.check(StorageOp::Read)?;
        self.inner.list(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.check(StorageOp::Lock)?;
        self.inner.try_lock(path)
    }
    fn create_object(&self, path: &Path) -> Option<io::Result<Box<dyn ObjectWriter>>> {
        let inner = self.inner.create_object(path)?;
        Some(self.check(StorageOp::Create).and_then(|()| {
            Ok(Box::new(Faulty {
                inner: inner?,
                storage: self.clone(),
            }) as Box<dyn ObjectWriter>)
        }))
    }
    fn has_locks(&self, path: &Path) -> bool {
        self.inner.has_locks(path)
    }
    fn is_abandoned(&self, dir: &Path) -> bool {
        self.inner.is_abandoned(dir)
    }
}

impl ObjectWriter for Faulty<Box<dyn ObjectWriter>> {
    fn publish(self: Box<Self>, if_absent: bool) -> io::Result<()> {
        // Publishing is the object store's sync and rename in one.
        self.storage.check(StorageOp::Sync)?;
        self.inner.publish(if_absent)
    }
}

/// The default storage: `s3://bucket/...` paths go to an
/// `S3Storage` of that bucket (configured from the `AWS_*`
/// environment, opened on first use; feature `s3`), every other path to [`LocalFs`]. So
/// `checkpoint_dir("s3://bucket/prefix")` and `open_checkpoint("s3://...")` work with a
/// default context, beside local folders.
#[derive(Debug)]
pub struct DefaultStorage {
    local: Arc<dyn Storage>,
    #[cfg(feature = "s3")]
    buckets: Mutex<std::collections::HashMap<String, Arc<super::S3Storage>>>,
}

impl Default for DefaultStorage {
    fn default() -> Self {
        DefaultStorage {
            local: Arc::new(LocalFs),
            #[cfg(feature = "s3")]
            buckets: Mutex::default(),
        }
    }
}

impl DefaultStorage {
    fn route(&self, path: &Path) -> io::Result<Arc<dyn Storage>> {
        #[cfg(feature = "s3")]
        if let Some(bucket) = super::object::bucket_of(path) {
            let mut buckets = self.buckets.lock();
            if let Some(s) = buckets.get(&bucket) {
                return Ok(s.clone());
            }
            let s = super::S3Storage::open(&bucket, &super::S3Options::from_env())
                .map(Arc::new)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            buckets.insert(bucket, s.clone());
            return Ok(s);
        }
        if path.to_string_lossy().starts_with("s3://") {
            if cfg!(feature = "s3") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: names no bucket (s3://bucket/prefix)", path.display()),
                ));
            }
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{}: this build of flintlock has no object-store support (feature `s3`)",
                    path.display()
                ),
            ));
        }
        Ok(self.local.clone())
    }
}

impl Storage for DefaultStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.create_dir_all(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.create_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.route(path)?.create_new(path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        self.route(path)?.open(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        self.route(path)?.len(path)
    }
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.route(from)?.rename_no_replace(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.sync_dir(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        self.route(path)?.list(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.route(path)?.remove_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        self.route(path)?.try_lock(path)
    }
    fn create_object(&self, path: &Path) -> Option<io::Result<Box<dyn ObjectWriter>>> {
        match self.route(path) {
            Ok(s) => s.create_object(path),
            Err(e) => Some(Err(e)),
        }
    }
    fn has_locks(&self, path: &Path) -> bool {
        self.route(path).is_ok_and(|s| s.has_locks(path))
    }
    fn is_abandoned(&self, dir: &Path) -> bool {
        self.route(dir).is_ok_and(|s| s.is_abandoned(dir))
    }
}

/// The folders [`create_parents`] made, to be removed again when the output they were made
/// for fails.
#[derive(Debug, Default)]
pub(crate) struct CreatedParents(Vec<PathBuf>);

impl CreatedParents {
    /// Removes the folders made, deepest first, each only if it is empty.
    pub(crate) fn remove(&self, storage: &dyn Storage) {
        for dir in &self.0 {
            if storage.remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// Checks that `output` names a new entry (not `.`, `..` or a root) and creates its missing
/// parent folders, remembering which it made.
pub(crate) fn create_parents(
    storage: &dyn Storage,
    op: &str,
    output: &Path,
) -> crate::Result<CreatedParents> {
    let named = output.file_name().is_some()
        && !matches!(
            output.components().next_back(),
            Some(std::path::Component::CurDir | std::path::Component::ParentDir)
        );
    let parent = output.parent().filter(|_| named).ok_or_else(|| {
        crate::Error::InvalidArgument(format!(
            "{op}: {} does not name a new folder (it ends in `.`, `..` or is a root)",
            output.display()
        ))
    })?;
    let mut missing = Vec::new();
    let mut at = Some(parent);
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
        if storage.list(dir).is_ok() || storage.len(dir).is_ok() {
            break;
        }
        missing.push(dir.to_path_buf());
        at = dir.parent();
    }
    storage
        .create_dir_all(parent)
        .map_err(|e| crate::Error::io("create folder", parent, e))?;
    Ok(CreatedParents(missing))
}
