//! `CartesianRdd` (Spark's `CartesianRDD`), made by `cartesian`: every pair `(a, b)`.
//!
//! Partition `i` pairs partition `i / nb` of the first parent with partition `i % nb` of the
//! second: two `Narrow` dependencies; no partitioner.

use std::sync::Arc;

use super::iter::{drain_to_vec, FlatMapped};
use super::node::{BoxedPartitionIter, Compute};
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
    fn name(&self) -> &'static str {
        "CartesianRdd"
    }
    fn num_partitions(&self) -> usize {
        self.a.num_partitions() * self.b.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        let nb = self.b.num_partitions();
        vec![
            Dependency::narrow(self.a.node.clone(), move |i| vec![i / nb]),
            Dependency::narrow(self.b.node.clone(), move |i| vec![i % nb]),
        ]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<(T, U)>> {
        let nb = self.b.num_partitions();
        let right = Arc::new(drain_to_vec(self.b.node.iterator(split % nb, tc)?));
        let left = self.a.node.iterator(split / nb, tc)?;
        // Each left element pairs with clones of the right elements (not a copy of the
        // whole right partition per left element).
        Ok(FlatMapped::boxed(left, move |x| {
            let right = right.clone();
            (0..right.len()).map(move |i| (x.clone(), right[i].clone()))
        }))
    }
}
