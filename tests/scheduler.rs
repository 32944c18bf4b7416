//! Jobs and stages: stage counts seen through listener events, shuffle reuse, concurrent
//! actions, and panics that fail a task without taking the context down.

use crate::common;

use common::{ctx, Counter, Recorder};
use flintlock::{Error, Event, StageKind};

#[test]
fn a_job_without_shuffles_runs_one_stage() {
    let ctx = ctx();
    let rec = Recorder::attach(&ctx);
    ctx.range(0..100, 4)
        .map(|x| x + 1)
        .filter(|x| x % 2 == 0)
        .count()
        .unwrap();
    assert_eq!(rec.stages_started(), 1);
}

#[test]
fn each_shuffle_adds_one_stage_and_runs_parents_first() {
    let ctx = ctx();
    let rec = Recorder::attach(&ctx);
    let r = ctx
        .range(0..100, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b)
        .map(|(k, v)| (v % 3, k))
        .group_by_key();
    r.count().unwrap();
    let kinds = rec.take_stage_kinds();
    assert_eq!(
        kinds,
        vec![
            StageKind::ShuffleMap,
            StageKind::ShuffleMap,
            StageKind::Result
        ]
    );
}

#[test]
fn shuffle_outputs_still_present_are_reused_by_the_next_job() {
    let ctx = ctx();
    let rec = Recorder::attach(&ctx);
    let calls = Counter::default();
    let r = ctx
        .range(0..50, 2)
        .map(calls.counting(|x| (x % 5, 1)))
        .reduce_by_key(|a, b| a + b);
    assert_eq!(r.count().unwrap(), 5);
    assert_eq!(rec.stages_started(), 2);
    assert_eq!(calls.get(), 50);
    rec.take();
    assert_eq!(r.collect().unwrap().len(), 5);
    assert_eq!(rec.stages_started(), 1, "the map stage is skipped");
    assert_eq!(calls.get(), 50, "the map side did not run again");
}

#[test]
fn task_events_come_in_start_end_pairs_for_every_partition() {
    let ctx = ctx();
    let rec = Recorder::attach(&ctx);
    ctx.range(0..10, 5).count().unwrap();
    let events = rec.take();
    let starts = events
        .iter()
        .filter(|e| matches!(e, Event::TaskStarted { .. }))
        .count();
    let ends = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::TaskEnded {
                    succeeded: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!((starts, ends), (5, 5));
    assert!(matches!(
        events.first(),
        Some(Event::JobStarted { partitions: 5, .. })
    ));
    assert!(matches!(
        events.last(),
        Some(Event::JobEnded {
            succeeded: true,
            ..
        })
    ));
}

#[test]
fn a_panic_in_a_closure_fails_the_job_with_task_failed_and_the_context_stays_usable() {
    let ctx = ctx();
    let rdd = ctx.range(0..10, 2).map(|x| {
        if x == 7 {
            panic!("boom at {x}");
        }
        x
    });
    let err = rdd.count().unwrap_err();
    match &err {
        Error::TaskFailed {
            rdd_id,
            partition,
            message,
            rdd: name,
        } => {
            assert_eq!(*rdd_id, rdd.id());
            assert_eq!(*partition, 1);
            assert!(message.contains("boom at 7"), "{message}");
            assert!(name.contains("MapPartitionsRdd"), "{name}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("boom at 7"));
    // The same context runs the next job.
    assert_eq!(ctx.range(0..10, 2).count().unwrap(), 10);
}

#[test]
fn a_panic_in_a_map_stage_fails_the_job_and_a_later_job_succeeds() {
    let ctx = ctx();
    let bad = ctx.range(0..10, 2).map(|x| -> (u64, u64) {
        if x == 3 {
            panic!("map side")
        } else {
            (x, x)
        }
    });
    let err = bad.reduce_by_key(|a, b| a + b).count().unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert_eq!(
        ctx.range(0..10, 2)
            .map(|x| (x % 2, x))
            .reduce_by_key(|a, b| a + b)
            .count()
            .unwrap(),
        2
    );
}

#[test]
fn several_threads_can_run_actions_on_one_context_at_once() {
    let ctx = ctx();
    let shared = ctx
        .range(0..10_000, 8)
        .map(|x| (x % 100, x))
        .reduce_by_key(|a, b| a + b);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let shared = shared.clone();
                let ctx = ctx.clone();
                s.spawn(move || {
                    assert_eq!(shared.count().unwrap(), 100);
                    assert_eq!(
                        ctx.range(0..1000 * (i + 1), 3).count().unwrap(),
                        1000 * (i + 1)
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn a_zero_thread_context_is_an_invalid_argument() {
    let err = flintlock::Context::builder()
        .threads(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}
