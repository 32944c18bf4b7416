//! `CartesianRdd` (Spark's `CartesianRDD`), made by `cartesian`: every pair `(a, b)`.
//!
//! Partition `i` pairs partition `i / nb` of the first parent with partition `i % nb` of the
//! second: two `Narrow` dependencies; no partitioner.

use super::node::{Compute, PartitionIter};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

pub(crate) struct CartesianRdd<T: Data, U: Data> {
    a: Rdd<T>,
    b: Rdd<U>,
}

impl<T: Data, U: Data> CartesianRdd<T, U> {
    pub(crate) fn new(a: Rdd<T>, b: Rdd<U>) -> Self {
        CartesianRdd { a, b }
    }
}

impl<T: Data, U: Data> Compute<(T, U)> for CartesianRdd<T, U> {
    fn dependencies(&self) -> Vec<Dependency> {
        let nb = self.b.num_partitions();
        vec![
            Dependency::narrow(self.a.node.clone(), move |i| vec![i / nb]),
            Dependency::narrow(self.b.node.clone(), move |i| vec![i % nb]),
        ]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<PartitionIter<(T, U)>> {
        let nb = self.b.num_partitions();
        let right: Vec<U> = self.b.node.iterator(split % nb, tc)?.collect();
        let left = self.a.node.iterator(split / nb, tc)?;
        Ok(Box::new(left.flat_map(move |x| {
            right.clone().into_iter().map(move |y| (x.clone(), y))
        })))
    }
}
