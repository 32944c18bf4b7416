//! `RangeRdd`, made by `Context::range`: the integers of a range, generated on the fly.
//!
//! No dependencies; no partitioner. Split like `parallelize`: partition `i` of `n` holds
//! `[start + i * len / n, start + (i + 1) * len / n)`.

use std::ops::Range;

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::scheduler::TaskContext;

pub(crate) struct RangeRdd {
    range: Range<u64>,
    num_partitions: usize,
}

impl RangeRdd {
    pub(crate) fn new(range: Range<u64>, num_partitions: usize) -> Self {
        RangeRdd {
            range,
            num_partitions,
        }
    }
}

impl Compute<u64> for RangeRdd {
    fn name(&self) -> &'static str {
        "RangeRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, _tc: &TaskContext) -> Result<BoxedPartitionIter<u64>> {
        let len = u128::from(self.range.end.saturating_sub(self.range.start));
        let n = self.num_partitions as u128;
        let s = split as u128;
        let lo = self.range.start + (s * len / n) as u64;
        let hi = self.range.start + ((s + 1) * len / n) as u64;
        Ok(boxed(lo..hi))
    }
}
