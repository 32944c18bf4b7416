//! `CoalescedRdd` (Spark's `CoalescedRDD` without a shuffle), made by `coalesce`: fewer
//! partitions, each the concatenation of a run of consecutive parent partitions.
//!
//! One `Narrow` dependency (child `i` reads parent partitions `groups[i]`); no partitioner.

use std::ops::Range;
use std::sync::Arc;

use super::iter::Concat;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

pub(crate) struct CoalescedRdd<T: Data> {
    parent: Rdd<T>,
    groups: Arc<Vec<Range<usize>>>,
}

impl<T: Data> CoalescedRdd<T> {
    /// Groups the parent's partitions into `n` runs of nearly equal length.
    pub(crate) fn new(parent: Rdd<T>, n: usize) -> Self {
        let m = parent.num_partitions();
        let groups = (0..n).map(|i| (i * m / n)..((i + 1) * m / n)).collect();
        CoalescedRdd {
            parent,
            groups: Arc::new(groups),
        }
    }
}

impl<T: Data> Compute<T> for CoalescedRdd<T> {
    fn name(&self) -> &'static str {
        "CoalescedRdd"
    }
    fn num_partitions(&self) -> usize {
        self.groups.len()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        let groups = self.groups.clone();
        vec![Dependency::narrow(self.parent.node.clone(), move |i| {
            groups
                .get(i)
                .cloned()
                .map(|r| r.collect())
                .unwrap_or_default()
        })]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let parts: Vec<BoxedPartitionIter<T>> = self.groups[split]
            .clone()
            .map(|p| self.parent.node.iterator(p, tc))
            .collect::<Result<_>>()?;
        Ok(Concat::boxed(parts))
    }
}
