//! `ZippedPartitionsRdd` (Spark's `ZippedPartitionsRDD2`), made by `zip` and
//! `zip_partitions`: computes the i-th partition from the i-th partitions of two RDDs with
//! the same partition count.
//!
//! Two `OneToOne` dependencies; no partitioner. `zip` pairs the elements and fails the task
//! with `Error::DataMismatch` when the partitions' lengths differ.

use std::sync::Arc;

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

/// The partition function: `(partition index, task, a's iterator, b's iterator)`.
pub(crate) type ZipFn<T, U, W> = Arc<
    dyn Fn(
            usize,
            &TaskContext,
            BoxedPartitionIter<T>,
            BoxedPartitionIter<U>,
        ) -> BoxedPartitionIter<W>
        + Send
        + Sync,
>;

pub(crate) struct ZippedPartitionsRdd<T: Data, U: Data, W> {
    a: Rdd<T>,
    b: Rdd<U>,
    f: ZipFn<T, U, W>,
}

impl<T: Data, U: Data, W> ZippedPartitionsRdd<T, U, W> {
    pub(crate) fn new(a: Rdd<T>, b: Rdd<U>, f: ZipFn<T, U, W>) -> Self {
        ZippedPartitionsRdd { a, b, f }
    }
}

impl<T: Data, U: Data> ZippedPartitionsRdd<T, U, (T, U)> {
    /// `zip`: the i-th elements of both partitions, paired.
    pub(crate) fn pairs(a: Rdd<T>, b: Rdd<U>) -> Self {
        let (ia, ib) = (a.id(), b.id());
        let f: ZipFn<T, U, (T, U)> = Arc::new(move |split, tc, mut a, mut b| {
            let tc = tc.clone();
            boxed(std::iter::from_fn(move || match (a.next(), b.next()) {
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
            }))
        });
        ZippedPartitionsRdd::new(a, b, f)
    }
}

impl<T: Data, U: Data, W: Data> Compute<W> for ZippedPartitionsRdd<T, U, W> {
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

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<W>> {
        let a = self.a.node.iterator(split, tc)?;
        let b = self.b.node.iterator(split, tc)?;
        Ok((self.f)(split, tc, a, b))
    }
}
