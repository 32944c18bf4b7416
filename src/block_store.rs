//! The block store: cached partitions of persisted RDDs and the blocks of local checkpoints
//! (Spark's `BlockManager`, in memory).
//!
//! A block is one partition of one RDD, `rdd_<id>_<partition>`, held as a shared, typed
//! `Vec<T>` behind `dyn Any`. Blocks of an RDD are dropped when the RDD is unpersisted or its
//! last handle is dropped.

use std::any::Any;
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// How an RDD's computed partitions are kept between actions.
///
/// Only memory storage exists so far; disk levels will come with spilling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StorageLevel {
    /// Not kept: every action recomputes the RDD from its lineage (the default).
    #[default]
    None,
    /// Kept in memory as deserialized values after the first action computes them.
    MemoryOnly,
}

impl StorageLevel {
    /// Spark's description, shown in `to_debug_string` between the brackets.
    pub fn description(self) -> &'static str {
        match self {
            StorageLevel::None => "",
            StorageLevel::MemoryOnly => "Memory Deserialized 1x Replicated",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            StorageLevel::None => 0,
            StorageLevel::MemoryOnly => 1,
        }
    }

    pub(crate) fn from_u8(v: u8) -> StorageLevel {
        match v {
            1 => StorageLevel::MemoryOnly,
            _ => StorageLevel::None,
        }
    }
}

/// A block: one partition's elements, typed as `Vec<T>` behind `Any`.
pub(crate) type Block = Arc<dyn Any + Send + Sync>;

/// Cached partitions by `(rdd id, partition)`.
#[derive(Default)]
pub(crate) struct BlockStore {
    blocks: Mutex<FxHashMap<(usize, usize), Block>>,
}

impl BlockStore {
    /// How many partitions are cached.
    pub(crate) fn len(&self) -> usize {
        self.blocks.lock().len()
    }

    pub(crate) fn get<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        partition: usize,
    ) -> Option<Arc<Vec<T>>> {
        let block = self.blocks.lock().get(&(rdd_id, partition)).cloned()?;
        block.downcast::<Vec<T>>().ok()
    }

    pub(crate) fn contains(&self, rdd_id: usize, partition: usize) -> bool {
        self.blocks.lock().contains_key(&(rdd_id, partition))
    }

    pub(crate) fn put<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        partition: usize,
        data: Arc<Vec<T>>,
    ) {
        self.blocks.lock().insert((rdd_id, partition), data);
    }

    /// Removes one block; true when it was there.
    pub(crate) fn remove(&self, rdd_id: usize, partition: usize) -> bool {
        self.blocks.lock().remove(&(rdd_id, partition)).is_some()
    }

    /// Removes every block of an RDD. The blocks are dropped outside the lock.
    pub(crate) fn remove_rdd(&self, rdd_id: usize) {
        let removed: Vec<Block> = {
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
