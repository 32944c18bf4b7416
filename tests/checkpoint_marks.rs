//! Marks can be taken back, and state and messages agree (issue 9 item 12).

use crate::common;

use flintlock::{CheckpointState, Error, Event, StorageLevel};

#[test]
fn cancel_checkpoint_returns_a_marked_rdd_to_initialized() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let events = common::Recorder::attach(&ctx);
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    rdd.cancel_checkpoint().unwrap(); // not marked: a no-op
    rdd.checkpoint().unwrap();
    rdd.cancel_checkpoint().unwrap();
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Initialized);
    assert_eq!(rdd.count().unwrap(), 10);
    assert!(!rdd.is_checkpointed());
    assert!(events.take().iter().any(|e| matches!(
        e,
        Event::CheckpointStateChanged {
            from: CheckpointState::Marked,
            to: CheckpointState::Initialized,
            ..
        }
    )));
    // It can be marked again, and then checkpoints.
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    assert!(rdd.is_checkpointed());
    let err = rdd.cancel_checkpoint().unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCheckpointState {
                state: CheckpointState::Checkpointed,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cancelling_a_local_checkpoint_undoes_the_persist_it_made() {
    let ctx = common::ctx();
    let rdd = ctx.range(0..10, 2);
    rdd.local_checkpoint().unwrap();
    assert_eq!(rdd.storage_level(), StorageLevel::MemoryOnly);
    rdd.cancel_checkpoint().unwrap();
    assert_eq!(rdd.storage_level(), StorageLevel::None);
    assert!(!rdd.is_local_checkpoint());
    // A persist the user made stays, before the mark or after it.
    let cached = ctx.range(0..10, 2).cache();
    cached.local_checkpoint().unwrap();
    cached.cancel_checkpoint().unwrap();
    assert_eq!(cached.storage_level(), StorageLevel::MemoryOnly);
    let later = ctx.range(0..10, 2);
    later.local_checkpoint().unwrap();
    later.cache();
    later.cancel_checkpoint().unwrap();
    assert_eq!(later.storage_level(), StorageLevel::MemoryOnly);
}

#[test]
fn local_checkpoint_then_unpersist_says_what_happened_and_keeps_the_lineage() {
    let ctx = common::ctx();
    let rdd = ctx.range(0..10, 2).map(|x| x * 2);
    rdd.local_checkpoint().unwrap();
    rdd.unpersist();
    let err = rdd.count().unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::InvalidCheckpointState {
                state: CheckpointState::Marked,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("unpersisted") && msg.contains("lineage is intact"),
        "{msg}"
    );
    assert!(!msg.contains("truncated"), "{msg}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert_eq!(rdd.lineage_depth(), 1);
    // Persisting again lets the next action take the local checkpoint.
    rdd.cache();
    assert_eq!(rdd.count().unwrap(), 10);
    assert!(rdd.is_checkpointed());
}

#[test]
fn checkpoint_after_local_checkpoint_says_it_keeps_the_local_one() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let events = common::Recorder::attach(&ctx);
    let rdd = ctx.range(0..10, 2);
    rdd.local_checkpoint().unwrap();
    rdd.checkpoint().unwrap();
    let ignored: Vec<String> = events.take_matching(|e| match e {
        Event::CheckpointRequestIgnored { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(ignored.len(), 1);
    assert!(ignored[0].contains("local"), "{}", ignored[0]);
    rdd.count().unwrap();
    assert!(rdd.is_local_checkpoint());
    assert!(rdd.checkpoint_path().is_none());
}
