//! `FailedRdd`: an RDD whose definition already failed (a `sort_by_key` whose sampling job
//! failed, or whose key type's `Ord` panicked while the range bounds were computed).
//!
//! Transformations cannot return errors, so the error is kept and every partition reports
//! it: the next action returns it as an `Err`, with the partition count that was asked for.
//! No dependencies; no partitioner.

use std::marker::PhantomData;

use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;

pub(crate) struct FailedRdd<T> {
    error: Error,
    num_partitions: usize,
    _elements: PhantomData<fn() -> T>,
}

impl<T> FailedRdd<T> {
    /// `num_partitions` partitions, each of which fails with `error`.
    pub(crate) fn new(error: Error, num_partitions: usize) -> Self {
        FailedRdd {
            error,
            num_partitions,
            _elements: PhantomData,
        }
    }
}

impl<T: 'static> Compute<T> for FailedRdd<T> {
    fn name(&self) -> &'static str {
        "FailedRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, _split: usize, _tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        Err(self.error.duplicate())
    }
}
