//! Local checkpoints: lineage truncated onto cached blocks; a lost block is an error that
//! says why, never a silent recomputation.

use crate::common;

use common::{ctx, ctx_with_dir, Counter};
use flintlock::{CheckpointState, Error, StorageLevel};

#[test]
fn local_checkpoint_caches_every_partition_and_truncates_the_lineage() {
    let ctx = ctx();
    let calls = Counter::default();
    let rdd = ctx.range(0..100, 4).map(calls.counting(|x| x));
    rdd.local_checkpoint().unwrap();
    assert_eq!(
        rdd.storage_level(),
        StorageLevel::MemoryOnly,
        "persisted if it was not"
    );
    assert_eq!(rdd.take(1).unwrap(), vec![0]);
    assert!(rdd.is_checkpointed());
    assert_eq!(
        rdd.as_base().cached_partitions(),
        4,
        "every partition is in the block store"
    );
    assert_eq!(rdd.dependencies()[0].parent().kind(), "LocalCheckpointRdd");
    assert_eq!(rdd.count().unwrap(), 100);
    let after = calls.get();
    rdd.collect().unwrap();
    assert_eq!(calls.get(), after);
    assert_eq!(rdd.checkpoint_path(), None);
}

#[test]
fn a_lost_block_of_a_local_checkpoint_is_an_error_naming_the_block_and_the_remedy() {
    let ctx = ctx();
    let rdd = ctx.range(0..100, 4).map(|x| x + 1);
    rdd.local_checkpoint().unwrap();
    rdd.count().unwrap();
    assert!(ctx.evict_block(rdd.id(), 2));
    let err = rdd.collect().unwrap_err();
    assert!(
        matches!(err, Error::LocalCheckpointBlockLost { partition: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("rdd_{}_2", rdd.id())) && msg.contains("rdd.checkpoint()"),
        "{msg}"
    );
}

#[test]
fn unpersisting_a_local_checkpoint_loses_its_data_with_a_clear_error() {
    let ctx = ctx();
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    rdd.local_checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.unpersist();
    assert!(matches!(
        rdd.count().unwrap_err(),
        Error::LocalCheckpointBlockLost { .. }
    ));
}

#[test]
fn checkpoint_after_local_checkpoint_keeps_the_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    rdd.local_checkpoint().unwrap();
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    assert!(rdd.is_local_checkpoint());
    assert_eq!(rdd.dependencies()[0].parent().kind(), "LocalCheckpointRdd");
    assert!(common::files_below(dir.path())
        .iter()
        .all(|p| !p.to_string_lossy().contains("rdd-")));
}

#[test]
fn local_checkpoint_before_materialisation_overrides_a_reliable_mark() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    rdd.checkpoint().unwrap();
    rdd.local_checkpoint().unwrap();
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    rdd.count().unwrap();
    assert_eq!(rdd.dependencies()[0].parent().kind(), "LocalCheckpointRdd");
}

#[test]
fn local_checkpoint_after_a_reliable_checkpoint_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.local_checkpoint().unwrap();
    assert_eq!(
        rdd.dependencies()[0].parent().kind(),
        "ReliableCheckpointRdd"
    );
    assert!(!rdd.is_local_checkpoint());
}
