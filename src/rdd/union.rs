//! `UnionRdd` (Spark's `UnionRDD`), made by `union`: the partitions of both parents, the
//! first parent's first. One `Range` dependency per parent; no partitioner.
//!
//! `PartitionerAwareUnionRdd` (Spark's `PartitionerAwareUnionRDD`), made by `union` when
//! every parent has the same partitioner: partition `i` is partition `i` of each parent in
//! turn, one `OneToOne` dependency per parent, and the partitioner kept, so a following
//! `reduce_by_key` or `join` needs no shuffle.
//!
//! ```text
//! parent a: [a0 a1]      parent b: [b0 b1 b2]
//!             |  |                   |  |  |
//! union:    [ 0  1 ]  [  2  3  4  ]    (Range a: 0..2 -> 0..2, Range b: 0..3 -> 2..5)
//! ```

use super::iter::Concat;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

/// The partitioner all `parents` share, when they all have one and it is settled.
pub(crate) fn common_partitioner<T: Data>(parents: &[Rdd<T>]) -> Option<Partitioner> {
    let first = parents.first()?.node.settled_partitioner()?;
    parents[1..]
        .iter()
        .all(|p| p.node.settled_partitioner().as_ref() == Some(&first))
        .then_some(first)
}

pub(crate) struct PartitionerAwareUnionRdd<T: Data> {
    parents: Vec<Rdd<T>>,
    partitioner: Partitioner,
}

impl<T: Data> PartitionerAwareUnionRdd<T> {
    pub(crate) fn new(parents: Vec<Rdd<T>>, partitioner: Partitioner) -> Self {
        PartitionerAwareUnionRdd {
            parents,
            partitioner,
        }
    }
}

impl<T: Data> Compute<T> for PartitionerAwareUnionRdd<T> {
    fn name(&self) -> &'static str {
        "PartitionerAwareUnionRdd"
    }
    fn num_partitions(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.parents
            .iter()
            .map(|p| Dependency::one_to_one(p.node.clone()))
            .collect()
    }
    fn partitioner(&self) -> Option<Partitioner> {
        Some(self.partitioner.clone())
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let parts = self
            .parents
            .iter()
            .map(|p| p.node.iterator(split, tc))
            .collect::<Result<Vec<_>>>()?;
        Ok(Concat::boxed(parts))
    }
}

pub(crate) struct UnionRdd<T: Data> {
    parents: Vec<Rdd<T>>,
}

impl<T: Data> UnionRdd<T> {
    pub(crate) fn new(parents: Vec<Rdd<T>>) -> Self {
        UnionRdd { parents }
    }
}

impl<T: Data> Compute<T> for UnionRdd<T> {
    fn name(&self) -> &'static str {
        "UnionRdd"
    }
    fn num_partitions(&self) -> usize {
        self.parents.iter().map(|p| p.num_partitions()).sum()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        let mut out_start = 0;
        self.parents
            .iter()
            .map(|p| {
                let n = p.num_partitions();
                let d = Dependency::range(p.node.clone(), 0, out_start, n);
                out_start += n;
                d
            })
            .collect()
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let mut s = split;
        for p in &self.parents {
            let n = p.num_partitions();
            if s < n {
                return p.node.iterator(s, tc);
            }
            s -= n;
        }
        Err(Error::Internal(format!("union has no partition {split}")))
    }
}
