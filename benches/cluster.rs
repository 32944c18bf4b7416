//! What cluster mode costs on one machine (feature `cluster`): the PageRank example's job
//! (Spark's plan, 10 iterations, lazy, no checkpoints, 8 partitions) on the built-in graph
//! of 1M and 5M edges, with the local executor (one process, 2 threads) and as 1, 2 and 4
//! processes on loopback (1 task thread each; on this 2-core machine 4 processes share 2
//! cores; 1 process is a cluster of one, which exchanges nothing). Every process is a
//! child of this bench, so the processes are real ones; each runs the job `RUNS` times
//! after a warm-up and reports its times, and the figure is the median of process 0's
//! (the others finish within the same exchange).
//!
//! Besides the times it prints the shuffle records that cross processes per iteration
//! (computed from the graph and the hash partitioner, as the engine places them). The cost
//! of the exchange itself is measured apart: a `partition_by` of 4M `(u64, f64)` records
//! (half of them cross processes with 2), local against 2 processes; the extra time per
//! crossing record is the figure `docs/SCALING.md` extrapolates from.
//!
//! `cargo bench --features cluster --bench cluster` (about 4 minutes);
//! `FLINTLOCK_BENCH_EDGES=1000000` for one size only.

#[path = "../examples/pagerank/graph.rs"]
mod graph;
#[path = "../examples/pagerank/job.rs"]
mod job;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Instant;

use flintlock::{ClusterConfig, Context, Partitioner};

const CHILD: &str = "FLINTLOCK_BENCH_CLUSTER_CHILD";
const PARTITIONS: usize = 8;
const ITERATIONS: usize = 10;
const RUNS: usize = 3;
/// Rounds of local and cluster runs (see `main`).
const ROUNDS: usize = 5;

fn graph_of(edges: u64) -> Vec<(u64, u64)> {
    graph::generate(edges / 10, edges, 42).unwrap()
}

/// Records of the exchange measurement.
const SHUFFLED: u64 = 4_000_000;

/// What a run measures.
#[derive(Clone, Copy)]
enum Work<'a> {
    PageRank(&'a [(u64, u64)]),
    /// A `partition_by` of [`SHUFFLED`] pairs.
    Shuffle,
}

/// One run; its wall time in milliseconds and a digest of the result.
fn run(ctx: &Context, work: Work<'_>) -> (f64, u64) {
    match work {
        Work::PageRank(edges) => pagerank(ctx, edges),
        Work::Shuffle => {
            let start = Instant::now();
            let n = ctx
                .range(0..SHUFFLED, PARTITIONS)
                .map(|x| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15), x as f64))
                .partition_by(Partitioner::hash(PARTITIONS))
                .count()
                .unwrap();
            (start.elapsed().as_secs_f64() * 1e3, n)
        }
    }
}

/// One run of the PageRank job; its wall time in milliseconds and a digest of the ranks.
fn pagerank(ctx: &Context, edges: &[(u64, u64)]) -> (f64, u64) {
    let config = job::Config {
        iterations: ITERATIONS,
        partitions: PARTITIONS,
        checkpoint_every: 0,
        materialize_each_iteration: false,
        series: None,
    };
    let start = Instant::now();
    let ranks = job::run(ctx, edges.to_vec(), &config, |_| {}).unwrap();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let digest = ranks.iter().fold(0u64, |h, (n, r)| {
        (h ^ n ^ r.to_bits()).wrapping_mul(0x0100_0000_01b3)
    });
    (ms, digest)
}

/// Times of one warm-up and `RUNS` runs, the warm-up dropped.
fn times(ctx: &Context, work: Work<'_>) -> (Vec<f64>, u64) {
    let (_, digest) = run(ctx, work);
    let mut out = Vec::new();
    for _ in 0..RUNS {
        let (ms, d) = run(ctx, work);
        assert_eq!(d, digest, "the ranks changed between runs");
        out.push(ms);
    }
    (out, digest)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The child: process `i` of the cluster in `$FLINTLOCK_BENCH_CLUSTER_CHILD`
/// (`<i> <edges> <address>...`; 0 edges: the exchange measurement).
fn child(spec: &str) {
    let mut words = spec.split(' ');
    let i: usize = words.next().unwrap().parse().unwrap();
    let edges: u64 = words.next().unwrap().parse().unwrap();
    let graph = if edges == 0 {
        Vec::new()
    } else {
        graph_of(edges)
    };
    let addresses: Vec<String> = words.map(str::to_string).collect();
    let ctx = Context::builder()
        .threads(1)
        .cluster(ClusterConfig::new(i, addresses).unwrap())
        .build()
        .unwrap();
    let work = match edges {
        0 => Work::Shuffle,
        _ => Work::PageRank(&graph),
    };
    let (ms, digest) = times(&ctx, work);
    let ms: Vec<String> = ms.iter().map(|t| format!("{t:.1}")).collect();
    println!("TIMES {digest} {}", ms.join(" "));
}

/// Runs the job on `n` child processes; process 0's times and digest.
fn cluster(n: usize, edges: u64) -> (Vec<f64>, u64) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(listeners);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(&exe)
                .env(CHILD, format!("{i} {edges} {}", addresses.join(" ")))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut first = None;
    for (i, mut c) in children.into_iter().enumerate() {
        let out = c.stdout.take().unwrap();
        let line = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("TIMES "))
            .unwrap_or_else(|| panic!("process {i} of {n} reported no times"));
        assert!(c.wait().unwrap().success());
        let mut words = line.split(' ').skip(1);
        let digest: u64 = words.next().unwrap().parse().unwrap();
        let ms: Vec<f64> = words.map(|w| w.parse().unwrap()).collect();
        if i == 0 {
            first = Some((ms, digest));
        }
    }
    first.unwrap()
}

/// Shuffle records per iteration that cross processes with `n` processes: the map side of
/// the contributions' `reduce_by_key` emits one combined record per distinct destination
/// per map partition (the partitions of `links`, placed by source), and a record crosses
/// when its reduce partition's process is not its map partition's.
fn crossing_records(edges: &[(u64, u64)], n: usize) -> (usize, usize) {
    let hash = Partitioner::hash(PARTITIONS);
    let mut distinct: std::collections::HashSet<(u64, u64)> = edges.iter().copied().collect();
    let mut per_map: Vec<std::collections::HashSet<u64>> = vec![Default::default(); PARTITIONS];
    for (src, dst) in distinct.drain() {
        per_map[hash.partition_of(&src)].insert(dst);
    }
    let mut total = 0;
    let mut crossing = 0;
    for (m, dsts) in per_map.iter().enumerate() {
        for dst in dsts {
            total += 1;
            if hash.partition_of(dst) % n != m % n {
                crossing += 1;
            }
        }
    }
    (total, crossing)
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let sizes: Vec<u64> = match std::env::var("FLINTLOCK_BENCH_EDGES") {
        Ok(v) => vec![v.parse().expect("FLINTLOCK_BENCH_EDGES: a number of edges")],
        Err(_) => vec![1_000_000, 5_000_000],
    };
    let local = Context::builder().threads(2).build().unwrap();
    // The machine's speed drifts: each round times the local run and then the cluster
    // runs, and the figures are the medians of the rounds' ratios.
    let mut ratios = Vec::new();
    let mut extra = Vec::new();
    let crossing = (0..SHUFFLED)
        .filter(|&x| {
            let key = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let map = (x * PARTITIONS as u64 / SHUFFLED) as usize;
            Partitioner::hash(PARTITIONS).partition_of(&key) % 2 != map % 2
        })
        .count();
    for _ in 0..ROUNDS {
        let local_ms = median(times(&local, Work::Shuffle).0);
        let ms = median(cluster(2, 0).0);
        ratios.push(ms / local_ms);
        extra.push((ms - local_ms) * 1e6 / crossing as f64);
        println!("  exchange round: local {local_ms:.0} ms, 2 processes {ms:.0} ms");
    }
    println!(
        "exchange: partition_by of {SHUFFLED} (u64, f64) records, {PARTITIONS} partitions, \
         {crossing} of them crossing processes with 2: {:.0} ns more per crossing record",
        median(extra)
    );
    println!(
        "RATIO cluster_2_processes/local partition_by_4m: {:.2}",
        median(ratios)
    );
    for edges in sizes {
        let graph = graph_of(edges);
        let mut ratios = [Vec::new(), Vec::new(), Vec::new()];
        let mut digest = None;
        for _ in 0..ROUNDS {
            let (local_ms, d) = times(&local, Work::PageRank(&graph));
            let local_ms = median(local_ms);
            assert_eq!(*digest.get_or_insert(d), d);
            let mut line = format!("  pagerank {edges} round: local {local_ms:.0} ms");
            for (slot, n) in [1, 2, 4].into_iter().enumerate() {
                let (ms, d) = cluster(n, edges);
                assert_eq!(Some(d), digest, "{n} processes computed other ranks");
                let ms = median(ms);
                ratios[slot].push(ms / local_ms);
                line += &format!(", {n} processes {ms:.0} ms");
            }
            println!("{line}");
        }
        for (slot, n) in [1, 2, 4].into_iter().enumerate() {
            let (total, crossing) = crossing_records(&graph, n);
            println!(
                "pagerank {edges} edges, {ITERATIONS} iterations, {PARTITIONS} partitions, {n} \
                 processes: contributions per iteration {total}, {crossing} of them crossing"
            );
            println!(
                "RATIO cluster_{n}_processes/local pagerank_{edges}: {:.2}",
                median(ratios[slot].clone())
            );
        }
    }
}
