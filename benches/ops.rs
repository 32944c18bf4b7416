//! `reduce_by_key` of 10,000,000 `(u64, u64)` pairs over 100,000 keys, and `join` of two
//! 1,000,000-row RDDs, each beside a hand-written rayon version of the same work (map-side
//! combine, hash-partitioned buckets, per-partition merge / hash join). Target: engine /
//! hand-written at most 1.5.
//!
//! Then the cost of an event log (`ContextBuilder::event_log`): the same two jobs, and 200
//! small jobs (4 tasks each, where per-event costs show most), each in a context that logs
//! against one that does not. Target: no measurable difference.
//!
//! Then the memory limit (`ContextBuilder::memory_limit`): a limit that never binds against
//! none (bookkeeping only; target: no difference), and a 160 MB shuffle spilled under a
//! 32 MB limit against the same shuffle in memory (the cost of the disk, reported).
//!
//! Last, `tracing`: the cost of a disabled callsite without a subscriber, against the time
//! per task of the small jobs (target: nothing measurable), and the small jobs traced at
//! `debug` against the level off (reported).
//!
//! `cargo bench --bench ops` — the `RATIO` and `TRACING` lines at the end are the figures.

mod support;

use criterion::Criterion;
use flintlock::{Context, Partitioner, Rdd};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

const PAIRS: u64 = 10_000_000;
const KEYS: u64 = 100_000;
const JOIN_ROWS: u64 = 1_000_000;

fn partitions() -> usize {
    2 * rayon::current_num_threads()
}

fn pairs() -> Vec<(u64, u64)> {
    (0..PAIRS)
        .map(|i| ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % KEYS, i))
        .collect()
}

fn engine_reduce(rdd: &Rdd<(u64, u64)>) -> u64 {
    rdd.reduce_by_key(|a, b| a.wrapping_add(b)).count().unwrap()
}

fn hand_reduce(data: &[(u64, u64)], partitions: usize) -> u64 {
    let p = Partitioner::hash(partitions);
    let outputs: Vec<Vec<Vec<(u64, u64)>>> = data
        .par_chunks(data.len().div_ceil(partitions))
        .map(|chunk| {
            let mut m: FxHashMap<u64, u64> = FxHashMap::default();
            for &(k, v) in chunk {
                let e = m.entry(k).or_insert(0);
                *e = e.wrapping_add(v);
            }
            let mut buckets: Vec<Vec<(u64, u64)>> =
                vec![Vec::with_capacity(m.len() / partitions + 1); partitions];
            for (k, v) in m {
                buckets[p.partition_of(&k)].push((k, v));
            }
            buckets
        })
        .collect();
    (0..partitions)
        .into_par_iter()
        .map(|q| {
            let mut m: FxHashMap<u64, u64> = FxHashMap::default();
            for o in &outputs {
                for &(k, v) in &o[q] {
                    let e = m.entry(k).or_insert(0);
                    *e = e.wrapping_add(v);
                }
            }
            m.len() as u64
        })
        .sum()
}

fn join_sides() -> (Vec<(u64, u64)>, Vec<(u64, u64)>) {
    let perm = |i: u64| (i.wrapping_mul(2_654_435_761)) % JOIN_ROWS;
    let left = (0..JOIN_ROWS).map(|i| (perm(i), i)).collect();
    let right = (0..JOIN_ROWS).map(|i| (perm(i * 7 + 3), i * 2)).collect();
    (left, right)
}

fn engine_join(a: &Rdd<(u64, u64)>, b: &Rdd<(u64, u64)>) -> u64 {
    a.join(b).count().unwrap()
}

fn hand_join(left: &[(u64, u64)], right: &[(u64, u64)], partitions: usize) -> u64 {
    let p = Partitioner::hash(partitions);
    let bucket = |side: &[(u64, u64)]| -> Vec<Vec<Vec<(u64, u64)>>> {
        side.par_chunks(side.len().div_ceil(partitions))
            .map(|chunk| {
                let mut b: Vec<Vec<(u64, u64)>> =
                    vec![Vec::with_capacity(chunk.len() / partitions + 1); partitions];
                for &(k, v) in chunk {
                    b[p.partition_of(&k)].push((k, v));
                }
                b
            })
            .collect()
    };
    let (lb, rb) = (bucket(left), bucket(right));
    (0..partitions)
        .into_par_iter()
        .map(|q| {
            // The engine's layout: a key's first value in a plain, pre-sized table, further
            // values aside (looked up only when there are any).
            let len = rb.iter().map(|b| b[q].len()).sum();
            let mut first: FxHashMap<u64, u64> =
                FxHashMap::with_capacity_and_hasher(len, Default::default());
            let mut more: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
            for b in &rb {
                for &(k, w) in &b[q] {
                    match first.entry(k) {
                        std::collections::hash_map::Entry::Occupied(_) => {
                            more.entry(k).or_default().push(w)
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(w);
                        }
                    }
                }
            }
            let mut n = 0u64;
            for b in &lb {
                for &(k, v) in &b[q] {
                    if let Some(w) = first.get(&k) {
                        std::hint::black_box((k, (v, *w)));
                        n += 1;
                        if !more.is_empty() {
                            for w in more.get(&k).into_iter().flatten() {
                                std::hint::black_box((k, (v, *w)));
                                n += 1;
                            }
                        }
                    }
                }
            }
            n
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let ctx = Context::new();
    let parts = partitions();
    let data = pairs();
    let rdd = ctx.parallelize(data.clone(), parts);
    assert_eq!(engine_reduce(&rdd), hand_reduce(&data, parts));
    let mut g = c.benchmark_group("reduce_by_key_10m_pairs_100k_keys");
    g.sample_size(10);
    g.bench_function("flintlock", |b| b.iter(|| engine_reduce(&rdd)));
    g.bench_function("hand_written_rayon", |b| {
        b.iter(|| hand_reduce(&data, parts))
    });
    g.finish();

    let (left, right) = join_sides();
    let (a, b) = (
        ctx.parallelize(left.clone(), parts),
        ctx.parallelize(right.clone(), parts),
    );
    assert_eq!(engine_join(&a, &b), hand_join(&left, &right, parts));
    let mut g = c.benchmark_group("join_1m_by_1m");
    g.sample_size(10);
    g.bench_function("flintlock", |bch| bch.iter(|| engine_join(&a, &b)));
    g.bench_function("hand_written_rayon", |bch| {
        bch.iter(|| hand_join(&left, &right, parts))
    });
    g.finish();

    support::compare(
        15,
        "reduce_by_key 10M pairs / 100k keys",
        "flintlock",
        || engine_reduce(&rdd),
        "hand-written",
        || hand_reduce(&data, parts),
    );
    support::compare(
        15,
        "join 1M x 1M",
        "flintlock",
        || engine_join(&a, &b),
        "hand-written",
        || hand_join(&left, &right, parts),
    );

    // The event log: the same jobs in a context that logs every event to a file.
    let log_dir = tempfile::tempdir().unwrap();
    let logged = Context::builder()
        .event_log(log_dir.path().join("ops.jsonl"))
        .build()
        .unwrap();
    let logged_rdd = logged.parallelize(data.clone(), parts);
    let (la, lb) = (
        logged.parallelize(left.clone(), parts),
        logged.parallelize(right.clone(), parts),
    );
    support::compare(
        15,
        "reduce_by_key 10M pairs, event log on / off",
        "logged",
        || engine_reduce(&logged_rdd),
        "plain",
        || engine_reduce(&rdd),
    );
    support::compare(
        15,
        "join 1M x 1M, event log on / off",
        "logged",
        || engine_join(&la, &lb),
        "plain",
        || engine_join(&a, &b),
    );
    // The memory limit (`ContextBuilder::memory_limit`): its bookkeeping when nothing
    // spills, and the cost of a shuffle that goes to disk.
    let roomy = Context::builder().memory_limit(1 << 40).build().unwrap();
    let roomy_rdd = roomy.parallelize(data.clone(), parts);
    support::compare(
        15,
        "reduce_by_key 10M pairs, memory limit that never binds / none",
        "limited",
        || engine_reduce(&roomy_rdd),
        "plain",
        || engine_reduce(&rdd),
    );
    let spill_dir = tempfile::tempdir().unwrap();
    let tight = Context::builder()
        .memory_limit(32 << 20)
        .spill_dir(spill_dir.path())
        .build()
        .unwrap();
    let shuffle_all = |ctx: &Context| {
        ctx.range(0..PAIRS, parts)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i))
            .partition_by(Partitioner::hash(4 * parts))
            .count()
            .unwrap()
    };
    support::compare(
        5,
        "partition_by 10M pairs (160 MB), spilled under a 32 MB limit / in memory",
        "spilled",
        || shuffle_all(&tight),
        "in memory",
        || shuffle_all(&ctx),
    );
    let small_jobs = |ctx: &Context| {
        let rdd = ctx.range(0..4000, 4).map(|x| x * 2);
        (0..200).map(|_| rdd.count().unwrap()).sum::<u64>()
    };
    support::compare(
        15,
        "200 small jobs (4 tasks), event log on / off",
        "logged",
        || small_jobs(&logged),
        "plain",
        || small_jobs(&ctx),
    );
    tracing_cost(|| small_jobs(&ctx));
}

/// What `tracing` costs. Without a subscriber (everything above ran without one), a
/// callsite is one relaxed load and a branch: measured here in a loop of the scheduler's
/// task-span callsite, beside the time per task of the 200 small jobs (whose tasks do
/// almost nothing, so per-task costs show most). Then, with a subscriber installed whose
/// level is switched between runs, the small jobs traced at `debug` (formatted, to a sink)
/// against the level set to `off`.
fn tracing_cost(small_jobs: impl Fn() -> u64) {
    const CALLS: u64 = 10_000_000;
    let (secs, ()) = support::time(|| {
        for partition in 0..CALLS {
            let span = tracing::debug_span!("task", stage_id = 1, partition);
            let entered = span.entered();
            std::hint::black_box(&entered);
        }
    });
    let per_callsite = secs / CALLS as f64;
    let (job_secs, _) = support::time(&small_jobs);
    // 200 jobs of one stage of 4 tasks: a job, stage and task span, and about eight events
    // (job, stage and task started and ended) per task.
    let callsites = 200.0 * (2.0 + 4.0 * 3.0 + 4.0);
    println!(
        "TRACING no subscriber: {:.2} ns per disabled callsite; {:.0} callsites in the 200 \
         small jobs = {:.4}% of their {:.1} ms",
        per_callsite * 1e9,
        callsites,
        100.0 * callsites * per_callsite / job_secs,
        job_secs * 1e3
    );

    use tracing_subscriber::layer::SubscriberExt;
    let (level, handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::filter::LevelFilter::OFF);
    let subscriber = tracing_subscriber::registry()
        .with(level)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
    tracing::subscriber::set_global_default(subscriber).expect("the bench's only subscriber");
    let set = |l| handle.reload(l).expect("the subscriber is installed");
    support::compare(
        15,
        "200 small jobs (4 tasks), tracing at debug to a sink / level off",
        "debug",
        || {
            set(tracing_subscriber::filter::LevelFilter::DEBUG);
            small_jobs()
        },
        "off",
        || {
            set(tracing_subscriber::filter::LevelFilter::OFF);
            small_jobs()
        },
    );
}

// `criterion_group!` makes an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
use group::benches;

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
