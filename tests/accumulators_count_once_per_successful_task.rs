//! Accumulators follow Spark's rule: a task's updates count when, and only when, the task
//! succeeds; a retried task counts once; `take` counts what it computed; merges are in
//! partition order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flintlock::accumulator::LongSum;
use flintlock::{Accumulable, Accumulator, CheckpointState, Context, Error, LongAccumulator};
use parking_lot::Mutex;
use proptest::prelude::*;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

/// Keeps the test output readable: the injected panics ("boom", "flaky", "merge is broken")
/// are not printed; every other panic, a failing assertion included, is.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !["boom", "flaky", "merge is broken"]
                .iter()
                .any(|m| msg.contains(m))
            {
                default(info);
            }
        }));
    });
}

#[test]
fn an_action_counts_every_element_once() {
    let ctx = ctx();
    let acc = ctx.long_accumulator("n");
    let sum = ctx.double_accumulator("sum");
    let (a, s) = (acc.clone(), sum.clone());
    ctx.range(0..1000, 7)
        .foreach(move |x| {
            a.add(1);
            s.add(x as f64);
        })
        .unwrap();
    assert_eq!(acc.value(), 1000);
    assert_eq!(acc.count(), 1000);
    assert_eq!(acc.avg(), 1.0);
    assert_eq!(sum.value(), 499_500.0);
    assert_eq!(sum.avg(), 499.5);
    assert_eq!(acc.name(), Some("n"));
    acc.reset();
    assert_eq!(acc.value(), 0);
    assert!(acc.avg().is_nan());
}

#[test]
fn a_collection_accumulator_lists_in_partition_order_on_every_run() {
    let ctx = Context::builder().threads(4).build().unwrap();
    let data: Vec<u32> = (0..5000).collect();
    for _ in 0..5 {
        let acc = ctx.collection_accumulator::<u32>("seen");
        let a = acc.clone();
        ctx.parallelize(data.clone(), 13)
            .foreach(move |x| a.add(x))
            .unwrap();
        assert_eq!(acc.value(), data);
    }
}

#[test]
fn a_failed_task_adds_nothing_and_the_successful_ones_still_count() {
    quiet_panics();
    let ctx = ctx();
    let acc = ctx.long_accumulator("n");
    let a = acc.clone();
    let rdd = ctx.parallelize((0..40).collect::<Vec<i64>>(), 4);
    let err = rdd
        .map_partitions_with_index(move |p, it| {
            let a = a.clone();
            it.inspect(move |&x| {
                a.add(1);
                // Partition 2 fails after 5 of its 10 elements were added.
                assert!(!(p == 2 && x == 25), "boom");
            })
        })
        .foreach(|_| {})
        .unwrap_err();
    assert!(
        matches!(err, Error::TaskFailed { partition: 2, .. }),
        "{err}"
    );
    // Spark merges each successful task's updates; the failed one's half are dropped. The
    // stage may stop before starting every task, so each of the others counts 0 or 10.
    let v = acc.value();
    assert_eq!(v % 10, 0, "a partial task leaked into {v}");
    assert!(v <= 30);
}

#[test]
fn updates_in_a_transformation_count_per_computation_as_in_spark() {
    let ctx = ctx();
    let acc = ctx.long_accumulator("mapped");
    let a = acc.clone();
    let mapped = ctx.range(0..100, 4).map(move |x| {
        a.add(1);
        x
    });
    mapped.count().unwrap();
    mapped.count().unwrap();
    assert_eq!(
        acc.value(),
        200,
        "not cached: computed twice, counted twice"
    );

    acc.reset();
    let cached = mapped.cache();
    cached.count().unwrap();
    cached.count().unwrap();
    assert_eq!(acc.value(), 100, "cached: computed once");
}

#[test]
fn a_reused_shuffle_does_not_count_its_map_side_again() {
    let ctx = ctx();
    let acc = ctx.long_accumulator("map side");
    let a = acc.clone();
    let counts = ctx
        .range(0..1000, 4)
        .map(move |x| {
            a.add(1);
            (x % 10, 1u64)
        })
        .reduce_by_key(|x, y| x + y);
    assert_eq!(counts.count().unwrap(), 10);
    assert_eq!(counts.collect().unwrap().len(), 10);
    assert_eq!(acc.value(), 1000);
}

#[test]
fn take_counts_only_what_it_computed() {
    let ctx = ctx();
    let acc = ctx.long_accumulator("pulled");
    let a = acc.clone();
    let rdd = ctx
        .parallelize((0..100).collect::<Vec<u32>>(), 4)
        .map(move |x| {
            a.add(1);
            x
        });
    assert_eq!(rdd.take(3).unwrap(), vec![0, 1, 2]);
    assert_eq!(acc.value(), 3);
    assert_eq!(rdd.first().unwrap(), Some(0));
    assert_eq!(acc.value(), 4);
}

#[test]
fn adds_outside_tasks_apply_at_once() {
    let ctx = ctx();
    let acc = ctx.collection_accumulator::<&str>("driver");
    acc.add("from the driver");
    let a = acc.clone();
    std::thread::spawn(move || a.add("from a thread"))
        .join()
        .unwrap();
    assert_eq!(acc.value(), vec!["from the driver", "from a thread"]);
}

/// Counts distinct values, to check that custom kinds merge their task copies.
#[derive(Default)]
struct Distinct(std::collections::BTreeSet<u64>);
impl Accumulable for Distinct {
    type Input = u64;
    type Output = usize;
    fn zero(&self) -> Self {
        Distinct::default()
    }
    fn add(&mut self, x: u64) {
        self.0.insert(x);
    }
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
    fn value(&self) -> usize {
        self.0.len()
    }
}

#[test]
fn a_custom_accumulator_merges_its_task_copies() {
    let ctx = ctx();
    let acc = ctx.accumulator("distinct", Distinct::default());
    let a = acc.clone();
    ctx.range(0..10_000, 8)
        .foreach(move |x| a.add(x % 321))
        .unwrap();
    assert_eq!(acc.value(), 321);
    assert!(format!("{acc:?}").contains("distinct"));
}

/// A merge that panics on the driver.
struct BadMerge;
impl Accumulable for BadMerge {
    type Input = ();
    type Output = ();
    fn zero(&self) -> Self {
        BadMerge
    }
    fn add(&mut self, _: ()) {}
    fn merge(&mut self, _: Self) {
        panic!("merge is broken");
    }
    fn value(&self) {}
}

#[test]
fn a_panicking_merge_fails_the_action_and_leaves_the_context_usable() {
    quiet_panics();
    let ctx = ctx();
    let acc = ctx.accumulator("bad", BadMerge);
    let a = acc.clone();
    let err = ctx.range(0..10, 2).foreach(move |_| a.add(())).unwrap_err();
    assert!(err.to_string().contains("merge is broken"), "{err}");
    assert_eq!(ctx.range(0..10, 2).count().unwrap(), 10);
}

#[test]
fn a_retried_checkpoint_task_writes_exactly_what_the_lineage_computes() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .task_max_failures(2)
        .build()
        .unwrap();
    let acc = ctx.long_accumulator("computed");
    let attempts: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
    let (a, at) = (acc.clone(), attempts.clone());
    let rdd = ctx
        .parallelize((0..400u64).collect::<Vec<_>>(), 4)
        .map_partitions_with_index(move |p, it| {
            let first = {
                let mut at = at.lock();
                let n = at.entry(p).or_default();
                *n += 1;
                *n == 1
            };
            let a = a.clone();
            it.map(move |x| {
                a.add(1);
                // Every partition's first attempt dies half-way through its elements.
                assert!(!(first && x % 100 == 50), "flaky");
                x * 3
            })
        });
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 400);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
    assert_eq!(acc.value(), 400, "each partition counted once");
    assert_eq!(
        rdd.collect().unwrap(),
        (0..400u64).map(|x| x * 3).collect::<Vec<_>>()
    );
    assert!(attempts.lock().values().all(|&n| n == 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Partition `p` adds 1 per element for `sizes[p]` elements, and its first `fail[p]`
    /// attempts panic half-way. With `max` attempts allowed: if the action succeeds, every
    /// element counted exactly once; if it fails, the value is a sum of whole partitions
    /// that succeeded, never part of an attempt that failed.
    #[test]
    fn retries_never_count_a_failed_attempt(
        sizes in prop::collection::vec(0usize..40, 1..8),
        fail in prop::collection::vec(0usize..4, 8),
        max in 1usize..4,
    ) {
        quiet_panics();
        let ctx = Context::builder().threads(2).task_max_failures(max).build().unwrap();
        let parts = sizes.len();
        let acc = ctx.long_accumulator("n");
        let runs: Arc<Vec<AtomicUsize>> =
            Arc::new((0..parts).map(|_| AtomicUsize::new(0)).collect());
        let (a, r, f, s) = (acc.clone(), runs.clone(), fail.clone(), sizes.clone());
        // One element per partition: its index.
        let result = ctx
            .parallelize((0..parts).collect::<Vec<usize>>(), parts)
            .foreach(move |p| {
                let attempt = r[p].fetch_add(1, Ordering::SeqCst);
                for i in 0..s[p] {
                    a.add(1);
                    assert!(!(attempt < f[p] && i == s[p] / 2), "flaky attempt");
                }
            });
        let succeeds = |p: usize| sizes[p] == 0 || fail[p] < max;
        let total: usize = sizes.iter().sum();
        match result {
            Ok(()) => {
                prop_assert!((0..parts).all(succeeds));
                prop_assert_eq!(acc.value(), total as i64);
            }
            Err(e) => {
                prop_assert!(matches!(e, Error::TaskFailed { .. }), "{}", e);
                prop_assert!(!(0..parts).all(succeeds));
                // The value must be the sum of some set of succeeding partitions' sizes.
                let mut reachable = vec![false; total + 1];
                reachable[0] = true;
                for p in (0..parts).filter(|&p| succeeds(p)) {
                    for v in (sizes[p]..=total).rev() {
                        reachable[v] |= reachable[v - sizes[p]];
                    }
                }
                let v = acc.value() as usize;
                prop_assert!(v <= total && reachable[v], "value {} is not whole partitions", v);
            }
        }
    }
}

#[test]
fn a_nested_jobs_adds_count_with_the_task_that_started_it() {
    quiet_panics();
    let ctx = Context::builder()
        .threads(2)
        .task_max_failures(2)
        .build()
        .unwrap();
    let acc = ctx.long_accumulator("nested");
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, c, f) = (acc.clone(), ctx.clone(), failed.clone());
    let out = ctx
        .parallelize(vec![0u8], 1)
        .map(move |_| {
            // A job inside a task: its 100 adds belong to this task attempt.
            let a2 = a.clone();
            c.range(0..100, 4).foreach(move |_| a2.add(1)).unwrap();
            assert!(
                f.swap(true, Ordering::SeqCst),
                "flaky: the first attempt fails"
            );
            1
        })
        .collect()
        .unwrap();
    assert_eq!(out, vec![1]);
    assert_eq!(
        acc.value(),
        100,
        "the failed attempt's nested adds were dropped"
    );
}

/// Adds to another accumulator from inside its own `add`.
struct Forwarding(Accumulator<LongSum>, i64);
impl Accumulable for Forwarding {
    type Input = i64;
    type Output = i64;
    fn zero(&self) -> Self {
        Forwarding(self.0.clone(), 0)
    }
    fn add(&mut self, x: i64) {
        self.0.add(x);
        self.1 += x;
    }
    fn merge(&mut self, other: Self) {
        self.1 += other.1;
    }
    fn value(&self) -> i64 {
        self.1
    }
}

#[test]
fn an_add_that_adds_to_another_accumulator_works_inside_tasks() {
    let ctx = ctx();
    let inner = ctx.long_accumulator("inner");
    let outer = ctx.accumulator("outer", Forwarding(inner.clone(), 0));
    let o = outer.clone();
    ctx.range(0..100, 4)
        .foreach(move |x| o.add(x as i64))
        .unwrap();
    assert_eq!(outer.value(), 4950);
    assert_eq!(inner.value(), 4950);
}

#[test]
fn thousands_of_accumulators_in_one_task_each_count_exactly() {
    let ctx = ctx();
    let accs: Vec<LongAccumulator> = (0..5000)
        .map(|i| ctx.long_accumulator(format!("a{i}")))
        .collect();
    let shared = Arc::new(accs.clone());
    ctx.range(0..20_000, 2)
        .foreach(move |x| shared[(x % 5000) as usize].add(1))
        .unwrap();
    assert!(accs.iter().all(|a| a.value() == 4));
}
