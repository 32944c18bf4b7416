//! Restartable jobs, in one run:
//!
//! - **Resume.** A PageRank (built-in graph, 1,000,000 edges) resumed from its checkpoint of
//!   iteration 10 runs one more iteration, against a fresh start that runs one iteration, and
//!   against a fresh start that runs all 11. Both start-ups build `links` from the edges; the
//!   resume also opens the newest checkpoint (manifests only) and reads it once to check key
//!   placement before its first narrow join.
//! - **Keep.** 20 steps of a 100,000-pair job, each committed as a checkpoint: plain
//!   `checkpoint()` calls (nothing removed), a series keeping everything, and a series
//!   keeping 2 (one removal per commit: the manifest first, fsynced, then the parts).
//!
//! `cargo bench --bench restart`: the `RATIO` and `KEEP` lines are the figures.

#[path = "../examples/pagerank/graph.rs"]
mod graph;
#[path = "../examples/pagerank/job.rs"]
mod job;
mod support;

use std::path::Path;

use flintlock::{Context, Partitioner, Rdd};

const DONE: usize = 10;
const STEPS: u64 = 20;

fn ctx(dir: &Path, app_id: Option<&str>) -> Context {
    let b = Context::builder().checkpoint_dir(dir);
    match app_id {
        Some(id) => b.app_id(id),
        None => b.app_name("bench-restart").clean_checkpoints(true),
    }
    .build()
    .unwrap()
}

fn config(iterations: usize, every: usize, series: Option<job::Series>) -> job::Config {
    job::Config {
        iterations,
        partitions: 4,
        checkpoint_every: every,
        materialize_each_iteration: false,
        series,
    }
}

fn resume_bench(edges: &[(u64, u64)]) {
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = ctx(dir.path(), Some("pagerank"));
        let series = job::Series {
            keep: 2,
            resume: false,
        };
        job::run(&ctx, edges.to_vec(), &config(DONE, 5, Some(series)), |_| {}).unwrap();
    }
    let resume = || {
        let ctx = ctx(dir.path(), Some("pagerank"));
        let series = job::Series {
            keep: 2,
            resume: true,
        };
        let job = job::Job::new(&ctx, edges.to_vec(), &config(DONE + 1, 5, Some(series)));
        let job = job.unwrap();
        assert_eq!(job.resumed_from().map(|(i, _)| i), Some(DONE));
        job.run(|_| {}).unwrap().len()
    };
    let scratch = tempfile::tempdir().unwrap();
    let fresh = |iterations: usize| {
        let ctx = ctx(scratch.path(), None);
        job::run(&ctx, edges.to_vec(), &config(iterations, 0, None), |_| {})
            .unwrap()
            .len()
    };
    let reps = 11;
    let name = "pagerank 1M edges";
    support::compare(
        reps,
        name,
        "resume at 10 + 1 iteration",
        resume,
        "fresh start + 1 iteration",
        || fresh(1),
    );
    support::compare(
        reps,
        name,
        "resume at 10 + 1 iteration",
        resume,
        "fresh start + 11 iterations",
        || fresh(DONE + 1),
    );
}

/// Seconds of 20 steps of a 100,000-pair job, every step committed; `keep`: `None` for
/// plain `checkpoint()` calls, else a series keeping that many. Only the steps are timed,
/// not the set-up or the removal of the folder afterwards.
fn steps(keep: Option<usize>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), Some("keep"));
    let mut r: Rdd<(u64, u64)> = ctx
        .parallelize((0..100_000u64).map(|k| (k, k)).collect(), 4)
        .partition_by(Partitioner::hash(4))
        .cache();
    r.count().unwrap();
    let mut cp = keep.map(|k| ctx.checkpointer::<(u64, u64)>("steps").keep(k));
    let start = std::time::Instant::now();
    for step in 1..=STEPS {
        r = r.map_values(|v| v + 1);
        match cp.as_mut() {
            Some(cp) => assert!(cp.update(step, &r).unwrap()),
            None => r.checkpoint().unwrap(),
        }
        r.count().unwrap();
    }
    start.elapsed().as_secs_f64()
}

fn keep_bench() {
    let variants = [None, Some(usize::MAX), Some(2)];
    let mut times = vec![Vec::new(); variants.len()];
    for rep in 0..10 {
        for (i, &keep) in variants.iter().enumerate() {
            let t = steps(keep);
            if rep > 0 {
                times[i].push(t); // the first round warms up
            }
        }
    }
    let per = |i: usize| {
        let mut v = times[i].clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3 / STEPS as f64
    };
    println!(
        "KEEP {STEPS} commits of 100k pairs: {:.2} ms per commit with plain checkpoint(), \
         {:.2} ms in a series keeping all, {:.2} ms in a series keeping 2 \
         (the removal: {:+.2} ms per commit)",
        per(0),
        per(1),
        per(2),
        per(2) - per(1),
    );
}

fn main() {
    let only = std::env::var("FLINTLOCK_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if run("resume") {
        let edges = graph::generate(100_000, 1_000_000, 42).unwrap();
        resume_bench(&edges);
    }
    if run("keep") {
        keep_bench();
    }
}
