//! PageRank, in one run on the same built-in graph (1,000,000 edges, 10 iterations):
//! flintlock without checkpoints, flintlock checkpointing every 5 iterations, a hand-written
//! rayon version of the same algorithm over hash maps (the engine-overhead reference), and a
//! hand-written CSR version (the speed limit of the machine), whole runs and loops alone;
//! then PageRank written the plain Spark way (a `Vec` per node, no packing) against the
//! hand-written rayon version, and how time grows with graph size (100k, 1M, 5M edges).
//!
//! `cargo bench --bench pagerank` — the `RATIO`, `SCALING` and `GROWTH` lines are the
//! figures; `FLINTLOCK_BENCH_ONLY=scaling` runs only the growth with graph size.
//! Targets: flintlock / hand-written rayon at most 1.3; checkpointing every 5 iterations
//! adds at most 10%.

#[path = "../examples/pagerank/graph.rs"]
mod graph;
#[path = "../examples/pagerank/handwritten.rs"]
mod handwritten;
#[path = "../examples/pagerank/job.rs"]
mod job;
mod support;

use criterion::Criterion;
use flintlock::Context;

const ITERATIONS: usize = 10;

/// Spark's algorithm as its example runs it: lazy, with `checkpoint(); count()` only on
/// checkpoint iterations.
fn flintlock(ctx: &Context, edges: &[(u64, u64)], partitions: usize, every: usize) -> usize {
    run(ctx, edges, partitions, ITERATIONS, every, false)
}

/// As `examples/pagerank` runs it: an action after every iteration, to show progress.
fn flintlock_eager(ctx: &Context, edges: &[(u64, u64)], partitions: usize) -> usize {
    run(ctx, edges, partitions, ITERATIONS, 0, true)
}

/// PageRank written the plain Spark way: neighbour lists grouped into a `Vec<u64>` per node
/// and cached as they are, with no packing (`job.rs` packs them into shared buffers).
fn plain_spark(ctx: &Context, edges: &[(u64, u64)], partitions: usize) -> usize {
    let links = ctx
        .parallelize(edges.to_vec(), partitions)
        .distinct()
        .group_by_key()
        .cache();
    let mut ranks = links.map_values(|_| 1.0);
    for _ in 0..ITERATIONS {
        let contribs = links.join(&ranks).values().flat_map(|(urls, rank)| {
            let share = rank / urls.len() as f64;
            urls.into_iter().map(move |url| (url, share))
        });
        ranks = contribs
            .reduce_by_key(|a, b| a + b)
            .map_values(|sum| 0.15 + 0.85 * sum);
    }
    let n = ranks.collect().unwrap().len();
    links.unpersist();
    n
}

fn run(
    ctx: &Context,
    edges: &[(u64, u64)],
    partitions: usize,
    iterations: usize,
    every: usize,
    eager: bool,
) -> usize {
    let config = job::Config {
        iterations,
        partitions,
        checkpoint_every: every,
        materialize_each_iteration: eager,
        series: None,
    };
    job::run(ctx, edges.to_vec(), &config, |_| {})
        .unwrap()
        .len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .checkpoint_dir(dir.path())
        .clean_checkpoints(true)
        .build()
        .unwrap();
    let parts = 2 * ctx.threads();
    if std::env::var("FLINTLOCK_BENCH_ONLY").as_deref() == Ok("scaling") {
        return scaling(&ctx, parts);
    }
    let edges = graph::generate(100_000, 1_000_000, 42).unwrap();
    let n = flintlock(&ctx, &edges, parts, 0);
    assert_eq!(handwritten::rayon_hash(&edges, ITERATIONS, parts).len(), n);
    assert_eq!(handwritten::csr(&edges, ITERATIONS).len(), n);
    assert_eq!(plain_spark(&ctx, &edges, parts), n);

    let mut g = c.benchmark_group("pagerank_1m_edges_10_iterations");
    g.sample_size(10);
    g.bench_function("flintlock", |b| {
        b.iter(|| flintlock(&ctx, &edges, parts, 0))
    });
    g.bench_function("flintlock_checkpoint_every_5", |b| {
        b.iter(|| flintlock(&ctx, &edges, parts, 5))
    });
    g.bench_function("flintlock_action_every_iteration", |b| {
        b.iter(|| flintlock_eager(&ctx, &edges, parts))
    });
    g.bench_function("hand_written_rayon", |b| {
        b.iter(|| handwritten::rayon_hash(&edges, ITERATIONS, parts))
    });
    g.bench_function("hand_written_csr", |b| {
        b.iter(|| handwritten::csr(&edges, ITERATIONS))
    });
    g.finish();

    let rayon = || handwritten::rayon_hash(&edges, ITERATIONS, parts);
    let reps = 15;
    let name = "pagerank 1M edges";
    let lazy = || flintlock(&ctx, &edges, parts, 0);
    support::compare(reps, name, "flintlock", lazy, "hand-written rayon", rayon);
    let every_5 = || flintlock(&ctx, &edges, parts, 5);
    let (ck, plain) = support::compare(
        reps,
        name,
        "checkpoint every 5",
        every_5,
        "no checkpoints",
        lazy,
    );
    // The target is about the loop: take out the set-up (building and caching `links`,
    // which the job does in its first action) measured as a run of zero iterations.
    let (setup, _) = support::interleaved(reps, || run(&ctx, &edges, parts, 0, 0, false), || ());
    println!(
        "LOOP pagerank 1M edges: checkpointing every 5 adds {:.1}% to the {ITERATIONS}-iteration \
         loop ({:.1} ms with, {:.1} ms without; set-up {:.1} ms)",
        (ck - plain) / (plain - setup) * 100.0,
        (ck - setup) * 1e3,
        (plain - setup) * 1e3,
        setup * 1e3
    );
    let eager = || flintlock_eager(&ctx, &edges, parts);
    let eager_name = "flintlock, action every iteration";
    support::compare(reps, name, eager_name, eager, "hand-written rayon", rayon);
    let csr = || handwritten::csr(&edges, ITERATIONS);
    let (flintlock_run, csr_run) = support::compare(reps, name, "flintlock", lazy, "CSR", csr);
    // The loops alone: each run less its own set-up (zero iterations).
    let (csr_setup, _) = support::interleaved(reps, || handwritten::csr(&edges, 0), || ());
    println!(
        "LOOP pagerank 1M edges: flintlock loop / CSR loop = {:.2} ({:.1} ms, {:.1} ms; set-up \
         {:.1} ms and {:.1} ms)",
        (flintlock_run - setup) / (csr_run - csr_setup),
        (flintlock_run - setup) * 1e3,
        (csr_run - csr_setup) * 1e3,
        setup * 1e3,
        csr_setup * 1e3
    );
    let plain_way = || plain_spark(&ctx, &edges, parts);
    let plain_name = "flintlock, the plain Spark way (Vec per node, no packing)";
    support::compare(
        reps,
        name,
        plain_name,
        plain_way,
        "hand-written rayon",
        rayon,
    );

    scaling(&ctx, parts);
}

/// How time per edge grows with the graph (100k, 1M and 5M edges, nodes = edges / 10), for
/// flintlock and both hand-written versions run alternately, so the growth the caches cause
/// can be told from the engine's own: a `SCALING` line per size (whole runs, set-up
/// included, as issue 17's target counts them) and a `GROWTH` line of the 1M → 5M ratios.
/// flintlock runs twice: with the fixed partition count of the other benches, and with one
/// partition per 250,000 edges at least (`examples/pagerank`'s default), which keeps each
/// partition's tables about as large at every size.
fn scaling(ctx: &Context, parts: usize) {
    let mut per_edge = Vec::new();
    for m in [100_000u64, 1_000_000, 5_000_000] {
        let e = graph::generate(m / 10, m, 42).unwrap();
        let sized = parts.max(m.div_ceil(250_000) as usize);
        let times = support::interleaved_n(
            3,
            &mut [
                &mut || {
                    flintlock(ctx, &e, parts, 0);
                },
                &mut || {
                    flintlock(ctx, &e, sized, 0);
                },
                &mut || drop(handwritten::rayon_hash(&e, ITERATIONS, parts)),
                &mut || drop(handwritten::csr(&e, ITERATIONS)),
            ],
        );
        let ns = |t: f64| t * 1e9 / (m as f64 * ITERATIONS as f64);
        println!(
            "SCALING pagerank {m} edges: {:.1} ms, {:.1} ns per edge per iteration on {parts} \
             partitions ({:.1} on {sized}; hand-written rayon {:.1}, CSR {:.1})",
            times[0] * 1e3,
            ns(times[0]),
            ns(times[1]),
            ns(times[2]),
            ns(times[3])
        );
        per_edge.push(times.iter().map(|&t| ns(t)).collect::<Vec<_>>());
    }
    let growth = |i: usize| per_edge[2][i] / per_edge[1][i];
    println!(
        "GROWTH pagerank 1M -> 5M edges, ns per edge per iteration: flintlock {:.2}x on \
         {parts} partitions, {:.2}x with one per 250,000 edges at least; hand-written rayon \
         {:.2}x, CSR {:.2}x",
        growth(0),
        growth(1),
        growth(2),
        growth(3)
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
