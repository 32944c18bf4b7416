//! `MapPartitionsRdd` (Spark's `MapPartitionsRDD`): `map`, `filter`, `flat_map`,
//! `map_partitions`, `map_partitions_with_index`, `map_values`, `glom`, `sample`, ...
//!
//! One `OneToOne` dependency. Keeps the parent's partitioner only when the operation
//! preserves keys (`map_values`, `flat_map_values`, `filter`, and `map_partitions` calls
//! that say so).

use std::sync::Arc;

use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::partitioner::Partitioner;
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

/// The partition function: `(partition index, parent iterator) -> iterator`.
pub(crate) type PartitionFn<T, U> =
    Arc<dyn Fn(usize, BoxedPartitionIter<T>) -> BoxedPartitionIter<U> + Send + Sync>;

pub(crate) struct MapPartitionsRdd<T: Data, U> {
    parent: Rdd<T>,
    f: PartitionFn<T, U>,
    /// The parent's, when the operation preserves partitioning; else `None`.
    partitioner: Option<Partitioner>,
}

impl<T: Data, U> MapPartitionsRdd<T, U> {
    pub(crate) fn new(
        parent: Rdd<T>,
        f: PartitionFn<T, U>,
        partitioner: Option<Partitioner>,
    ) -> Self {
        MapPartitionsRdd {
            parent,
            f,
            partitioner,
        }
    }
}

impl<T: Data, U: Data> Compute<U> for MapPartitionsRdd<T, U> {
    fn name(&self) -> &'static str {
        "MapPartitionsRdd"
    }
    fn num_partitions(&self) -> usize {
        self.parent.num_partitions()
    }
    fn partitioner(&self) -> Option<Partitioner> {
        self.partitioner.clone()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::one_to_one(self.parent.node.clone())]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<U>> {
        let input = self.parent.node.iterator(split, tc)?;
        Ok((self.f)(split, input))
    }
}
