//! Local checkpoints: lineage truncated onto cached blocks (Spark's `LocalCheckpointRDD`).
//!
//! `LocalCheckpointRdd`: no dependencies; keeps the partitioner. Fast (nothing is written to
//! disk) but not fault tolerant: a lost block cannot be recomputed, because the lineage that
//! could recompute it is gone. This RDD exists to say so clearly.

use std::sync::Arc;

use super::CheckpointCell;
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::rdd::node::{ArcVecIter, BoxedPartitionIter, CallSite, Compute, RddNode};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

/// Serves the blocks of the locally checkpointed RDD `rdd_id`.
pub(crate) struct LocalCheckpointRdd {
    rdd_id: usize,
    num_partitions: usize,
    partitioner: Option<Partitioner>,
}

impl<T: Data> Compute<T> for LocalCheckpointRdd {
    fn name(&self) -> &'static str {
        "LocalCheckpointRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn partitioner(&self) -> Option<Partitioner> {
        self.partitioner.clone()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let inner = &tc.context().inner;
        match inner.blocks.get::<T>(self.rdd_id, split, &inner.memory) {
            Some(Ok(block)) => Ok(Box::new(ArcVecIter::new(block))),
            Some(Err(e)) => Err(e),
            None => Err(Error::LocalCheckpointBlockLost {
                rdd_id: self.rdd_id,
                partition: split,
            }),
        }
    }
}

/// The checkpoint RDD that replaces a locally checkpointed node's lineage.
pub(crate) fn checkpoint_rdd<T: Data>(node: &RddNode<T>, site: CallSite) -> Rdd<T> {
    let rdd = LocalCheckpointRdd {
        rdd_id: node.id,
        num_partitions: node.num_partitions,
        partitioner: node.partitioner.clone(),
    };
    let mut n = RddNode::new(node.ctx.clone(), site, Arc::new(rdd));
    n.checkpoint = CheckpointCell::for_checkpoint_node(None);
    Rdd::from_node(n)
}
