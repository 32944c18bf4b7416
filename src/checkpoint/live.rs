//! Which committed checkpoint folders live RDDs of this process read, and the removals
//! waiting for them.
//!
//! A checkpoint folder is the only copy of its data once the lineage is gone, so nothing may
//! delete it while an RDD reads it. Every RDD that reads a checkpoint (the swapped-in
//! `ReliableCheckpointRdd` of a checkpointed RDD, and every copy opened with
//! `Context::open_checkpoint`, in any context of the process) holds a [`Reader`] of its
//! folder. `clean_checkpoints(true)` asks for the folder to go with its writer's last reader
//! ([`Reader::delete_when_unread`]); the folder is then removed when the last reader of
//! *any* kind is dropped, never before.
//!
//! Removals run on one background thread of the process (as Spark's context cleaner does):
//! a crash-safe removal makes the manifest's removal durable before the parts go, an fsync
//! that takes milliseconds, and the thread that dropped the last reader (often in the middle
//! of a job) should not wait for it. A folder being removed stays in the registry until it
//! is gone: a reader registering meanwhile waits, then finds it gone, exactly as if the
//! removal had been done on the spot. An app folder waits for the removals below it before
//! it lets go of its lock ([`wait_for_removals`]), so no removal of this process runs in a
//! folder another owner has taken.
//!
//! The registry is process-wide: two contexts of one process may read the same folder. It
//! knows nothing of other processes; `clean_checkpoints` documents that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::Storage;

struct Entry {
    readers: usize,
    /// Set when the folder's writer asked for it to be removed once nothing reads it.
    delete_with: Option<Arc<dyn Storage>>,
    /// When it was handed to the remover (in the order removals start): no reader may
    /// register until it is gone.
    removing: Option<u64>,
}

struct Registry {
    live: Mutex<Live>,
    /// Signalled whenever a removal is done.
    removed: Condvar,
}

#[derive(Default)]
struct Live {
    folders: HashMap<PathBuf, Entry>,
    /// The number the next removal to start gets.
    next_removal: u64,
}

fn registry() -> &'static Registry {
    static LIVE: OnceLock<Registry> = OnceLock::new();
    LIVE.get_or_init(|| Registry {
        live: Mutex::new(Live::default()),
        removed: Condvar::new(),
    })
}

/// One name per folder, however it was spelled (relative, through a symbolic link).
pub(crate) fn key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Whether `a` and `b` name the same folder, however each is spelled.
pub(crate) fn same_folder(a: &Path, b: &Path) -> bool {
    a == b || key(a) == key(b)
}

/// A folder to remove, its storage, and the tracing dispatcher of the thread that let it go
/// (a subscriber set with `tracing::subscriber::with_default` sees the removal's events).
type Removal = (PathBuf, Arc<dyn Storage>, tracing::Dispatch);

/// The remover thread's queue, started with the first removal; `None` when the thread could
/// not be started (removals are then done by the thread that asks for them).
fn remover() -> Option<&'static Sender<Removal>> {
    static QUEUE: OnceLock<Option<Sender<Removal>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Removal>();
            let started = std::thread::Builder::new()
                .name("flintlock-remover".into())
                .spawn(move || {
                    for removal in rx {
                        run_removal_caught(removal);
                    }
                });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "no remover thread: checkpoints are removed by the thread that releases them");
                    None
                }
            }
        })
        .as_ref()
}

/// Marks the registered folder `key` as being removed (the caller holds the registry lock
/// and has checked that nothing reads it) and hands it to the remover thread.
fn start_removal(live: &mut MutexGuard<'_, Live>, key: PathBuf, storage: Arc<dyn Storage>) {
    let number = live.next_removal;
    live.next_removal += 1;
    let entry = live.folders.entry(key.clone()).or_insert(Entry {
        readers: 0,
        delete_with: None,
        removing: None,
    });
    entry.removing = Some(number);
    entry.delete_with = None;
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let removal = (key, storage, dispatch);
    let unsent = match remover() {
        Some(queue) => queue.send(removal).err().map(|e| e.0),
        None => Some(removal),
    };
    if let Some(removal) = unsent {
        // Removed here, after the registry lock is let go: a reader registering meanwhile
        // waits for it, as it would for the remover thread.
        MutexGuard::unlocked(live, || run_removal_caught(removal));
    }
}

/// [`run_removal`], with a panic in it (a storage's, a tracing subscriber's, in the removal
/// or in dropping the storage) ending that removal alone: the remover thread serves the
/// whole process, and a releasing thread must not unwind from a drop.
fn run_removal_caught(removal: Removal) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || run_removal(removal)));
}

/// Removes the folder (the manifest first, made durable, then the rest: see
/// [`super::remove_checkpoint`]), then ends its registration and wakes the readers and
/// [`wait_for_removals`] waiting for it, also when something in the removal panics (a
/// [`Storage`], a tracing subscriber): nothing waits for a removal that has ended.
fn run_removal((key, storage, dispatch): Removal) {
    struct Ended(PathBuf);
    impl Drop for Ended {
        fn drop(&mut self) {
            let reg = registry();
            let mut live = reg.live.lock();
            if live
                .folders
                .get(&self.0)
                .is_some_and(|e| e.removing.is_some())
            {
                live.folders.remove(&self.0);
            }
            reg.removed.notify_all();
        }
    }
    // Declared first, dropped last: after the storage, whose drop may panic too.
    let ended = Ended(key);
    tracing::dispatcher::with_default(&dispatch, || {
        super::remove_checkpoint(storage.as_ref(), &ended.0)
    });
    drop(storage);
}

/// Blocks until every removal this process had started below `dir` (every one, with
/// `None`) when it was called is done. Removals started later are not waited for, so a
/// steady stream of them cannot keep it waiting.
pub(crate) fn wait_for_removals(dir: Option<&Path>) {
    let below = dir.map(key);
    let reg = registry();
    let mut live = reg.live.lock();
    let started_before = live.next_removal;
    while live.folders.iter().any(|(k, e)| {
        e.removing.is_some_and(|n| n < started_before)
            && below.as_ref().is_none_or(|d| k.starts_with(d))
    }) {
        reg.removed.wait(&mut live);
    }
}

/// A live reader of one checkpoint folder; the registration ends when it is dropped.
pub(crate) struct Reader {
    key: PathBuf,
}

impl Reader {
    /// Registers a reader of `dir`. Register before checking that the folder is there: a
    /// removal then either happened already (the check fails), is under way (this waits for
    /// it to end, then the check fails) or waits for this reader.
    pub(crate) fn register(dir: &Path) -> Reader {
        let key = key(dir);
        let reg = registry();
        let mut live = reg.live.lock();
        while live.folders.get(&key).is_some_and(|e| e.removing.is_some()) {
            reg.removed.wait(&mut live);
        }
        live.folders
            .entry(key.clone())
            .or_insert(Entry {
                readers: 0,
                delete_with: None,
                removing: None,
            })
            .readers += 1;
        Reader { key }
    }

    /// Removes the folder (through `storage`) when its last reader is gone.
    pub(crate) fn delete_when_unread(&self, storage: Arc<dyn Storage>) {
        if let Some(e) = registry().live.lock().folders.get_mut(&self.key) {
            e.delete_with = Some(storage);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut live = registry().live.lock();
        let Some(e) = live.folders.get_mut(&self.key) else {
            return;
        };
        e.readers -= 1;
        if e.readers > 0 {
            return;
        }
        match e.delete_with.take() {
            Some(storage) => start_removal(&mut live, self.key.clone(), storage),
            None => {
                live.folders.remove(&self.key);
            }
        }
    }
}

/// What [`delete_when_unread`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// Nothing read the folder: its removal started (it completes in the background;
    /// [`wait_for_removals`] waits for it).
    Started,
    /// RDDs read it: it is removed when the last of them is dropped.
    WhenUnread,
    /// Its removal had started already (an earlier release): nothing more to do.
    AlreadyRemoving,
}

/// Starts removing `dir` now if no RDD of this process reads it, or else when its last
/// reader is dropped.
pub(crate) fn delete_when_unread(dir: &Path, storage: Arc<dyn Storage>) -> Release {
    let key = key(dir);
    let mut live = registry().live.lock();
    match live.folders.get_mut(&key) {
        Some(e) if e.removing.is_some() => Release::AlreadyRemoving,
        Some(e) if e.readers > 0 => {
            e.delete_with = Some(storage);
            Release::WhenUnread
        }
        _ => {
            start_removal(&mut live, key, storage);
            Release::Started
        }
    }
}

/// How many live readers `dir` has (for tests and `gc`-style tools).
#[cfg(test)]
pub(crate) fn readers(dir: &Path) -> usize {
    registry()
        .live
        .lock()
        .folders
        .get(&key(dir))
        .map_or(0, |e| e.readers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::LocalFs;

    #[test]
    fn a_folder_goes_with_its_last_reader_not_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("rdd-0-00");
        std::fs::create_dir(&ckpt).unwrap();
        let writer = Reader::register(&ckpt);
        let reopened = Reader::register(&ckpt);
        writer.delete_when_unread(Arc::new(LocalFs));
        drop(writer);
        assert!(ckpt.exists(), "a reopened copy still reads it");
        assert_eq!(readers(&ckpt), 1);
        drop(reopened);
        wait_for_removals(Some(dir.path()));
        assert!(!ckpt.exists());
        assert_eq!(readers(&ckpt), 0);
    }

    /// [`LocalFs`], with a `sync_dir` that waits until the test lets it go (a removal stays
    /// under way for as long as the test needs), and a `remove_file` that panics if asked.
    #[derive(Debug, Default)]
    struct HeldSync(
        Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
        std::sync::atomic::AtomicBool,
    );

    impl HeldSync {
        fn release(&self) {
            *self.0 .0.lock().unwrap() = true;
            self.0 .1.notify_all();
        }
    }

    impl Storage for HeldSync {
        fn create_dir_all(&self, p: &Path) -> std::io::Result<()> {
            LocalFs.create_dir_all(p)
        }
        fn create_dir(&self, p: &Path) -> std::io::Result<()> {
            LocalFs.create_dir(p)
        }
        fn create_new(&self, p: &Path) -> std::io::Result<Box<dyn super::super::StorageFile>> {
            LocalFs.create_new(p)
        }
        fn open(&self, p: &Path) -> std::io::Result<Box<dyn std::io::Read + Send>> {
            LocalFs.open(p)
        }
        fn len(&self, p: &Path) -> std::io::Result<u64> {
            LocalFs.len(p)
        }
        fn rename_no_replace(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            LocalFs.rename_no_replace(from, to)
        }
        fn sync_dir(&self, p: &Path) -> std::io::Result<()> {
            let (released, cv) = &*self.0;
            let mut r = released.lock().unwrap();
            while !*r {
                r = cv.wait(r).unwrap();
            }
            LocalFs.sync_dir(p)
        }
        fn list(&self, p: &Path) -> std::io::Result<Vec<String>> {
            LocalFs.list(p)
        }
        fn remove_file(&self, p: &Path) -> std::io::Result<()> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                panic!("a storage's own bug");
            }
            LocalFs.remove_file(p)
        }
        fn remove_dir_all(&self, p: &Path) -> std::io::Result<()> {
            LocalFs.remove_dir_all(p)
        }
        fn remove_dir(&self, p: &Path) -> std::io::Result<()> {
            LocalFs.remove_dir(p)
        }
        fn try_lock(
            &self,
            p: &Path,
        ) -> std::io::Result<Option<Box<dyn super::super::StorageLock>>> {
            LocalFs.try_lock(p)
        }
    }

    /// Runs `f` on a thread and fails the test if it takes more than ten seconds (a
    /// regression here blocks rather than fails).
    fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} blocked"))
    }

    #[test]
    fn a_removal_runs_in_the_background_and_a_reader_arriving_meanwhile_finds_it_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("rdd-2-00");
        std::fs::create_dir(&ckpt).unwrap();
        std::fs::write(ckpt.join(super::super::MANIFEST), b"m").unwrap();
        std::fs::write(ckpt.join("part-00000"), b"p").unwrap();
        let storage = Arc::new(HeldSync::default());
        // Released however the test ends: the remover thread serves the whole process.
        struct Unhold(Arc<HeldSync>);
        impl Drop for Unhold {
            fn drop(&mut self) {
                self.0.release();
            }
        }
        let _release = Unhold(storage.clone());
        let writer = Reader::register(&ckpt);
        writer.delete_when_unread(storage.clone());
        // The removal is under way (the manifest is gone, its fsync is held), and the drop
        // did not wait for it.
        within("dropping the last reader", move || drop(writer));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ckpt.join(super::super::MANIFEST).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the removal never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            ckpt.join("part-00000").exists(),
            "the parts wait for the fsync"
        );
        assert_eq!(
            delete_when_unread(&ckpt, storage.clone()),
            Release::AlreadyRemoving,
            "released again while its removal runs: nothing more to do"
        );
        // A reader registering now waits for the removal, then finds the folder gone.
        let (found_tx, found_rx) = std::sync::mpsc::channel();
        let late = std::thread::spawn({
            let ckpt = ckpt.clone();
            move || {
                let r = Reader::register(&ckpt);
                found_tx.send(ckpt.exists()).unwrap();
                drop(r);
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(found_rx.try_recv().is_err(), "the late reader waits");
        storage.release();
        assert!(
            !found_rx.recv().unwrap(),
            "the late reader finds the folder gone"
        );
        late.join().unwrap();
        wait_for_removals(Some(dir.path()));
        assert!(!ckpt.exists());
        assert_eq!(readers(&ckpt), 0);
    }

    #[test]
    fn a_panicking_storage_ends_its_removal_and_the_next_ones_still_run() {
        let dir = tempfile::tempdir().unwrap();
        let (bad, good) = (dir.path().join("rdd-3-00"), dir.path().join("rdd-4-00"));
        for d in [&bad, &good] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join(super::super::MANIFEST), b"m").unwrap();
        }
        let panicking = Arc::new(HeldSync::default());
        panicking.release();
        panicking
            .1
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(delete_when_unread(&bad, panicking), Release::Started);
        let root = dir.path().to_path_buf();
        // Returns: the removal has ended.
        within("waiting", move || wait_for_removals(Some(&root)));
        assert!(bad.join(super::super::MANIFEST).exists(), "left as it was");
        assert_eq!(readers(&bad), 0);
        let again = bad.clone();
        within("registering", move || drop(Reader::register(&again)));
        assert_eq!(
            delete_when_unread(&good, Arc::new(LocalFs)),
            Release::Started
        );
        let root = dir.path().to_path_buf();
        within("waiting", move || wait_for_removals(Some(&root)));
        assert!(!good.exists(), "the remover still serves");
    }

    #[test]
    fn readers_without_a_delete_request_never_delete() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("rdd-1-00");
        std::fs::create_dir(&ckpt).unwrap();
        drop(Reader::register(&ckpt));
        assert!(ckpt.exists());
    }
}
