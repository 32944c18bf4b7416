//! `ParallelCollectionRdd` (Spark's `ParallelCollectionRDD`), made by `Context::parallelize`.
//!
//! No dependencies; no partitioner. Partition `i` of `n` holds elements
//! `[i * len / n, (i + 1) * len / n)` of the collection, as in Spark's `slice`.

use std::sync::Arc;

use super::node::{ArcVecIter, BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::scheduler::TaskContext;
use crate::Data;

pub(crate) struct ParallelCollectionRdd<T> {
    data: Arc<Vec<T>>,
    num_partitions: usize,
}

impl<T> ParallelCollectionRdd<T> {
    pub(crate) fn new(data: Vec<T>, num_partitions: usize) -> Self {
        ParallelCollectionRdd {
            data: Arc::new(data),
            num_partitions,
        }
    }

    fn bounds(&self, split: usize) -> (usize, usize) {
        let len = self.data.len();
        let n = self.num_partitions;
        (split * len / n, (split + 1) * len / n)
    }
}

impl<T: Data> Compute<T> for ParallelCollectionRdd<T> {
    fn name(&self) -> &'static str {
        "ParallelCollectionRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, _tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let (start, end) = self.bounds(split);
        Ok(Box::new(ArcVecIter::slice(self.data.clone(), start, end)))
    }
}
