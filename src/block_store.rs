//! The block store: cached partitions of persisted RDDs and the blocks of local checkpoints
//! (Spark's `BlockManager`, in memory).
//!
//! A block is one partition of one RDD, `rdd_<id>_<partition>`, held as a shared, typed
//! `Vec<T>` behind `dyn Any`, or (disk storage levels) as a spill file holding its records. Blocks of an RDD are dropped when the RDD is unpersisted or its
//! last handle is dropped.

use std::any::Any;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::spill::{Bucket, MemoryManager, Reservation};

/// How an RDD's computed partitions are kept between actions.
///
/// The disk levels store blocks in spill files (the checkpoint format's frames, checked
/// when read back; removed with the block) and need a spill codec for the element type:
/// primitive types, `String` and pairs of them have one, others need
/// [`Context::register_spillable`](crate::Context::register_spillable) (otherwise the
/// action that would store the block fails, saying so). A block that does not read back is
/// dropped and recomputed from the lineage, as a lost block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StorageLevel {
    /// Not kept: every action recomputes the RDD from its lineage (the default).
    #[default]
    None,
    /// Kept in memory as deserialized values after the first action computes them. Under
    /// [`ContextBuilder::memory_limit`](crate::ContextBuilder::memory_limit), a block that
    /// does not fit in the budget is not kept, and is recomputed when needed again.
    MemoryOnly,
    /// Kept in memory while the blocks fit in the budget of
    /// [`ContextBuilder::memory_limit`](crate::ContextBuilder::memory_limit) (shared with
    /// kept shuffle outputs: half the limit), on disk beyond it. Without a limit, the same as
    /// `MemoryOnly`. Where a block goes is decided when it is stored.
    MemoryAndDisk,
    /// Kept on disk only: each read decodes the block again.
    DiskOnly,
}

impl StorageLevel {
    /// Spark's description, shown in `to_debug_string` between the brackets.
    pub fn description(self) -> &'static str {
        match self {
            StorageLevel::None => "",
            StorageLevel::MemoryOnly => "Memory Deserialized 1x Replicated",
            StorageLevel::MemoryAndDisk => "Disk Memory Deserialized 1x Replicated",
            StorageLevel::DiskOnly => "Disk Serialized 1x Replicated",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            StorageLevel::None => 0,
            StorageLevel::MemoryOnly => 1,
            StorageLevel::MemoryAndDisk => 2,
            StorageLevel::DiskOnly => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> StorageLevel {
        match v {
            1 => StorageLevel::MemoryOnly,
            2 => StorageLevel::MemoryAndDisk,
            3 => StorageLevel::DiskOnly,
            _ => StorageLevel::None,
        }
    }
}

/// A block: one partition's elements, typed as `Vec<T>` behind `Any`.
pub(crate) type Block = Arc<dyn Any + Send + Sync>;

/// A stored block and the budget it holds (a `MemoryAndDisk` block kept in memory under a
/// limit).
struct Entry {
    /// `Vec<T>` in memory, or `Bucket<T>` on disk.
    block: Block,
    _reservation: Option<Reservation>,
}

/// Cached partitions by `(rdd id, partition)`.
#[derive(Default)]
pub(crate) struct BlockStore {
    blocks: Mutex<FxHashMap<(usize, usize), Entry>>,
}

impl BlockStore {
    /// How many partitions are cached.
    pub(crate) fn len(&self) -> usize {
        self.blocks.lock().len()
    }

    /// Block `(rdd_id, partition)`: shared when in memory, read back (and checked) when on
    /// disk. `None` when absent; an error when a disk block does not read back (the caller
    /// drops it).
    pub(crate) fn get<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        partition: usize,
        memory: &MemoryManager,
    ) -> Option<Result<Arc<Vec<T>>>> {
        let block = self.blocks.lock().get(&(rdd_id, partition))?.block.clone();
        let block = match block.downcast::<Vec<T>>() {
            Ok(v) => return Some(Ok(v)),
            Err(other) => other,
        };
        let bucket = block.downcast::<Bucket<T>>().ok()?;
        Some(bucket.load(memory.codec::<T>().as_deref()))
    }

    pub(crate) fn contains(&self, rdd_id: usize, partition: usize) -> bool {
        self.blocks.lock().contains_key(&(rdd_id, partition))
    }

    pub(crate) fn put<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        partition: usize,
        data: Arc<Vec<T>>,
        reservation: Option<Reservation>,
    ) {
        let entry = Entry {
            block: data,
            _reservation: reservation,
        };
        let old = self.blocks.lock().insert((rdd_id, partition), entry);
        drop(old);
    }

    /// Stores a block written to disk.
    pub(crate) fn put_on_disk<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        partition: usize,
        block: Bucket<T>,
    ) {
        let entry = Entry {
            block: Arc::new(block),
            _reservation: None,
        };
        let old = self.blocks.lock().insert((rdd_id, partition), entry);
        drop(old);
    }

    /// Removes one block; true when it was there.
    pub(crate) fn remove(&self, rdd_id: usize, partition: usize) -> bool {
        let removed = self.blocks.lock().remove(&(rdd_id, partition));
        removed.is_some()
    }

    /// Removes every block of an RDD. The blocks are dropped outside the lock.
    pub(crate) fn remove_rdd(&self, rdd_id: usize) {
        let removed: Vec<Entry> = {
            let mut blocks = self.blocks.lock();
            let keys: Vec<(usize, usize)> =
                blocks.keys().filter(|k| k.0 == rdd_id).copied().collect();
            keys.iter().filter_map(|k| blocks.remove(k)).collect()
        };
        drop(removed);
    }

    /// How many partitions of `rdd_id` are cached.
    pub(crate) fn cached_partitions(&self, rdd_id: usize) -> usize {
        self.blocks.lock().keys().filter(|k| k.0 == rdd_id).count()
    }
}
