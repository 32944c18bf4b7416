//! No panic strands an RDD InProgress or changes an action's outcome behind its back
//! (DESIGN §4, issue 9 items 10 and 11): listeners, `Serialize`, `Hash` and `Ord` impls, and
//! storage backends may panic; the RDD goes back to Marked with its lineage, and the next
//! action retries.

use crate::common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use flintlock::checkpoint::StorageOp;
use flintlock::{CheckpointState, Context, Error, Event};
use serde::{Deserialize, Serialize};

#[test]
fn a_listener_that_panics_on_every_event_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    ctx.add_listener(move |_: &Event| {
        c.fetch_add(1, Ordering::SeqCst);
        panic!("listener bug");
    });
    let rdd = ctx.range(0..100, 4).map(|x| x + 1);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 100);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
    assert_eq!(rdd.collect().unwrap(), (1..=100).collect::<Vec<_>>());
    assert!(calls.load(Ordering::SeqCst) > 10, "it kept being called");
}

#[test]
fn a_listener_may_add_listeners_and_run_jobs() {
    let ctx = common::ctx();
    let (done, finished) = mpsc::channel();
    let inner_ctx = ctx.clone();
    let added = Arc::new(AtomicBool::new(false));
    let a = added.clone();
    ctx.add_listener(move |e: &Event| {
        if let Event::JobEnded { .. } = e
            && !a.swap(true, Ordering::SeqCst)
        {
            inner_ctx.add_listener(|_: &Event| {});
            // A job from inside a listener.
            assert_eq!(inner_ctx.range(0..3, 1).count().unwrap(), 3);
        }
    });
    let worker = std::thread::spawn(move || {
        let n = ctx.range(0..10, 2).count().unwrap();
        done.send(n).unwrap();
    });
    let n = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("no deadlock: the job finished");
    assert_eq!(n, 10);
    worker.join().unwrap();
    assert!(added.load(Ordering::SeqCst));
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct PanicsOnSerialize(u32);

impl Serialize for PanicsOnSerialize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            panic!("Serialize panicked at 13");
        }
        s.serialize_u32(self.0)
    }
}

#[test]
fn a_panicking_serialize_returns_the_rdd_to_marked() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.range(0..20, 2).map(|x| PanicsOnSerialize(x as u32));
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    rdd.cancel_checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 20);
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PanicsOnHash(u64);

impl Hash for PanicsOnHash {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if self.0 == 5 {
            panic!("Hash panicked at 5");
        }
        self.0.hash(h);
    }
}

#[test]
fn a_panicking_partitioner_key_returns_the_rdd_to_marked() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let pairs = ctx.range(0..10, 2).map(|x| (PanicsOnHash(x), x));
    let grouped = pairs.reduce_by_key(|a, b| a + b);
    grouped.checkpoint().unwrap();
    assert!(grouped.count().is_err());
    assert_eq!(grouped.checkpoint_state(), CheckpointState::Marked);
}

/// A storage that panics at the manifest's rename while `armed`.
fn panics_at_commit(armed: &Arc<AtomicBool>) -> common::hooked::Hooked {
    let armed = armed.clone();
    common::hooked::Hooked::new(move |op, to| {
        if op == StorageOp::Rename && armed.load(Ordering::SeqCst) && to.ends_with("_manifest.json")
        {
            panic!("storage backend bug at commit");
        }
    })
}

#[test]
fn a_panic_in_the_commit_outside_any_task_returns_the_rdd_to_marked() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_storage(panics_at_commit(&armed))
        .build()
        .unwrap();
    let rdd = ctx.range(0..10, 2).map(|x| x * 3);
    rdd.checkpoint().unwrap();
    armed.store(true, Ordering::SeqCst);
    let err = rdd.count().unwrap_err();
    assert!(
        matches!(&err, Error::JobPanicked { message, .. } if message.contains("storage backend bug")),
        "{err}"
    );
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    armed.store(false, Ordering::SeqCst);
    assert_eq!(rdd.count().unwrap(), 10);
    assert!(rdd.is_checkpointed());
    assert_eq!(
        rdd.collect().unwrap(),
        (0..10).map(|x| x * 3).collect::<Vec<_>>()
    );
}

/// An `Ord` that panics on one value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct PanicsOnOrd(u32);

impl PartialOrd for PanicsOnOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PanicsOnOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == 77 || other.0 == 77 {
            panic!("Ord panicked at 77");
        }
        self.0.cmp(&other.0)
    }
}

#[test]
fn sort_by_key_reports_a_panicking_ord_from_the_action_not_the_call() {
    let ctx = common::ctx();
    let pairs = ctx.parallelize((0..200u32).map(|k| (PanicsOnOrd(k), k)).collect(), 4);
    let sorted = pairs.sort_by_key(true); // must not panic here
    assert_eq!(sorted.num_partitions(), 4);
    let err = sorted.collect().unwrap_err();
    assert!(err.to_string().contains("Ord panicked at 77"), "{err}");
}

#[test]
fn sort_by_key_reports_a_failed_sampling_job_instead_of_fewer_partitions() {
    let ctx = common::ctx();
    let pairs = ctx.range(0..100, 4).map(|k| {
        if k == 50 {
            panic!("bad record {k}")
        } else {
            (k, k)
        }
    });
    let sorted = pairs.sort_by_key_into(true, 4);
    assert_eq!(sorted.num_partitions(), 4, "the partitions asked for");
    let err = sorted.count().unwrap_err();
    assert!(err.to_string().contains("bad record 50"), "{err}");
    // Every action reports it.
    assert!(sorted.collect().is_err());
}

/// Panics when dropped (outside a panic): a user closure that owns one panics when its
/// lineage is released after the checkpoint commits.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("dropped a closure that panics in Drop");
        }
    }
}

#[test]
fn a_panic_while_releasing_the_lineage_never_loses_the_committed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let bomb = PanicsOnDrop;
    let rdd = ctx.range(0..100, 2).map(move |x| {
        let _ = &bomb;
        x + 1
    });
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 100);
    assert!(rdd.is_checkpointed());
    assert!(rdd
        .checkpoint_path()
        .unwrap()
        .join("_manifest.json")
        .exists());
    assert_eq!(rdd.collect().unwrap(), (1..=100).collect::<Vec<_>>());
}

/// A key whose `Eq` panics ("merge panicked" in the message, as the test below expects):
/// only the driver ever compares two of them there.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PanicsOnEq(u32);

impl Hash for PanicsOnEq {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialEq for PanicsOnEq {
    fn eq(&self, _: &Self) -> bool {
        panic!("Eq called: the merge panicked")
    }
}

impl Eq for PanicsOnEq {}

/// Asserts that `result` is the driver-side merge's panic, as an error.
fn assert_driver_panic<R: std::fmt::Debug>(what: &str, result: flintlock::Result<R>) {
    match result {
        Err(Error::JobPanicked { message, .. }) => assert!(
            message.contains("on the driver") && message.contains("merge panicked"),
            "{what}: {message}"
        ),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn a_panic_while_the_partitions_results_are_merged_is_an_error_like_a_task_panic() {
    let ctx = common::ctx();
    // One element per partition: the tasks never call the combining functions, the driver
    // does when it merges the partitions' results.
    let one_each = ctx.range(1..5, 4);
    let merge = |a: u64, b: u64| -> u64 {
        if a != 0 && b != 0 {
            panic!("merge panicked on {a} and {b}");
        }
        a + b
    };
    assert_driver_panic("reduce", one_each.reduce(merge));
    assert_driver_panic("fold", one_each.fold(0, merge));
    assert_driver_panic("aggregate", one_each.aggregate(0u64, |a, x| a + x, merge));
    assert_driver_panic("tree_reduce", one_each.tree_reduce(merge, 2));
    // `Ord` and `Hash` impls the driver calls: the top-n merge and the map of counts.
    let ord = ctx.parallelize(vec![PanicsOnOrd(76), PanicsOnOrd(77)], 2);
    match ord.take_ordered(2) {
        Err(Error::JobPanicked { message, .. }) => {
            assert!(message.contains("Ord panicked at 77"), "{message}")
        }
        other => panic!("take_ordered: {other:?}"),
    }
    // An `Eq` the driver's map calls: one equal key in each of two partitions (each task's
    // map holds one key, so only the driver compares two).
    let equal_keys = ctx.parallelize(vec![PanicsOnEq(1), PanicsOnEq(1)], 2);
    assert_driver_panic("count_by_value", equal_keys.count_by_value());
    let equal_pairs = ctx.parallelize(vec![(PanicsOnEq(1), 1), (PanicsOnEq(1), 2)], 2);
    assert_driver_panic("collect_as_map", equal_pairs.collect_as_map());
    // The same functions where they do not panic: the results are what they were.
    assert_eq!(ctx.range(0..5, 4).reduce(|a, b| a + b).unwrap(), Some(10));
    assert_eq!(ctx.range(0..5, 4).fold(0, |a, b| a + b).unwrap(), 10);
    // The context goes on: the next job runs.
    assert_eq!(one_each.count().unwrap(), 4);
}
