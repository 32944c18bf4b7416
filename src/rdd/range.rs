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
        let (lo, hi) = split_of(len, self.num_partitions, split);
        let start = self.range.start;
        Ok(boxed(start + lo as u64..start + hi as u64))
    }
}

/// The index range `[lo, hi)` of partition `split` of `n` over `len` values, as
/// `parallelize` splits: partition `i` holds `[i * len / n, (i + 1) * len / n)`.
fn split_of(len: u128, n: usize, split: usize) -> (u128, u128) {
    let (n, s) = (n as u128, split as u128);
    (s * len / n, (s + 1) * len / n)
}

/// `StepRangeRdd`, made by `Context::range_step`: `start + k * step` for `k` in `0..n`,
/// split like `RangeRdd` by index.
pub(crate) struct StepRangeRdd {
    start: i64,
    step: i64,
    /// How many values (at most 2^64).
    len: u128,
    num_partitions: usize,
}

impl StepRangeRdd {
    /// A checked range: `step` is not 0 and does not run against `start..end`.
    pub(crate) fn new(start: i64, end: i64, step: i64, num_partitions: usize) -> Self {
        let span = (i128::from(end) - i128::from(start)).unsigned_abs();
        let step_abs = i128::from(step).unsigned_abs();
        StepRangeRdd {
            start,
            step,
            len: span.div_ceil(step_abs),
            num_partitions,
        }
    }
}

impl Compute<i64> for StepRangeRdd {
    fn name(&self) -> &'static str {
        "RangeRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, _tc: &TaskContext) -> Result<BoxedPartitionIter<i64>> {
        let (lo, hi) = split_of(self.len, self.num_partitions, split);
        let (start, step) = (i128::from(self.start), i128::from(self.step));
        // Every value lies between start and end, so it fits in an i64.
        Ok(boxed(
            (lo..hi).map(move |k| (start + k as i128 * step) as i64),
        ))
    }
}
