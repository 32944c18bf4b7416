//! `ShuffledRdd` (Spark's `ShuffledRDD`): the reduce side of a shuffle, made by
//! `reduce_by_key`, `group_by_key`, `combine_by_key`, `partition_by`, `sort_by_key`, ...
//!
//! One `Shuffle` dependency; its partitioner is the shuffle's. Partition `i` reads bucket `i`
//! of every map output and merges it (`reduce`: combining by key, or passing pairs through).

use std::sync::Arc;

use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::partitioner::Partitioner;
use crate::scheduler::TaskContext;
use crate::shuffle::{ShuffleDepBase, ShuffleDependency, ShuffleReader};
use crate::Data;

/// The reduce side: merges one partition's `(K, M)` pairs from every map output.
pub(crate) type ReduceFn<K, M, C> =
    Arc<dyn Fn(ShuffleReader<K, M>) -> BoxedPartitionIter<(K, C)> + Send + Sync>;

pub(crate) struct ShuffledRdd<K: Data, V: Data, M, C> {
    dep: Arc<ShuffleDependency<K, V, M>>,
    reduce: ReduceFn<K, M, C>,
}

impl<K: Data, V: Data, M: Data, C> ShuffledRdd<K, V, M, C> {
    pub(crate) fn new(dep: ShuffleDependency<K, V, M>, reduce: ReduceFn<K, M, C>) -> Self {
        ShuffledRdd {
            dep: Arc::new(dep),
            reduce,
        }
    }
}

impl<K: Data, V: Data, M: Data, C: Data> Compute<(K, C)> for ShuffledRdd<K, V, M, C> {
    fn name(&self) -> &'static str {
        "ShuffledRdd"
    }
    fn num_partitions(&self) -> usize {
        self.dep.partitioner().num_partitions()
    }
    /// The shuffle's: partition `i` holds exactly the keys the partitioner places in `i`.
    fn partitioner(&self) -> Option<Partitioner> {
        Some(self.dep.partitioner().clone())
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::shuffle(self.dep.clone())]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<(K, C)>> {
        let reader = self.dep.read(split, tc)?;
        Ok((self.reduce)(reader))
    }
}
