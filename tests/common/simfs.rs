//! A simulated filesystem behind the public `Storage` seam that can crash after any
//! operation and then shows what a power loss would have left.
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

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flintlock::checkpoint::{Storage, StorageFile, StorageLock};
use parking_lot::Mutex;

/// Which sync the simulated filesystem ignores (a protocol with that sync removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
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
pub struct SimFs(Arc<Mutex<State>>);

impl SimFs {
    pub fn new(crash_after: usize, skip: Skip) -> SimFs {
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

    pub fn ops(&self) -> usize {
        self.0.lock().ops
    }

    /// The filesystem after a power loss now, with choices drawn from `seed` (0: the
    /// deterministic case: every unsynced write and entry change lost).
    pub fn recover(&self, seed: u64) -> SimFs {
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
