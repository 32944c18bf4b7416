//! Which committed checkpoint folders live RDDs of this process read.
//!
//! A checkpoint folder is the only copy of its data once the lineage is gone, so nothing may
//! delete it while an RDD reads it. Every RDD that reads a checkpoint (the swapped-in
//! `ReliableCheckpointRdd` of a checkpointed RDD, and every copy opened with
//! `Context::open_checkpoint`, in any context of the process) holds a [`Reader`] of its
//! folder. `clean_checkpoints(true)` asks for the folder to go with its writer's last reader
//! ([`Reader::delete_when_unread`]); the folder is then removed when the last reader of
//! *any* kind is dropped, never before.
//!
//! The registry is process-wide: two contexts of one process may read the same folder. It
//! knows nothing of other processes; `clean_checkpoints` documents that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::Storage;

struct Entry {
    readers: usize,
    /// Set when the folder's writer asked for it to be removed once nothing reads it.
    delete_with: Option<Arc<dyn Storage>>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Entry>> {
    static LIVE: OnceLock<Mutex<HashMap<PathBuf, Entry>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

/// One name per folder, however it was spelled (relative, through a symbolic link).
fn key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A live reader of one checkpoint folder; the registration ends when it is dropped.
pub(crate) struct Reader {
    key: PathBuf,
}

impl Reader {
    /// Registers a reader of `dir`. Register before checking that the folder is there: a
    /// removal then either happened already (the check fails) or waits for this reader.
    pub(crate) fn register(dir: &Path) -> Reader {
        let key = key(dir);
        registry()
            .lock()
            .entry(key.clone())
            .or_insert(Entry {
                readers: 0,
                delete_with: None,
            })
            .readers += 1;
        Reader { key }
    }

    /// Removes the folder (through `storage`) when its last reader is gone.
    pub(crate) fn delete_when_unread(&self, storage: Arc<dyn Storage>) {
        if let Some(e) = registry().lock().get_mut(&self.key) {
            e.delete_with = Some(storage);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut live = registry().lock();
        let Some(e) = live.get_mut(&self.key) else {
            return;
        };
        e.readers -= 1;
        if e.readers > 0 {
            return;
        }
        let entry = live.remove(&self.key);
        // Removed under the registry lock, so a reader registering now waits and then finds
        // the folder gone (`NotCommitted`), rather than reading a half-removed folder.
        if let Some(storage) = entry.and_then(|e| e.delete_with) {
            super::remove_checkpoint(storage.as_ref(), &self.key);
        }
    }
}

/// Removes `dir` now if no RDD of this process reads it, or else when its last reader is
/// dropped. Returns whether it was removed now.
pub(crate) fn delete_when_unread(dir: &Path, storage: Arc<dyn Storage>) -> bool {
    let key = key(dir);
    let mut live = registry().lock();
    match live.get_mut(&key) {
        Some(e) if e.readers > 0 => {
            e.delete_with = Some(storage);
            false
        }
        _ => {
            live.remove(&key);
            super::remove_checkpoint(storage.as_ref(), &key);
            true
        }
    }
}

/// How many live readers `dir` has (for tests and `gc`-style tools).
#[cfg(test)]
pub(crate) fn readers(dir: &Path) -> usize {
    registry().lock().get(&key(dir)).map_or(0, |e| e.readers)
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
        assert!(!ckpt.exists());
        assert_eq!(readers(&ckpt), 0);
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
