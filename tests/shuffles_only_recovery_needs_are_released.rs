//! Shuffle outputs that only the loss of a stored cache or of another shuffle's outputs
//! could need are released (issue 17's memory work), and whatever needs them later gets
//! exactly the records it would have got from the kept outputs: a later job runs the map
//! stage again, and a task that meets them released mid-job computes them itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common;

use common::{ctx, sorted, Counter, Recorder};
use flintlock::{Context, Rdd, StageKind};
use proptest::prelude::*;

/// Shuffle-map stages run since the recorder's last `take`.
fn map_stages(rec: &Recorder) -> usize {
    rec.take_stage_kinds()
        .into_iter()
        .filter(|k| *k == StageKind::ShuffleMap)
        .count()
}

/// `links` the way PageRank builds it: two shuffles, then a cached narrow step.
/// A one-record RDD whose task unpersists `links` (and then sets `done`): unioned before
/// `links`, it releases their cache and shuffle outputs while the job that reads them runs.
fn unpersisting(
    ctx: &Context,
    links: &Rdd<(u64, Vec<u64>)>,
    done: &Arc<AtomicBool>,
) -> Rdd<(u64, Vec<u64>)> {
    let (links, done) = (links.clone(), done.clone());
    ctx.parallelize(vec![(u64::MAX, Vec::new())], 1)
        .map(move |x: (u64, Vec<u64>)| {
            links.unpersist();
            done.store(true, Ordering::SeqCst);
            x
        })
}

fn links(ctx: &Context, calls: &Counter) -> Rdd<(u64, Vec<u64>)> {
    ctx.parallelize((0..2_000u64).map(|i| (i % 97, i * 7 % 101)).collect(), 4)
        .map(calls.counting(|e| e))
        .distinct()
        .group_by_key()
        .map_values(|mut v: Vec<u64>| {
            v.sort_unstable();
            v
        })
        .cache()
}

#[test]
fn a_fully_cached_rdds_shuffles_are_released_and_rerun_after_unpersist() {
    let ctx = ctx();
    let calls = Counter::default();
    let links = links(&ctx, &calls);
    let first = sorted(links.collect().unwrap());
    assert_eq!(calls.get(), 2_000);
    assert_eq!(
        ctx.memory_stats().shuffles,
        0,
        "only the cache's recovery could read them"
    );
    // Read from the cache: no recomputation.
    let rec = Recorder::attach(&ctx);
    assert_eq!(sorted(links.collect().unwrap()), first);
    assert_eq!((calls.get(), map_stages(&rec)), (2_000, 0));
    // Without the cache, the lineage runs again, both map stages included.
    links.unpersist();
    assert_eq!(sorted(links.collect().unwrap()), first);
    assert_eq!((calls.get(), map_stages(&rec)), (4_000, 2));
}

#[test]
fn a_shuffle_read_only_by_a_complete_shuffle_is_released_during_the_job() {
    let ctx = ctx();
    let rec = Recorder::attach(&ctx);
    // Not cached: the second shuffle's outputs stay (the RDD reads them), the first's go.
    let grouped = ctx
        .range(0..1_000, 4)
        .map(|x| (x % 50, x))
        .reduce_by_key(|a, b| a + b)
        .map(|(k, v)| (v % 7, k))
        .group_by_key();
    let first = sorted(grouped.collect().unwrap());
    assert_eq!(map_stages(&rec), 2);
    assert_eq!(ctx.memory_stats().shuffles, 1);
    // The next job reuses the kept one and needs nothing below it.
    assert_eq!(sorted(grouped.collect().unwrap()), first);
    assert_eq!(map_stages(&rec), 0);
}

#[test]
fn a_cached_shuffled_rdd_reads_its_cache_not_its_shuffle() {
    let ctx = ctx();
    let sums = ctx
        .range(0..1_000, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b)
        .cache();
    let first = sorted(sums.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    sums.unpersist();
    assert_eq!(sorted(sums.collect().unwrap()), first);
}

#[test]
fn a_long_chain_of_released_shuffles_is_computed_again_inside_a_task_without_deep_recursion() {
    // 400 shuffles, each below a narrow chain deeper than a task's segment (300 maps),
    // all released by the job that cached the end of the chain. A task that meets them
    // released computes them bottom-up, one after the other.
    let ctx = Context::builder().threads(1).build().unwrap();
    let mut rdd = ctx.range(0..64, 2).map(|x| (x, x));
    for i in 0..400u64 {
        if i % 100 == 0 {
            for _ in 0..300 {
                rdd = rdd.map(|(k, v)| (k, v + 1));
            }
        }
        rdd = rdd
            .map(move |(k, v)| ((k * 7 + i) % 64, v))
            .reduce_by_key(|a, b| a.wrapping_add(b));
    }
    let end = rdd.map_values(|v| v ^ 1).cache();
    // (While `rdd` is held, its own shuffle stays: computing it reads the outputs.)
    drop(rdd);
    let expected = sorted(end.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let trigger = {
        let end = end.clone();
        ctx.parallelize(vec![(u64::MAX, 0u64)], 1).map(move |x| {
            end.unpersist();
            x
        })
    };
    let got = trigger.union(&end).collect().unwrap();
    assert_eq!(sorted(got[1..].to_vec()), expected);
}

#[test]
fn a_shuffle_a_handle_can_reach_is_kept() {
    let ctx = ctx();
    let calls = Counter::default();
    let sums = ctx
        .range(0..1_000, 4)
        .map(calls.counting(|x| (x % 10, x)))
        .reduce_by_key(|a, b| a + b);
    let doubled = sums.map_values(|v| v * 2).cache();
    doubled.count().unwrap();
    // `sums` is the user's: computing it reads the shuffle, so it stays.
    assert_eq!(ctx.memory_stats().shuffles, 1);
    let rec = Recorder::attach(&ctx);
    assert_eq!(sums.count().unwrap(), 10);
    assert_eq!((map_stages(&rec), calls.get()), (0, 1_000));
    // Once the handle goes, the next job over the cache releases it.
    drop(sums);
    doubled.count().unwrap();
    assert_eq!(ctx.memory_stats().shuffles, 0);
}

#[test]
fn nothing_is_released_under_a_memory_limit() {
    let ctx = Context::builder()
        .threads(2)
        .memory_limit(256 << 20)
        .build()
        .unwrap();
    let calls = Counter::default();
    let links = links(&ctx, &calls);
    links.count().unwrap();
    // Spilling bounds memory there, and an evicted block recomputes from kept outputs.
    assert_eq!(ctx.memory_stats().shuffles, 2);
}

#[test]
fn a_task_that_meets_released_outputs_computes_them_itself() {
    // One thread: the union's tasks run in partition order, so the first (on `trigger`)
    // unpersists the cache after the job was planned around it, and the later ones (on the
    // cached RDD) find its blocks gone and its shuffle released.
    let ctx = Context::builder().threads(1).build().unwrap();
    let calls = Counter::default();
    let links = links(&ctx, &calls);
    let expected = sorted(links.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let unpersisted = Arc::new(AtomicBool::new(false));
    let trigger = unpersisting(&ctx, &links, &unpersisted);
    let rec = Recorder::attach(&ctx);
    let got = trigger.union(&links).collect().unwrap();
    assert!(unpersisted.load(Ordering::SeqCst));
    assert_eq!(got[0], (u64::MAX, Vec::new()));
    assert_eq!(sorted(got[1..].to_vec()), expected);
    // The job planned no map stage (the cache was whole); its tasks ran both shuffles'
    // map sides again themselves.
    assert_eq!(map_stages(&rec), 0);
    assert_eq!(calls.get(), 4_000);
}

#[test]
fn computing_released_outputs_leaves_the_tasks_own_prepared_segments_alone() {
    // `deep` is a narrow chain deeper than a task's segment, read both by the task (through
    // the zip) and by the released shuffle's map side. The task prepares its partition of
    // `deep` in segments before it starts; computing the released outputs prepares the
    // same chain's partitions again, in a context of its own, so the task still reads
    // what it prepared and computes its partition of `deep` once, not twice.
    let ctx = Context::builder().threads(1).build().unwrap();
    let calls = Counter::default();
    let mut deep = ctx.range(0..64, 2).map(calls.counting(|x| (x % 8, x)));
    for _ in 0..300 {
        deep = deep.map(|(k, v)| (k, v + 1));
    }
    let agg = deep.reduce_by_key(|a, b| a + b).cache();
    let expected_agg = sorted(agg.collect().unwrap());
    let expected_deep = sorted(deep.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let zipped = agg.zip_partitions(&deep, |a, d| {
        // The cached side first: it meets the released outputs before `deep` is read.
        let a: Vec<_> = a.collect();
        a.into_iter()
            .map(|(k, v)| (0u8, k, v))
            .chain(d.map(|(k, v)| (1u8, k, v)))
            .collect::<Vec<_>>()
    });
    let trigger = {
        let agg = agg.clone();
        ctx.parallelize(vec![(u8::MAX, 0, 0)], 1).map(move |x| {
            agg.unpersist();
            x
        })
    };
    calls.reset();
    let got = trigger.union(&zipped).collect().unwrap();
    let pick = |side: u8| {
        sorted(
            got.iter()
                .filter(|r| r.0 == side)
                .map(|&(_, k, v)| (k, v))
                .collect(),
        )
    };
    assert_eq!(pick(0), expected_agg);
    assert_eq!(pick(1), expected_deep);
    // Each partition of `deep` for the task's own read (64 records), and both once more
    // for the released map side (64): 128. Had the map side's preparation replaced the
    // task's prepared segment, the task would compute its partition a second time.
    assert_eq!(calls.get(), 128);
}

#[test]
fn tasks_racing_to_compute_released_outputs_read_exactly_the_same_records() {
    // Two threads, eight cached partitions: however the unpersist interleaves with the
    // other tasks (some read the cache, some find it gone, several meet the released
    // shuffles at once and store or reuse each other's outputs), the job reads the same
    // records, and never "missing outputs".
    let mut recomputed_rounds = 0;
    for round in 0..20 {
        let ctx = ctx();
        let calls = Counter::default();
        let links = ctx
            .parallelize((0..4_000u64).map(|i| (i % 397, i * 7 % 101)).collect(), 8)
            .map(calls.counting(|e| e))
            .distinct()
            .group_by_key()
            .map_values(|mut v: Vec<u64>| {
                v.sort_unstable();
                v
            })
            .cache();
        let expected = sorted(links.collect().unwrap());
        assert_eq!(ctx.memory_stats().shuffles, 0);
        let trigger = unpersisting(&ctx, &links, &Arc::default());
        let got = trigger.union(&links).collect();
        let got = got.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(sorted(got[1..].to_vec()), expected, "round {round}");
        if calls.get() > 4_000 {
            recomputed_rounds += 1;
        }
    }
    // The race is real: in (nearly) every round some task computed the released outputs.
    assert!(recomputed_rounds > 0, "no round took the released path");
    eprintln!("{recomputed_rounds} of 20 rounds computed released outputs inside tasks");
}

#[test]
fn a_map_side_that_fails_while_computed_again_fails_the_task_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "a\nb\na\nc\n").unwrap();
    let ctx = Context::builder().threads(1).build().unwrap();
    let counts = ctx
        .text_file(&path, 2)
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .map_values(|n| n * 10)
        .cache();
    let expected = sorted(counts.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    // The input becomes unreadable; the cache is dropped by the job's first task.
    std::fs::write(&path, b"a\n\xff\xfe\nb\n").unwrap();
    let trigger = {
        let counts = counts.clone();
        ctx.parallelize(vec![(String::new(), 0u64)], 1)
            .map(move |x: (String, u64)| {
                counts.unpersist();
                x
            })
    };
    let err = trigger.union(&counts).collect().unwrap_err();
    assert!(!err.to_string().is_empty());
    // Nothing half-computed was stored: the next action fails the same way, and once the
    // input is back it reads exactly what it read before.
    assert!(counts.collect().is_err());
    std::fs::write(&path, "a\nb\na\nc\n").unwrap();
    assert_eq!(sorted(counts.collect().unwrap()), expected);
}

#[test]
fn pagerank_keeps_no_shuffle_output_beyond_the_current_iteration() {
    let ctx = ctx();
    let links = links(&ctx, &Counter::default());
    let mut ranks = links.map_values(|_| 1.0f64);
    for _ in 0..8 {
        let next = links
            .join(&ranks)
            .values()
            .flat_map(|(urls, rank)| {
                let share = rank / urls.len() as f64;
                urls.into_iter().map(move |u| (u, share))
            })
            .reduce_by_key(|a, b| a + b)
            .map_values(|s| 0.15 + 0.85 * s)
            .cache();
        next.count().unwrap();
        ranks.unpersist();
        ranks = next;
    }
    // Only the cached `ranks` and `links` are needed; every shuffle is recovery-only.
    assert_eq!(ctx.memory_stats().shuffles, 0);
    // The ranks read back from the cache equal the ones recomputed from scratch.
    let bits = |ranks: &Rdd<(u64, f64)>| {
        let ranks = ranks.collect().unwrap();
        sorted(ranks.into_iter().map(|(k, v)| (k, v.to_bits())).collect())
    };
    let cached = bits(&ranks);
    ranks.unpersist();
    links.unpersist();
    let recomputed = bits(&ranks);
    assert_eq!(cached, recomputed);
}

/// One step of a random pipeline over `(u64, u64)` pairs.
#[derive(Clone, Debug)]
enum Step {
    ReduceByKey(u64),
    GroupByKeySum(u64),
    Distinct,
    Cache,
    MapValues(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u64..20).prop_map(Step::ReduceByKey),
        (1u64..20).prop_map(Step::GroupByKeySum),
        Just(Step::Distinct),
        Just(Step::Cache),
        (1u64..5).prop_map(Step::MapValues),
    ]
}

/// The pipeline on the engine; every cached RDD is also returned.
fn on_engine(
    ctx: &Context,
    data: &[(u64, u64)],
    steps: &[Step],
) -> (Rdd<(u64, u64)>, Vec<Rdd<(u64, u64)>>) {
    let mut rdd = ctx.parallelize(data.to_vec(), 3);
    let mut cached = Vec::new();
    for s in steps {
        rdd = match *s {
            Step::ReduceByKey(m) => rdd
                .map(move |(k, v)| (k % m, v))
                .reduce_by_key(|a, b| a.wrapping_add(b)),
            Step::GroupByKeySum(m) => rdd
                .map(move |(k, v)| (v % m, k))
                .group_by_key()
                .map_values(|vs| vs.iter().fold(0u64, |a, b| a.wrapping_add(*b))),
            Step::Distinct => rdd.distinct(),
            Step::Cache => {
                let c = rdd.cache();
                cached.push(c.clone());
                c
            }
            Step::MapValues(a) => rdd.map_values(move |v| v.wrapping_mul(a).wrapping_add(1)),
        };
    }
    (rdd, cached)
}

/// The same pipeline on a `Vec`, sorted.
fn on_vec(data: &[(u64, u64)], steps: &[Step]) -> Vec<(u64, u64)> {
    use std::collections::BTreeMap;
    let mut v = data.to_vec();
    for s in steps {
        v = match *s {
            Step::ReduceByKey(m) => {
                let mut out: BTreeMap<u64, u64> = BTreeMap::new();
                for (k, x) in v {
                    let e = out.entry(k % m).or_insert(0);
                    *e = e.wrapping_add(x);
                }
                out.into_iter().collect()
            }
            Step::GroupByKeySum(m) => {
                let mut out: BTreeMap<u64, u64> = BTreeMap::new();
                for (k, x) in v {
                    let e = out.entry(x % m).or_insert(0);
                    *e = e.wrapping_add(k);
                }
                out.into_iter().collect()
            }
            Step::Distinct => {
                v.sort_unstable();
                v.dedup();
                v
            }
            Step::Cache => v,
            Step::MapValues(a) => v
                .into_iter()
                .map(|(k, x)| (k, x.wrapping_mul(a).wrapping_add(1)))
                .collect(),
        };
    }
    sorted(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever is cached, released, unpersisted and recomputed, every action reads exactly
    /// what the pipeline computes on a `Vec`.
    #[test]
    fn released_and_recomputed_pipelines_read_back_exactly(
        data in proptest::collection::vec((0u64..40, 0u64..1_000), 0..300),
        steps in proptest::collection::vec(step(), 1..7),
        unpersist in proptest::collection::vec(any::<bool>(), 6),
        threads in 1usize..3,
    ) {
        let ctx = Context::builder().threads(threads).build().unwrap();
        let expected = on_vec(&data, &steps);
        let (rdd, cached) = on_engine(&ctx, &data, &steps);
        prop_assert_eq!(sorted(rdd.collect().unwrap()), expected.clone());
        for (c, &drop_it) in cached.iter().zip(&unpersist) {
            if drop_it {
                c.unpersist();
            }
        }
        prop_assert_eq!(sorted(rdd.collect().unwrap()), expected.clone());
        for c in &cached {
            c.cache();
        }
        prop_assert_eq!(rdd.count().unwrap(), expected.len() as u64);
        prop_assert_eq!(sorted(rdd.collect().unwrap()), expected);
    }
}

#[test]
fn a_map_side_that_panics_while_computed_again_stores_nothing_and_the_next_action_reads_exactly() {
    // As the test above, with a panic instead of an error: the map side panics once, on its
    // first record after the cache is dropped mid-job. The job fails; no half-computed
    // outputs are stored, so the next action runs the map stage again and reads exactly.
    let ctx = Context::builder().threads(1).build().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let links = {
        let armed = armed.clone();
        ctx.parallelize((0..2_000u64).map(|i| (i % 97, i * 7 % 101)).collect(), 4)
            .map(move |e| {
                if armed.swap(false, Ordering::SeqCst) {
                    panic!("a map side that panics once");
                }
                e
            })
            .distinct()
            .group_by_key()
            .map_values(|mut v: Vec<u64>| {
                v.sort_unstable();
                v
            })
            .cache()
    };
    let expected = sorted(links.collect().unwrap());
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let trigger = unpersisting(&ctx, &links, &armed);
    assert!(trigger.union(&links).collect().is_err());
    assert!(!armed.load(Ordering::SeqCst), "the panic fired");
    assert_eq!(sorted(links.collect().unwrap()), expected);
}
