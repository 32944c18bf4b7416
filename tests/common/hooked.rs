//! [`LocalFs`] with a hook called before each operation: tests that need a storage to
//! panic, stall or misbehave at one chosen step, without writing the whole trait again.

use std::io;
use std::path::Path;
use std::sync::Arc;

use flintlock::checkpoint::{LocalFs, Storage, StorageFile, StorageLock, StorageOp};

/// Called with each operation and its path (a rename: its destination) before
/// [`LocalFs`] does it.
pub type Hook = dyn Fn(StorageOp, &Path) + Send + Sync;

/// [`LocalFs`], calling a [`Hook`] first.
#[derive(Clone)]
pub struct Hooked(pub Arc<Hook>);

impl Hooked {
    /// A storage that calls `hook` before each operation.
    pub fn new(hook: impl Fn(StorageOp, &Path) + Send + Sync + 'static) -> Hooked {
        Hooked(Arc::new(hook))
    }
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooked(LocalFs)")
    }
}

impl Storage for Hooked {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::CreateDir, path);
        LocalFs.create_dir_all(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::CreateDir, path);
        LocalFs.create_dir(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        (self.0)(StorageOp::Create, path);
        LocalFs.create_new(path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        (self.0)(StorageOp::Read, path);
        LocalFs.open(path)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        (self.0)(StorageOp::Read, path);
        LocalFs.len(path)
    }
    fn rename_no_replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        (self.0)(StorageOp::Rename, to);
        LocalFs.rename_no_replace(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::SyncDir, path);
        LocalFs.sync_dir(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        (self.0)(StorageOp::Read, path);
        LocalFs.list(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::Remove, path);
        LocalFs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::Remove, path);
        LocalFs.remove_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        (self.0)(StorageOp::Remove, path);
        LocalFs.remove_dir(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        (self.0)(StorageOp::Lock, path);
        LocalFs.try_lock(path)
    }
}
