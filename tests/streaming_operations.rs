//! DStream operations compute, batch by batch, what the same computation on plain vectors
//! gives; misuse (duplicate or invalid names, streams of two contexts, state without a
//! checkpoint folder) is a clear error; clocks and stops behave as documented.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flintlock::streaming::{Batch, DStream, ManualClock, RddQueue, StreamingContext, Until};
use flintlock::{Context, Data, Error};
use proptest::prelude::*;

type Collected<T> = Arc<Mutex<Vec<(u64, Vec<T>)>>>;

/// Collects every batch of `stream` (sorted) under output name `name`.
fn collect<T: Data + Ord>(stream: &DStream<T>, name: &str) -> Collected<T> {
    let seen: Collected<T> = Arc::default();
    let out = seen.clone();
    stream.foreach_rdd(name, move |rdd, batch| {
        let mut v = rdd.collect()?;
        v.sort();
        out.lock().unwrap().push((batch.id, v));
        Ok(())
    });
    seen
}

fn ssc(ctx: &Context) -> StreamingContext {
    StreamingContext::new(ctx, Duration::from_millis(500)).clock(ManualClock::auto())
}

fn queue_of(ctx: &Context, batches: &[Vec<u64>]) -> RddQueue<u64> {
    RddQueue::from_rdds(batches.iter().map(|b| ctx.parallelize(b.clone(), 3)))
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every stateless operation equals the same computation on the batch's vector.
    #[test]
    fn stateless_operations_match_vectors(
        batches in prop::collection::vec(prop::collection::vec(0u64..50, 0..40), 1..6)
    ) {
        let ctx = common::ctx();
        let mut s = ssc(&ctx);
        let q = queue_of(&ctx, &batches);
        let other = queue_of(&ctx, &batches.iter().map(|b| b.iter().map(|x| x + 1000).collect()).collect::<Vec<_>>());
        let nums = s.queue_stream("nums", q);
        let more = s.queue_stream("more", other);
        let mapped = collect(&nums.map(|x| x * 3), "map");
        let flat = collect(&nums.flat_map(|x| vec![x; (x % 3) as usize]), "flat_map");
        let filtered = collect(&nums.filter(|x| x % 2 == 0), "filter");
        let pairs = nums.map(|x| (x % 5, x));
        let mv = collect(&pairs.map_values(|v| v + 1), "map_values");
        let reduced = collect(&pairs.reduce_by_key(|a, b| a + b), "reduce_by_key");
        let unioned = collect(&nums.union(&more), "union");
        let counted = collect(&nums.count(), "count");
        let transformed = collect(
            &nums.transform(|rdd, batch: Batch| rdd.map(move |x| x + batch.id)),
            "transform",
        );
        s.run(Until::Batches(batches.len() as u64)).unwrap();
        for (b, input) in batches.iter().enumerate() {
            let b64 = b as u64;
            let at = |c: &Collected<u64>| c.lock().unwrap()[b].clone();
            prop_assert_eq!(at(&mapped), (b64, sorted(input.iter().map(|x| x * 3).collect())));
            prop_assert_eq!(at(&flat), (b64, sorted(input.iter().flat_map(|&x| vec![x; (x % 3) as usize]).collect())));
            prop_assert_eq!(at(&filtered), (b64, sorted(input.iter().copied().filter(|x| x % 2 == 0).collect())));
            prop_assert_eq!(at(&counted), (b64, vec![input.len() as u64]));
            prop_assert_eq!(at(&transformed), (b64, sorted(input.iter().map(|x| x + b64).collect())));
            let mut u: Vec<u64> = input.clone();
            u.extend(input.iter().map(|x| x + 1000));
            prop_assert_eq!(at(&unioned), (b64, sorted(u)));
            let mvs = mv.lock().unwrap()[b].clone();
            prop_assert_eq!(mvs, (b64, sorted(input.iter().map(|&x| (x % 5, x + 1)).collect())));
            let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
            for &x in input {
                *sums.entry(x % 5).or_default() += x;
            }
            let red = reduced.lock().unwrap()[b].clone();
            prop_assert_eq!(red, (b64, sums.into_iter().collect::<Vec<_>>()));
        }
    }

    /// `update_state_by_key` equals the model after every batch, whatever the
    /// checkpoint interval and partition count.
    #[test]
    fn update_state_by_key_matches_the_model(seed in any::<u64>(), every in 1u32..5, partitions in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = common::ctx();
        let batches = 12;
        let mut wc = common::stream::WordCount::new(seed, batches, every);
        wc.partitions = partitions;
        let out = dir.path().join("out");
        let (mut s, _) = StreamingContext::get_or_create(&ctx, dir.path().join("ckpt"), |ctx| wc.build(ctx, &out)).unwrap();
        s.run(Until::Batches(batches)).unwrap();
        let model = common::stream::model(seed, batches);
        for b in 0..batches {
            prop_assert_eq!(common::stream::sink_lines(&out, b), Some(common::stream::lines_of(&model[b as usize])));
        }
    }
}

#[test]
fn an_initial_state_is_the_state_before_the_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    s.checkpoint(dir.path()).unwrap();
    let q = RddQueue::from_rdds([ctx.parallelize(vec![("a".to_string(), 1u64)], 1)]);
    let initial = ctx.parallelize(vec![("a".to_string(), 10u64), ("z".to_string(), 5)], 2);
    let state = s
        .queue_stream("in", q)
        .update_state_by_key("sum", |_, new: Vec<u64>, old: Option<u64>| {
            Some(old.unwrap_or(0) + new.iter().sum::<u64>())
        })
        .initial_state(initial);
    let seen = collect(&state.stream(), "show");
    s.run(Until::Batches(2)).unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected = vec![("a".to_string(), 11), ("z".to_string(), 5)];
    assert_eq!(seen[0], (0, expected.clone()));
    assert_eq!(seen[1], (1, expected));
}

#[test]
fn state_without_a_checkpoint_folder_is_an_error_naming_the_operator() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = RddQueue::from_rdds([ctx.parallelize(vec![(1u64, 1u64)], 1)]);
    let _state = s
        .queue_stream("in", q)
        .update_state_by_key("totals", |_, new: Vec<u64>, old: Option<u64>| {
            Some(old.unwrap_or(0) + new.len() as u64)
        });
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("`totals`"), "{err}");
    assert!(err.to_string().contains("checkpoint"), "{err}");
}

#[test]
fn duplicate_names_are_an_error_at_start() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let a = s.queue_stream("same", RddQueue::<u64>::new());
    a.foreach_rdd("same", |_, _| Ok(()));
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(err.to_string().contains("named `same`"), "{err}");
}

#[test]
#[should_panic(expected = "invalid stream operator name")]
fn a_name_that_cannot_name_a_folder_panics_at_the_call() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let _ = s.queue_stream("../escape", RddQueue::<u64>::new());
}

#[test]
#[should_panic(expected = "different StreamingContexts")]
fn streams_of_two_contexts_do_not_mix() {
    let ctx = common::ctx();
    let mut a = ssc(&ctx);
    let mut b = ssc(&ctx);
    let x = a.queue_stream("x", RddQueue::<u64>::new());
    let y = b.queue_stream("y", RddQueue::<u64>::new());
    let _ = x.union(&y);
}

#[test]
#[should_panic(expected = "graph is fixed")]
fn the_graph_is_fixed_once_the_stream_started() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let x = s.queue_stream("x", RddQueue::<u64>::new());
    x.foreach_rdd("out", |_, _| Ok(()));
    s.run(Until::Batches(1)).unwrap();
    let _ = x.map(|v| v + 1);
}

#[test]
fn chained_stateful_operators_must_checkpoint_together() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    s.checkpoint(dir.path()).unwrap();
    let first = s
        .queue_stream("in", RddQueue::<(u64, u64)>::new())
        .update_state_by_key("first", |_, _: Vec<u64>, old: Option<u64>| old)
        .checkpoint_every(5);
    let _second = first
        .update_state_by_key("second", |_, _: Vec<u64>, old: Option<u64>| old)
        .checkpoint_every(3);
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(
        err.to_string().contains("5 ≠ 3") || err.to_string().contains("3 ≠ 5"),
        "{err}"
    );
}

#[test]
fn an_output_error_fails_the_batch_and_a_second_run_retries_it_with_the_same_input() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1, 2], vec![3]]);
    let fail_once = Arc::new(Mutex::new(true));
    let seen: Collected<u64> = Arc::default();
    let (flag, out) = (fail_once.clone(), seen.clone());
    s.queue_stream("in", q)
        .foreach_rdd("out", move |rdd, batch| {
            out.lock().unwrap().push((batch.id, sorted(rdd.collect()?)));
            if std::mem::take(&mut *flag.lock().unwrap()) {
                return Err(Error::InvalidArgument("the store is down".into()));
            }
            Ok(())
        });
    let err = s.run(Until::Batches(2)).unwrap_err();
    assert!(err.to_string().contains("the store is down"));
    assert_eq!(s.last_committed(), None);
    s.run(Until::Batches(2)).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, vec![1, 2]), (0, vec![1, 2]), (1, vec![3])],
        "at-least-once: batch 0 ran again with the same input"
    );
    assert_eq!(s.last_committed(), Some(1));
}

#[test]
fn a_panicking_closure_fails_the_batch_without_committing_it() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1, 2, 3]]);
    s.queue_stream("in", q)
        .map(|x| if x == 2 { panic!("bad record {x}") } else { x })
        .foreach_rdd("out", |rdd, _| rdd.count().map(drop));
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(err.to_string().contains("bad record 2"), "{err}");
    assert_eq!(s.last_committed(), None);
}

#[test]
fn a_graceful_stop_from_an_output_commits_the_batch_and_returns() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1], vec![2], vec![3]]);
    let stop = s.stop_handle();
    let seen = collect(&s.queue_stream("in", q), "out");
    let stopper = s.queue_stream("never", RddQueue::<u64>::new());
    stopper.foreach_rdd("stopper", move |_, batch| {
        if batch.id == 1 {
            stop.stop(true);
        }
        Ok(())
    });
    s.run(Until::Stopped).unwrap();
    assert_eq!(
        s.last_committed(),
        Some(1),
        "batch 1 finished and committed"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_hard_stop_abandons_the_batch_and_the_next_run_redoes_it() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1], vec![2]]);
    let stop = s.stop_handle();
    let input = s.queue_stream("in", q);
    let once = std::sync::atomic::AtomicBool::new(true);
    input.foreach_rdd("stopper", move |_, batch| {
        if batch.id == 1 && once.swap(false, std::sync::atomic::Ordering::SeqCst) {
            stop.stop(false);
        }
        Ok(())
    });
    let after = collect(&input, "after");
    s.run(Until::Stopped).unwrap();
    assert_eq!(s.last_committed(), Some(0), "batch 1 was abandoned");
    assert_eq!(
        after.lock().unwrap().len(),
        1,
        "the output after the stop did not run"
    );
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(s.last_committed(), Some(1));
    assert_eq!(after.lock().unwrap()[1], (1, vec![2]));
}

#[test]
fn a_manual_clock_runs_a_batch_only_when_its_time_comes() {
    let ctx = common::ctx();
    let clock = ManualClock::new();
    let mut s = StreamingContext::new(&ctx, Duration::from_secs(10)).clock(clock.clone());
    let q = queue_of(&ctx, &[vec![1], vec![2], vec![3]]);
    let seen = collect(&s.queue_stream("in", q), "out");
    let stop = s.stop_handle();
    let runner = std::thread::spawn(move || {
        s.run(Until::Stopped).unwrap();
        s
    });
    let wait_for = |n: usize| {
        for _ in 0..500 {
            if seen.lock().unwrap().len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("batch {n} never ran");
    };
    wait_for(1); // batch 0 is due at time zero
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(seen.lock().unwrap().len(), 1, "batch 1 waits for the clock");
    clock.advance(Duration::from_secs(10));
    wait_for(2);
    clock.advance(Duration::from_secs(9));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "9 s is not yet batch 2's time"
    );
    stop.stop(true);
    let s = runner.join().unwrap();
    assert_eq!(s.last_committed(), Some(1));
    assert_eq!(seen.lock().unwrap()[1], (1, vec![2]));
}

#[test]
fn an_empty_queue_gives_empty_batches() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let seen = collect(&s.queue_stream("in", RddQueue::<u64>::new()).count(), "out");
    s.run(Until::Batches(3)).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, vec![0]), (1, vec![0]), (2, vec![0])]
    );
}

#[test]
fn a_hard_stop_raised_by_the_last_output_abandons_the_batch_too() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1], vec![2]]);
    let stop = s.stop_handle();
    let once = std::sync::atomic::AtomicBool::new(true);
    s.queue_stream("in", q)
        .foreach_rdd("last", move |_, batch| {
            if batch.id == 1 && once.swap(false, std::sync::atomic::Ordering::SeqCst) {
                stop.stop(false);
            }
            Ok(())
        });
    s.run(Until::Stopped).unwrap();
    assert_eq!(s.last_committed(), Some(0), "batch 1 was abandoned");
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(s.last_committed(), Some(1));
}

#[test]
fn a_stop_raised_in_a_run_that_reached_its_count_does_not_end_the_next_run() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = queue_of(&ctx, &[vec![1], vec![2], vec![3], vec![4], vec![5]]);
    let stop = s.stop_handle();
    s.queue_stream("in", q)
        .foreach_rdd("stopper", move |_, batch| {
            if batch.id == 1 {
                stop.stop(true);
            }
            Ok(())
        });
    s.run(Until::Batches(2)).unwrap();
    assert_eq!(s.last_committed(), Some(1));
    s.run(Until::Batches(3)).unwrap();
    assert_eq!(s.last_committed(), Some(4));
}

#[test]
#[should_panic(expected = "at most u64::MAX nanoseconds")]
fn an_interval_past_what_nanoseconds_record_panics_at_the_call() {
    let ctx = common::ctx();
    let _ = StreamingContext::new(&ctx, Duration::MAX);
}

#[test]
fn a_batch_time_past_what_nanoseconds_record_is_an_error_not_a_wrap() {
    let ctx = common::ctx();
    let year = Duration::from_secs(365 * 24 * 3600);
    let mut s = StreamingContext::new(&ctx, year * 250).clock(ManualClock::auto());
    let seen = collect(&s.queue_stream("in", RddQueue::<u64>::new()), "out");
    let err = s.run(Until::Batches(5)).unwrap_err();
    assert!(
        err.to_string().contains("batch 3's time overflows"),
        "{err}"
    );
    assert_eq!(s.last_committed(), Some(2));
    let times: Vec<u64> = seen.lock().unwrap().iter().map(|(b, _)| *b).collect();
    assert_eq!(times, vec![0, 1, 2]);
}

#[test]
fn a_file_sink_refuses_elements_that_span_lines() {
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let mut s = ssc(&ctx);
    let q = RddQueue::from_rdds([ctx.parallelize(vec!["a".to_string(), "b\nc".to_string()], 1)]);
    s.queue_stream("in", q)
        .sink("out", flintlock::streaming::FileSink::new(dir.path()));
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(err.to_string().contains("line break"), "{err}");
    assert_eq!(s.last_committed(), None);
    assert_eq!(
        flintlock::streaming::FileSink::new(dir.path())
            .read_batch(0)
            .unwrap(),
        None
    );
}

#[test]
fn a_file_sink_on_an_s3_path_is_refused_not_written_to_a_local_folder_named_s3() {
    use flintlock::streaming::{FileSink, Sink};
    let cwd = std::env::current_dir().unwrap();
    let sink = FileSink::new("s3://bucket/out");
    match Sink::<String>::last_committed(&sink) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("locks"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(
        !cwd.join("s3:").exists(),
        "a local folder named s3: was made"
    );
}
