//! Crash at every operation of the commit protocol, in a simulated filesystem, and prove
//! that a checkpoint never lies: after any crash, opening it gives the complete, correct data
//! or "not committed"; and once an action has reported the checkpoint written, it survives a
//! crash. A journaling filesystem can hide a missing folder fsync from real-disk crash tests;
//! this model does not.
//!
//! The model (`SimFs`, behind the public `Storage` seam):
//! - a file's bytes are durable up to its last `sync`; after a crash each later (unsynced)
//!   write is kept or lost at random, and the last kept one may be torn;
//! - a folder's entries are durable as of its last `sync_dir`; the creations, renames and
//!   removals after it survive as a random subset, in order (nothing orders them);
//! - folders made with `create_dir_all` (the checkpoint directory and the app folder) are
//!   durable at once; a folder made with `create_dir` (each write attempt's `rdd-*` folder)
//!   is an entry of its parent like a file: durable once the parent is synced, else kept or
//!   lost at random, with everything in it;
//! - locks are held in memory and die with the process (a recovered filesystem has none).
//!
//! Mutation check: the same sweep with any one sync of the protocol removed (`SimFs` ignores
//! it) must fail at least once — every fsync and folder fsync is needed.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flintlock::checkpoint::{Storage, StorageFile, StorageLock};
use flintlock::{Context, Error};
use parking_lot::Mutex;

/// Which sync the simulated filesystem ignores (a protocol with that sync removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Nothing,
    PartSync,
    ManifestSync,
    FolderSync(usize),
}

#[derive(Clone, Debug)]
enum DirOp {
    Put(String, usize),
    Rename(String, String),
    Remove(String),
}

#[derive(Clone, Default, Debug)]
struct Dir {
    /// Whether the folder itself is durable in its parent.
    in_parent: bool,
    current: BTreeMap<String, usize>,
    durable: BTreeMap<String, usize>,
    /// Entry operations since the last `sync_dir`.
    pending: Vec<DirOp>,
}

#[derive(Clone, Default, Debug)]
struct Inode {
    data: Vec<u8>,
    synced: usize,
    /// `(start, len)` of each write since the last sync.
    unsynced: Vec<(usize, usize)>,
}

#[derive(Debug)]
struct State {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: Vec<Inode>,
    ops: usize,
    crash_after: usize,
    skip: Skip,
    folder_syncs: usize,
    /// Locks held (by paths).
    locks: std::collections::BTreeSet<PathBuf>,
}

#[derive(Debug, Clone)]
struct SimFs(Arc<Mutex<State>>);

impl SimFs {
    fn new(crash_after: usize, skip: Skip) -> SimFs {
        SimFs(Arc::new(Mutex::new(State {
            dirs: BTreeMap::new(),
            inodes: Vec::new(),
            ops: 0,
            crash_after,
            skip,
            folder_syncs: 0,
            locks: Default::default(),
        })))
    }

    fn ops(&self) -> usize {
        self.0.lock().ops
    }

    /// The filesystem after a power loss now, with choices drawn from `seed` (0: the
    /// deterministic case: every unsynced write and entry change lost).
    fn recover(&self, seed: u64) -> SimFs {
        let s = self.0.lock();
        let mut rng = seed;
        let mut coin = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed != 0 && (rng >> 33).is_multiple_of(2)
        };
        let mut inodes = s.inodes.clone();
        for inode in &mut inodes {
            let mut end = inode.synced;
            let mut data = inode.data[..inode.synced].to_vec();
            let n = inode.unsynced.len();
            for (i, &(start, len)) in inode.unsynced.iter().enumerate() {
                if !coin() {
                    continue;
                }
                let keep = if i + 1 == n && coin() { len / 2 } else { len };
                data.resize(start.max(data.len()), 0);
                data.truncate(start);
                data.extend_from_slice(&inode.data[start..start + keep]);
                end = start + keep;
            }
            data.truncate(end.max(inode.synced));
            *inode = Inode {
                synced: data.len(),
                data,
                unsynced: Vec::new(),
            };
        }
        // Folders not yet durable in their parent survive at random, with their contents.
        let lost: Vec<&PathBuf> = s
            .dirs
            .iter()
            .filter(|(_, d)| !d.in_parent && !coin())
            .map(|(p, _)| p)
            .collect();
        let mut dirs = BTreeMap::new();
        for (path, d) in &s.dirs {
            if lost.iter().any(|l| path.starts_with(l)) {
                continue;
            }
            let mut entries = d.durable.clone();
            for op in &d.pending {
                if !coin() {
                    continue;
                }
                match op {
                    DirOp::Put(name, ino) => {
                        entries.insert(name.clone(), *ino);
                    }
                    DirOp::Rename(from, to) => {
                        if let Some(ino) = entries.remove(from) {
                            entries.insert(to.clone(), ino);
                        }
                    }
                    DirOp::Remove(name) => {
                        entries.remove(name);
                    }
                }
            }
            dirs.insert(
                path.clone(),
                Dir {
                    in_parent: true,
                    current: entries.clone(),
                    durable: entries,
                    pending: Vec::new(),
                },
            );
        }
        SimFs(Arc::new(Mutex::new(State {
            dirs,
            inodes,
            ops: 0,
            crash_after: usize::MAX,
            skip: Skip::Nothing,
            folder_syncs: 0,
            locks: Default::default(),
        })))
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

fn split(path: &Path) -> (PathBuf, String) {
    (
        path.parent().unwrap().to_path_buf(),
        path.file_name().unwrap().to_string_lossy().into_owned(),
    )
}

impl State {
    /// Counts an operation; fails it (and every later one) past the crash point.
    fn op(&mut self) -> io::Result<()> {
        if self.ops >= self.crash_after {
            return Err(crashed());
        }
        self.ops += 1;
        Ok(())
    }

    fn dir(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no folder {}", path.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<usize> {
        let (dir, name) = split(path);
        self.dirs
            .get(&dir)
            .and_then(|d| d.current.get(&name).copied())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", path.display()),
                )
            })
    }
}

struct SimFile {
    fs: SimFs,
    inode: usize,
    name: String,
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.fs.0.lock();
        s.op()?;
        let inode = &mut s.inodes[self.inode];
        inode.unsynced.push((inode.data.len(), buf.len()));
        inode.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StorageFile for SimFile {
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.fs.0.lock();
        s.op()?;
        let ignored = match s.skip {
            Skip::PartSync => self.name.starts_with(".part-"),
            Skip::ManifestSync => self.name.starts_with(".manifest"),
            _ => false,
        };
        if !ignored {
            let inode = &mut s.inodes[self.inode];
            inode.synced = inode.data.len();
            inode.unsynced.clear();
        }
        Ok(())
    }
}

impl Storage for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        s.op()?;
        for p in path.ancestors() {
            s.dirs.entry(p.to_path_buf()).or_default().in_parent = true;
        }
        Ok(())
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        s.op()?;
        if s.dirs.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        s.dirs.entry(path.to_path_buf()).or_default();
        Ok(())
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut s = self.0.lock();
        s.op()?;
        let (dir, name) = split(path);
        let ino = s.inodes.len();
        let d = s.dir(&dir)?;
        if d.current.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
        }
        d.current.insert(name.clone(), ino);
        d.pending.push(DirOp::Put(name.clone(), ino));
        s.inodes.push(Inode::default());
        Ok(Box::new(SimFile {
            fs: self.clone(),
            inode: ino,
            name,
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let s = self.0.lock();
        let ino = s.lookup(path)?;
        Ok(Box::new(Cursor::new(s.inodes[ino].data.clone())))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        let s = self.0.lock();
        let ino = s.lookup(path)?;
        Ok(s.inodes[ino].data.len() as u64)
    }
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        s.op()?;
        let (dir, a) = split(from);
        let (_, b) = split(to);
        let d = s.dir(&dir)?;
        if d.current.contains_key(&b) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "target exists",
            ));
        }
        let ino = d
            .current
            .remove(&a)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no source"))?;
        d.current.insert(b.clone(), ino);
        d.pending.push(DirOp::Rename(a, b));
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        s.op()?;
        s.folder_syncs += 1;
        let n = s.folder_syncs;
        if s.skip == Skip::FolderSync(n) {
            return Ok(());
        }
        let d = s.dir(path)?;
        d.durable = d.current.clone();
        d.pending.clear();
        for (child, d) in s.dirs.iter_mut() {
            if child.parent() == Some(path) {
                d.in_parent = true;
            }
        }
        Ok(())
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.0.lock();
        let d = s
            .dirs
            .get(path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no folder"))?;
        let mut names: Vec<String> = d.current.keys().cloned().collect();
        let prefix = path.to_path_buf();
        names.extend(
            s.dirs
                .keys()
                .filter(|p| p.parent() == Some(prefix.as_path()))
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned()),
        );
        names.sort();
        Ok(names)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        if s.ops >= s.crash_after {
            return Err(crashed()); // a dead process removes nothing
        }
        let (dir, name) = split(path);
        let d = s.dir(&dir)?;
        d.current.remove(&name);
        d.pending.push(DirOp::Remove(name));
        Ok(())
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let s = self.0.lock();
        if s.ops >= s.crash_after {
            return Err(crashed());
        }
        match s.dirs.get(path) {
            Some(d) if !d.current.is_empty() => Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                "not empty",
            )),
            // The model keeps empty folders: an empty folder is no checkpoint.
            _ => Ok(()),
        }
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.0.lock();
        if s.ops >= s.crash_after {
            return Err(crashed());
        }
        if let Some(d) = s.dirs.get_mut(path) {
            let names: Vec<String> = d.current.keys().cloned().collect();
            for n in names {
                d.current.remove(&n);
                d.pending.push(DirOp::Remove(n));
            }
        }
        Ok(())
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        let mut s = self.0.lock();
        if s.ops >= s.crash_after {
            return Err(crashed());
        }
        let (dir, name) = split(path);
        let ino = s.inodes.len();
        let d = s.dir(&dir)?;
        if !d.current.contains_key(&name) {
            d.current.insert(name.clone(), ino);
            d.pending.push(DirOp::Put(name, ino));
            s.inodes.push(Inode::default());
        }
        if !s.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        })))
    }
}

/// A lock held in a `SimFs`.
#[derive(Debug)]
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl StorageLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.0.lock().locks.remove(&self.path);
    }
}

/// What a crash left, as seen by a new process.
#[derive(Debug, PartialEq)]
enum Outcome {
    Complete,
    NotCommitted,
    Wrong(String),
}

const ROOT: &str = "/sim/checkpoints";

/// Writes a checkpoint of `partitions` partitions on a `SimFs` that crashes after `k`
/// operations, then recovers it with `seed` and opens the checkpoint in a new context.
fn trial(partitions: usize, k: usize, seed: u64, skip: Skip) -> (Outcome, bool, usize) {
    let fs = SimFs::new(k, skip);
    let ctx = Context::builder()
        .threads(2)
        .app_id("sim")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(fs.clone())
        .build();
    let Ok(ctx) = ctx else {
        return (Outcome::NotCommitted, false, fs.ops()); // crashed before the folder existed
    };
    let rdd = ctx.range(0..40, partitions).map(|x| (x, x * x));
    let expected = rdd.collect().unwrap();
    rdd.checkpoint().unwrap();
    let reported = rdd.count().is_ok();
    let ops = fs.ops();
    let recovered = fs.recover(seed);
    // The attempt's folder is `rdd-<id>-<write id>`; a crash may have come before it.
    let app = Path::new(ROOT).join("sim");
    let prefix = format!("rdd-{}-", rdd.id());
    let dir = recovered
        .list(&app)
        .ok()
        .and_then(|names| names.into_iter().find(|n| n.starts_with(&prefix)))
        .map_or_else(|| app.join(format!("{prefix}missing")), |n| app.join(n));
    let reader = Context::builder()
        .threads(1)
        .app_id("reader")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(recovered)
        .build()
        .unwrap();
    let outcome = match reader.open_checkpoint::<(u64, u64)>(&dir) {
        Err(Error::NotCommitted { .. }) => Outcome::NotCommitted,
        // The crash came before the checkpoint's folder was made: no checkpoint either.
        Err(e @ Error::Io { .. }) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
            Outcome::NotCommitted
        }
        Err(e) => Outcome::Wrong(format!("open: {e}")),
        Ok(r) => match r.collect() {
            Ok(got) if got == expected => Outcome::Complete,
            Ok(_) => Outcome::Wrong("wrong data".into()),
            Err(e) => Outcome::Wrong(format!("read: {e}")),
        },
    };
    (outcome, reported, ops)
}

/// Crashes after every operation, for several partition counts and recovery draws; returns
/// the violations found.
fn sweep(skip: Skip) -> Vec<String> {
    let mut violations = Vec::new();
    for partitions in [1usize, 2, 3, 8] {
        // The number of operations of a complete write.
        let (_, _, total) = trial(partitions, usize::MAX, 0, Skip::Nothing);
        for k in 0..=total {
            for seed in [0u64, 1, 2, 3, 4, 5, 6, 7] {
                let (outcome, reported, _) = trial(partitions, k, seed, skip);
                let violation = match (&outcome, reported) {
                    (Outcome::Wrong(why), _) => Some(format!("committed but wrong: {why}")),
                    (Outcome::NotCommitted, true) => {
                        Some("reported written, lost by the crash".to_string())
                    }
                    _ => None,
                };
                if let Some(v) = violation {
                    violations.push(format!(
                        "{partitions} partitions, crash after op {k}, seed {seed}: {v}"
                    ));
                }
            }
        }
    }
    violations
}

#[test]
fn a_crash_at_any_operation_leaves_a_complete_checkpoint_or_none() {
    let violations = sweep(Skip::Nothing);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        violations.first()
    );
    // The sweep really crossed the commit point: some crashes leave a checkpoint.
    let (outcome, reported, _) = trial(3, usize::MAX, 1, Skip::Nothing);
    assert_eq!((outcome, reported), (Outcome::Complete, true));
    let (outcome, reported, _) = trial(3, 0, 1, Skip::Nothing);
    assert_eq!((outcome, reported), (Outcome::NotCommitted, false));
}

#[test]
fn removing_any_single_sync_from_the_protocol_is_caught() {
    for skip in [
        Skip::PartSync,
        Skip::ManifestSync,
        Skip::FolderSync(1),
        Skip::FolderSync(2),
        Skip::FolderSync(3),
    ] {
        let violations = sweep(skip);
        assert!(
            !violations.is_empty(),
            "without {skip:?} no crash case failed: that sync would be unnecessary"
        );
        println!(
            "without {skip:?}: {} violations, e.g. {}",
            violations.len(),
            violations[0]
        );
    }
}

/// The data of step `step` of the series job below.
fn step_data(step: u64) -> Vec<(u64, u64)> {
    (0..40).map(|x| (x, x * step + 1)).collect()
}

/// Four steps of a series keeping 1 on `fs`: every commit removes the step before it. Stops
/// at the first error (the crash); returns the newest step reported committed.
fn series_steps(fs: &SimFs) -> Option<u64> {
    let ctx = Context::builder()
        .threads(2)
        .app_id("sim")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(fs.clone())
        .build()
        .ok()?;
    let mut cp = ctx.checkpointer::<(u64, u64)>("s").keep(1);
    let mut reported = None;
    for step in 1..=4u64 {
        let r = ctx.parallelize(step_data(step), 2);
        if cp.update(step, &r).is_err() || r.count().is_err() {
            break;
        }
        reported = Some(step);
    }
    reported
}

/// `keep` removes old checkpoints while new ones commit. After a crash at any operation and
/// any recovery draw, every folder with a manifest reads back exactly its step's data (a
/// removal never leaves a manifest over missing parts), and the newest step reported
/// committed is still there.
#[test]
fn a_crash_while_keep_removes_old_checkpoints_never_leaves_a_damaged_committed_one() {
    let full = SimFs::new(usize::MAX, Skip::Nothing);
    assert_eq!(series_steps(&full), Some(4));
    let total = full.ops();
    let app = Path::new(ROOT).join("sim");
    let mut violations = Vec::new();
    for k in 0..=total {
        for seed in 0..6u64 {
            let fs = SimFs::new(k, Skip::Nothing);
            let reported = series_steps(&fs);
            let recovered = fs.recover(seed);
            // A new process: its start-up cleanup runs first.
            let reader = Context::builder()
                .threads(1)
                .app_id("reader")
                .checkpoint_dir(ROOT)
                .checkpoint_storage(recovered.clone())
                .build()
                .unwrap();
            let folders = recovered.list(&app).unwrap_or_default();
            let mut found = Vec::new();
            for name in folders.iter().filter(|n| n.starts_with("rdd-")) {
                match reader.open_checkpoint::<(u64, u64)>(app.join(name)) {
                    Err(Error::NotCommitted { .. }) => {}
                    Err(e) => violations.push(format!("k {k} seed {seed} {name}: {e}")),
                    Ok(rdd) => match rdd.collect() {
                        Ok(mut got) => {
                            got.sort();
                            let step = got.get(1).map_or(0, |p| p.1 - 1);
                            if got != step_data(step) {
                                violations.push(format!("k {k} seed {seed} {name}: wrong data"));
                            }
                            found.push(step);
                        }
                        Err(e) => violations.push(format!("k {k} seed {seed} {name}: {e}")),
                    },
                }
            }
            if let Some(step) = reported {
                if !found.contains(&step) {
                    violations.push(format!(
                        "k {k} seed {seed}: step {step} was reported committed, then lost"
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        violations.first()
    );
}
