//! `ZippedPartitionsRdd` (Spark's `ZippedPartitionsRDD2`), made by `zip`: pairs the i-th
//! elements of the i-th partitions of two RDDs with the same partition count.
//!
//! Two `OneToOne` dependencies; no partitioner. Partitions of different lengths fail the task
//! with `Error::DataMismatch`.

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

pub(crate) struct ZippedPartitionsRdd<T: Data, U: Data> {
    a: Rdd<T>,
    b: Rdd<U>,
    ids: (usize, usize),
}

impl<T: Data, U: Data> ZippedPartitionsRdd<T, U> {
    pub(crate) fn new(a: Rdd<T>, b: Rdd<U>) -> Self {
        let ids = (a.id(), b.id());
        ZippedPartitionsRdd { a, b, ids }
    }
}

impl<T: Data, U: Data> Compute<(T, U)> for ZippedPartitionsRdd<T, U> {
    fn name(&self) -> &'static str {
        "ZippedPartitionsRdd"
    }
    fn num_partitions(&self) -> usize {
        self.a.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::one_to_one(self.a.node.clone()),
            Dependency::one_to_one(self.b.node.clone()),
        ]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<(T, U)>> {
        let mut a = self.a.node.iterator(split, tc)?;
        let mut b = self.b.node.iterator(split, tc)?;
        let tc = tc.clone();
        let (ia, ib) = self.ids;
        Ok(boxed(std::iter::from_fn(move || {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => Some((x, y)),
                (None, None) => None,
                _ => {
                    tc.fail(Error::DataMismatch {
                        rdd_id: ia,
                        partition: split,
                        message: format!(
                            "zip: rdd {ia} and rdd {ib} have different numbers of elements in \
                         this partition (zip needs equal partition sizes)"
                        ),
                    });
                    None
                }
            }
        })))
    }
}
