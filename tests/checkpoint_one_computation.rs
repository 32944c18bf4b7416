//! A checkpoint costs one computation (SPARK-8582): partitions are written while the job
//! computes them, and only unfinished partitions are computed afterwards.

use crate::common;

use common::{ctx_with_dir, Counter, Recorder};
use flintlock::{Event, StageKind};

#[test]
fn checkpoint_then_count_calls_an_uncached_closure_once_per_element() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let calls = Counter::default();
    let rdd = ctx.range(0..1000, 4).map(calls.counting(|x| x * 3));
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 1000);
    assert_eq!(calls.get(), 1000);
    assert!(rdd.is_checkpointed());
    assert_eq!(
        rdd.collect().unwrap(),
        (0..1000).map(|x| x * 3).collect::<Vec<u64>>()
    );
    assert_eq!(calls.get(), 1000, "reads come from the checkpoint");
}

#[test]
fn take_on_a_marked_rdd_leaves_a_complete_checkpoint_computing_only_unfinished_partitions() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let calls = Counter::default();
    let rdd = ctx.range(0..100, 4).map(calls.counting(|x| x));
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.take(1).unwrap(), vec![0]);
    assert!(rdd.is_checkpointed());
    // take(1) pulled one element of partition 0; the completion stage computed all four
    // partitions (partition 0 again, as its write was cut short) and nothing else.
    assert_eq!(calls.get(), 1 + 100);
    let completion_tasks: usize = rec
        .take()
        .iter()
        .filter_map(|e| match e {
            Event::StageStarted {
                kind: StageKind::CheckpointCompletion,
                tasks,
                ..
            } => Some(*tasks),
            _ => None,
        })
        .sum();
    assert_eq!(completion_tasks, 4);
    assert_eq!(rdd.collect().unwrap(), (0..100).collect::<Vec<u64>>());
}

#[test]
fn an_action_over_all_partitions_needs_no_completion_stage() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let rdd = ctx.range(0..100, 4).map(|x| x + 1);
    rdd.checkpoint().unwrap();
    rdd.collect().unwrap();
    assert!(!rec.take().iter().any(|e| matches!(
        e,
        Event::StageStarted {
            kind: StageKind::CheckpointCompletion,
            ..
        }
    )));
}

#[test]
fn first_on_a_marked_shuffled_rdd_does_not_rerun_the_map_side() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let map_calls = Counter::default();
    let reduced = ctx
        .range(0..200, 4)
        .map(map_calls.counting(|x| (x % 10, x)))
        .reduce_by_key(|a, b| a + b);
    reduced.checkpoint().unwrap();
    assert!(reduced.first().unwrap().is_some());
    assert!(reduced.is_checkpointed());
    assert_eq!(map_calls.get(), 200, "the shuffle's map side ran once");
    let mut got = reduced.collect().unwrap();
    got.sort();
    assert_eq!(got.len(), 10);
    assert_eq!(got[0], (0, (0..200).filter(|x| x % 10 == 0).sum::<u64>()));
}

#[test]
fn a_marked_rdd_inside_a_map_stage_is_written_by_the_map_tasks() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let calls = Counter::default();
    let pairs = ctx.range(0..100, 4).map(calls.counting(|x| (x % 7, 1u32)));
    pairs.checkpoint().unwrap();
    let counts = pairs.reduce_by_key(|a, b| a + b);
    assert_eq!(counts.count().unwrap(), 7);
    assert!(pairs.is_checkpointed());
    assert_eq!(calls.get(), 100);
}

/// The partition iterator of an RDD being checkpointed reports its length, so consumers
/// that size tables from it (a join's build side, bucketing) do not grow them from empty.
#[test]
fn a_partition_being_checkpointed_reports_its_length() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.parallelize((0..1000u64).collect(), 4);
    rdd.checkpoint().unwrap();
    let hints = rdd.map_partitions(|it| {
        let hint = it.size_hint();
        std::iter::once((hint, it.count()))
    });
    for ((low, high), len) in hints.collect().unwrap() {
        assert_eq!((low, high), (len, Some(len)));
    }
}
