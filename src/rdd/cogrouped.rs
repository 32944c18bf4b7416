//! `CoGroupedRdd` (Spark's `CoGroupedRDD`): two pair RDDs brought together by key, made by
//! `cogroup` and the `join` family.
//!
//! Per parent, one dependency, chosen by `ShuffleDependency::unless_partitioned`: `OneToOne` when the
//! parent is already partitioned by the target partitioner (no shuffle: PageRank's
//! `links.join(ranks)` reads the cached `links` in place), `Shuffle` otherwise. The result
//! keeps the target partitioner. What is done with the two sides of a partition (grouping,
//! an inner or outer hash join) is the `combine` function.

use std::sync::Arc;

use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::partitioner::Partitioner;
use crate::scheduler::TaskContext;
use crate::shuffle::ShuffleDependency;
use crate::{Data, Key, Rdd};

/// One input of a co-group: read in place, or through a shuffle.
pub(crate) enum CoGroupSide<K: Data, V: Data> {
    Narrow(Rdd<(K, V)>),
    Shuffled(Arc<ShuffleDependency<K, V, V>>),
}

impl<K: Key, V: Data> CoGroupSide<K, V> {
    /// In place when `rdd` is already partitioned by `p`, else shuffled into `p`'s partitions
    /// ([`ShuffleDependency::unless_partitioned`] decides).
    pub(crate) fn new(rdd: &Rdd<(K, V)>, p: &Partitioner) -> Self {
        match ShuffleDependency::bucketing(rdd, p) {
            None => CoGroupSide::Narrow(rdd.clone()),
            Some(dep) => CoGroupSide::Shuffled(Arc::new(dep)),
        }
    }

    fn dependency(&self) -> Dependency {
        match self {
            CoGroupSide::Narrow(r) => Dependency::one_to_one(r.node.clone()),
            CoGroupSide::Shuffled(d) => Dependency::shuffle(d.clone()),
        }
    }

    fn iterator(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<(K, V)>> {
        match self {
            CoGroupSide::Narrow(r) => r.node.iterator(split, tc),
            CoGroupSide::Shuffled(d) => Ok(Box::new(d.read(split, tc)?)),
        }
    }
}

/// What to make of one partition's two sides.
pub(crate) type CombineFn<K, V, W, O> = Arc<
    dyn Fn(BoxedPartitionIter<(K, V)>, BoxedPartitionIter<(K, W)>) -> BoxedPartitionIter<O>
        + Send
        + Sync,
>;

pub(crate) struct CoGroupedRdd<K: Data, V: Data, W: Data, O> {
    left: CoGroupSide<K, V>,
    right: CoGroupSide<K, W>,
    combine: CombineFn<K, V, W, O>,
    /// The target partitioner both sides are brought to.
    partitioner: Partitioner,
}

impl<K: Key, V: Data, W: Data, O> CoGroupedRdd<K, V, W, O> {
    pub(crate) fn new(
        left: CoGroupSide<K, V>,
        right: CoGroupSide<K, W>,
        combine: CombineFn<K, V, W, O>,
        partitioner: Partitioner,
    ) -> Self {
        CoGroupedRdd {
            left,
            right,
            combine,
            partitioner,
        }
    }
}

impl<K: Key, V: Data, W: Data, O: Data> Compute<O> for CoGroupedRdd<K, V, W, O> {
    fn name(&self) -> &'static str {
        "CoGroupedRdd"
    }
    fn num_partitions(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn partitioner(&self) -> Option<Partitioner> {
        Some(self.partitioner.clone())
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![self.left.dependency(), self.right.dependency()]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<O>> {
        let left = self.left.iterator(split, tc)?;
        let right = self.right.iterator(split, tc)?;
        Ok((self.combine)(left, right))
    }
}
