//! A failed checkpoint write never poisons the RDD (unlike Spark): the attempt's files are
//! removed, the state goes back to Marked with the lineage intact, the action returns the
//! error, and the next action retries and succeeds. Faults are injected through the storage
//! seam.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{files_below, temp_files};
use flintlock::checkpoint::{FaultyStorage, LocalFs, StorageOp};
use flintlock::{CheckpointState, Context, Error};
use serde::{Deserialize, Serialize};

fn faulty_ctx(dir: &std::path::Path) -> (Context, Arc<FaultyStorage>) {
    let storage = FaultyStorage::new(Arc::new(LocalFs));
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir)
        .checkpoint_storage(storage.clone())
        .build()
        .unwrap();
    (ctx, storage)
}

/// Fails the k-th operation of `op` for k = 1, 2, ... until a write completes without the
/// fault being reached; checks every failed attempt left nothing behind.
fn sweep(op: StorageOp) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, storage) = faulty_ctx(dir.path());
    let rdd = ctx
        .range(0..1000, 3)
        .map(|x| (x % 13, x))
        .reduce_by_key(|a, b| a + b);
    let mut expected = rdd.collect().unwrap();
    expected.sort();
    let mut failures = 0;
    for k in 1.. {
        storage.fail_nth(op, k, std::io::ErrorKind::Other);
        rdd.checkpoint().unwrap();
        match rdd.collect() {
            Ok(mut got) => {
                got.sort();
                assert_eq!(got, expected);
                if storage.faults_injected() == failures {
                    assert!(rdd.is_checkpointed(), "{op:?} #{k}");
                    break;
                }
                panic!("{op:?} #{k}: a fault was injected but the action succeeded");
            }
            Err(err) => {
                failures += 1;
                assert!(matches!(err, Error::Io { .. }), "{op:?} #{k}: {err}");
                common::assert_names(&err, dir.path());
                assert_eq!(
                    rdd.checkpoint_state(),
                    CheckpointState::Marked,
                    "{op:?} #{k}"
                );
                let app = dir.path().join(ctx.app_id());
                let left: Vec<_> = files_below(&app)
                    .into_iter()
                    .filter(|p| !p.ends_with(".lock") && !p.ends_with(".flintlock-app"))
                    .collect();
                assert!(left.is_empty(), "{op:?} #{k}: files left: {left:?}");
                // The lineage is intact: still the shuffle, not a checkpoint. (Any action here
                // would retry the checkpoint, which is the point of staying Marked.)
                let deps = rdd.dependencies();
                assert!(deps.len() == 1 && deps[0].is_shuffle(), "{op:?} #{k}");
            }
        }
        storage.clear();
    }
    failures
}

#[test]
fn a_failed_write_at_any_point_leaves_nothing_and_the_next_action_succeeds() {
    assert!(
        sweep(StorageOp::Write) >= 6,
        "header, frame and trailer writes of 3 parts plus the manifest"
    );
}

#[test]
fn a_failed_file_fsync_at_any_point_is_never_trusted() {
    assert_eq!(sweep(StorageOp::Sync), 4, "three parts and the manifest");
}

#[test]
fn a_failed_rename_at_any_point_aborts_the_attempt() {
    assert_eq!(sweep(StorageOp::Rename), 4);
}

#[test]
fn a_failed_folder_fsync_aborts_the_attempt() {
    assert_eq!(
        sweep(StorageOp::SyncDir),
        3,
        "before and after the manifest, then the app folder"
    );
}

#[test]
fn a_failed_create_aborts_the_attempt() {
    assert!(sweep(StorageOp::Create) >= 4);
}

#[test]
fn disk_full_is_reported_with_its_kind_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, storage) = faulty_ctx(dir.path());
    let rdd = ctx.range(0..100, 2);
    rdd.checkpoint().unwrap();
    storage.fail_nth(StorageOp::Write, 2, std::io::ErrorKind::StorageFull);
    let err = rdd.count().unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::StorageFull));
    assert!(
        err.to_string().contains(".tmp") && err.to_string().starts_with("write "),
        "{err}"
    );
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(rdd.count().unwrap(), 100);
    assert!(rdd.is_checkpointed());
}

#[test]
fn a_panicking_closure_during_a_checkpoint_write_leaves_the_rdd_marked() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let armed = Arc::new(AtomicBool::new(true));
    let a = armed.clone();
    let rdd = ctx.range(0..100, 4).map(move |x| {
        if x == 60 && a.load(Ordering::SeqCst) {
            panic!("closure failed");
        }
        x
    });
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert!(temp_files(dir.path()).is_empty());
    assert!(!dir
        .path()
        .join(ctx.app_id())
        .join(format!("rdd-{}", rdd.id()))
        .exists());
    armed.store(false, Ordering::SeqCst);
    assert_eq!(rdd.count().unwrap(), 100);
    assert!(rdd.is_checkpointed());
}

/// A value whose `Serialize` panics for one input.
#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Fragile(u64);

impl Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 42 {
            panic!("cannot serialize 42");
        }
        s.serialize_u64(self.0)
    }
}

#[test]
fn a_panicking_serialize_impl_fails_the_task_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.range(0..100, 2).map(Fragile);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { message, .. } if message.contains("cannot serialize 42")),
        "{err}"
    );
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert!(temp_files(dir.path()).is_empty());
    // The context stays usable.
    assert_eq!(ctx.range(0..5, 1).count().unwrap(), 5);
}

/// A key whose `Hash` panics for one value: a failing partitioner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct BadKey(u64);

impl std::hash::Hash for BadKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if self.0 == 7 {
            panic!("cannot hash 7");
        }
        self.0.hash(h);
    }
}

#[test]
fn a_panicking_partitioner_during_a_checkpoint_write_fails_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let pairs = ctx.range(0..10, 2).map(|x| (BadKey(x), x));
    pairs.checkpoint().unwrap();
    let err = pairs
        .partition_by(flintlock::Partitioner::hash(3))
        .count()
        .unwrap_err();
    assert!(
        matches!(&err, Error::TaskFailed { message, .. } if message.contains("cannot hash 7")),
        "{err}"
    );
    assert_eq!(pairs.checkpoint_state(), CheckpointState::Marked);
    assert!(temp_files(dir.path()).is_empty());
    assert_eq!(
        pairs.count().unwrap(),
        10,
        "the checkpoint itself does not hash keys"
    );
    assert!(pairs.is_checkpointed());
}

/// Fails the k-th storage operation of any kind (once, or from then on) for k = 1, 2, ...
/// until a write completes without reaching the fault.
fn sweep_any(persistent: bool) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, storage) = faulty_ctx(dir.path());
    let app = dir.path().join(ctx.app_id());
    let rdd = ctx
        .range(0..500, 3)
        .map(|x| (x % 7, x))
        .reduce_by_key(|a, b| a + b);
    let mut expected = rdd.collect().unwrap();
    expected.sort();
    let mut failures = 0;
    for k in 1.. {
        if persistent {
            storage.fail_from(k, std::io::ErrorKind::Other);
        } else {
            storage.fail_any(k, std::io::ErrorKind::Other);
        }
        rdd.checkpoint().unwrap();
        let before = storage.faults_injected();
        let result = rdd.collect();
        storage.clear();
        match result {
            Ok(mut got) if storage.faults_injected() == before => {
                got.sort();
                assert_eq!(got, expected);
                assert!(rdd.is_checkpointed());
                break;
            }
            Ok(_) => panic!("#{k}: a fault was injected but the action succeeded"),
            Err(err) => {
                failures += 1;
                let msg = err.to_string();
                assert!(matches!(err, Error::Io { .. }), "#{k}: {msg}");
                common::assert_names(&err, dir.path());
                assert!(msg.contains("injected fault"), "#{k}: {msg}");
                assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked, "#{k}");
                let left: Vec<_> = files_below(&app)
                    .into_iter()
                    .filter(|p| !p.ends_with(".lock") && !p.ends_with(".flintlock-app"))
                    .collect();
                assert!(left.is_empty(), "#{k}: files left: {left:?}");
            }
        }
    }
    failures
}

#[test]
fn an_io_error_at_any_single_operation_leaves_nothing_and_the_next_action_succeeds() {
    assert!(
        sweep_any(false) >= 15,
        "every operation of a 3-part write was failed once"
    );
}

#[test]
fn a_storage_that_fails_from_any_operation_on_leaves_nothing_and_recovers() {
    assert!(sweep_any(true) >= 15);
}

#[test]
fn a_checkpoint_costs_one_fsync_per_part_plus_the_manifest_and_exactly_three_folder_fsyncs() {
    // Its own folder twice (parts renamed, manifest renamed), then the app folder once (the
    // checkpoint folder's entry).
    let dir = tempfile::tempdir().unwrap();
    let (ctx, storage) = faulty_ctx(dir.path());
    for partitions in [1usize, 4, 7] {
        let rdd = ctx.range(0..100, partitions).map(|x| x + 1);
        rdd.checkpoint().unwrap();
        storage.reset_counts();
        rdd.count().unwrap();
        assert_eq!(
            storage.count(StorageOp::Sync),
            partitions + 1,
            "{partitions} partitions"
        );
        assert_eq!(
            storage.count(StorageOp::SyncDir),
            3,
            "{partitions} partitions"
        );
        assert_eq!(
            storage.count(StorageOp::Rename),
            partitions + 1,
            "each part renamed once"
        );
    }
}
