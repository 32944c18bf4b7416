//! `ZippedWithIndexRdd` (Spark's `ZippedWithIndexRDD`), made by `zip_with_index`: each
//! element paired with its position in the whole RDD.
//!
//! One `OneToOne` dependency; no partitioner. The start index of each partition needs the
//! sizes of the partitions before it: a task that needs them and finds them missing runs a
//! counting job and stores the result (tasks that start together may each run one; the
//! counts are the same, and later tasks and actions reuse the stored ones). Spark runs the
//! job eagerly in the constructor; here it stays lazy, and an error surfaces at the action.

use std::sync::Arc;

use parking_lot::Mutex;

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::Result;
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

pub(crate) struct ZippedWithIndexRdd<T: Data> {
    parent: Rdd<T>,
    starts: Mutex<Option<Arc<Vec<u64>>>>,
}

impl<T: Data> ZippedWithIndexRdd<T> {
    pub(crate) fn new(parent: Rdd<T>) -> Self {
        ZippedWithIndexRdd {
            parent,
            starts: Mutex::new(None),
        }
    }

    fn starts(&self) -> Result<Arc<Vec<u64>>> {
        if let Some(s) = self.starts.lock().clone() {
            return Ok(s);
        }
        let n = self.parent.num_partitions();
        let counts = if n <= 1 {
            vec![0; n]
        } else {
            self.parent.partition_sizes(0..n - 1)?
        };
        let mut starts = Vec::with_capacity(n);
        let mut acc = 0u64;
        starts.push(0);
        for c in counts.into_iter().take(n.saturating_sub(1)) {
            acc += c;
            starts.push(acc);
        }
        starts.truncate(n);
        let starts = Arc::new(starts);
        *self.starts.lock() = Some(starts.clone());
        Ok(starts)
    }
}

impl<T: Data> Compute<(T, u64)> for ZippedWithIndexRdd<T> {
    fn name(&self) -> &'static str {
        "ZippedWithIndexRdd"
    }
    fn num_partitions(&self) -> usize {
        self.parent.num_partitions()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::one_to_one(self.parent.node.clone())]
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<(T, u64)>> {
        let start = self.starts()?[split];
        let input = self.parent.node.iterator(split, tc)?;
        Ok(boxed(input.zip(start..)))
    }
}
