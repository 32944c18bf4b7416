//! The `pagerank` example's command line: its arguments and the run they describe. Shared
//! by `main.rs` and the kill-and-resume test (`tests/pagerank_kill_resume.rs`, included by
//! path), so the test kills exactly the program users run.
#![allow(dead_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use flintlock::{Context, Event};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{graph, job};

/// PageRank on flintlock (Spark's classic RDD algorithm).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// Text edge list: one `src dst` pair per line, `#` comments skipped. Without it, the
    /// built-in generated graph is used.
    #[arg(long)]
    pub edges: Option<PathBuf>,
    /// Nodes of the built-in graph.
    #[arg(long, default_value_t = 100_000)]
    pub nodes: u64,
    /// Edges of the built-in graph.
    #[arg(long, default_value_t = 1_000_000)]
    pub edge_count: u64,
    /// Seed of the built-in graph.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Iterations of the rank update.
    #[arg(long, default_value_t = 10)]
    pub iterations: usize,
    /// Partitions of `links` and `ranks` (default: twice the worker threads).
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Worker threads (default: available parallelism).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Checkpoint `ranks` every N iterations; 0 = never.
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: usize,
    /// Checkpoint directory (default: a temporary folder removed at exit). With it, the
    /// checkpoints go to its app folder `pagerank/` and stay, so a killed run can resume.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the newest committed checkpoint in `--checkpoint-dir` (the same graph
    /// and partition count are required); starts at iteration 1 when there is none.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// Checkpoints kept; older ones are deleted once nothing reads them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Write every `node rank` line, sorted by node id, ranks with 6 decimals.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// How many top-ranked nodes to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write every job, stage, task and checkpoint event to FILE (JSON lines), for
    /// `flintlock report FILE -o report.html`.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Bound the memory that shuffles hold to MB megabytes: older iterations' shuffle
    /// outputs go to spill files (in the system's temporary folder) when newer ones need
    /// the room, so a long run without checkpoints stays flat in memory.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_limit: Option<u64>,
}

/// Runs the job `args` describe, printing progress to stdout.
pub fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let total = Instant::now();
    let temp = match &args.checkpoint_dir {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        temp.as_ref()
            .map(|t| t.path().to_path_buf())
            .unwrap_or_default()
    });
    let mut builder = Context::builder().checkpoint_dir(&checkpoint_dir);
    // A stable app id: a later run finds this one's checkpoints (and a second run on the
    // same folder at the same time is refused with `Locked`).
    builder = match &args.checkpoint_dir {
        Some(_) => builder.app_id("pagerank"),
        None => builder.app_name("pagerank"),
    };
    if let Some(t) = args.threads {
        builder = builder.threads(t);
    }
    if let Some(path) = &args.event_log {
        builder = builder.event_log(path);
    }
    if let Some(mb) = args.memory_limit {
        builder = builder.memory_limit(mb << 20);
    }
    let ctx = builder.build()?;
    let partitions = args.partitions.unwrap_or(2 * ctx.threads()).max(1);

    let edges = match &args.edges {
        Some(path) => {
            let e = job::read_edges(path)?;
            println!("graph: {} ({} edges)", path.display(), e.len());
            e
        }
        None => {
            let e = graph::generate(args.nodes, args.edge_count, args.seed)?;
            println!(
                "graph: built-in, {} nodes, {} edges, seed {}",
                args.nodes, args.edge_count, args.seed
            );
            e
        }
    };
    println!(
        "running {} iterations on {} partitions, {} threads, checkpoint every {}",
        args.iterations,
        partitions,
        ctx.threads(),
        if args.checkpoint_every == 0 {
            "never".to_string()
        } else {
            format!("{} iterations", args.checkpoint_every)
        }
    );

    let checkpoint_bytes = Arc::new(AtomicU64::new(0));
    let bytes = checkpoint_bytes.clone();
    ctx.add_listener(move |e: &Event| {
        if let Event::CheckpointCommitted { bytes: b, .. } = e {
            bytes.fetch_add(*b, Ordering::Relaxed);
        }
    });

    let config = job::Config {
        iterations: args.iterations,
        partitions,
        checkpoint_every: args.checkpoint_every,
        materialize_each_iteration: true,
        series: Some(job::Series {
            keep: usize::try_from(args.keep).unwrap_or(usize::MAX),
            resume: args.resume,
        }),
    };
    let job = job::Job::new(&ctx, edges, &config)?;
    match job.resumed_from() {
        Some((iteration, path)) => {
            println!("resumed at iteration {iteration} from {}", path.display())
        }
        None if args.resume => println!(
            "no checkpoint to resume from in {}: starting at iteration 1",
            ctx.checkpoint_dir()
                .unwrap_or_default()
                .join(ctx.app_id())
                .display()
        ),
        None => {}
    }
    println!(
        "lineage depth: the longest path from ranks to a source or checkpoint; 1 right after \
         a checkpoint, then {} since each round joins the cached links ({} deep), +5 a round",
        job.links_depth() + 5,
        job.links_depth()
    );
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::new(args.iterations as u64);
        bar.set_position(job.resumed_from().map_or(0, |(done, _)| done as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} iterations  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let loop_start = Instant::now();
    let ranks = job.run(|it| {
        let line = format!(
            "iteration {:>3}: {:>8.1} ms, lineage depth {:>4}{}",
            it.number,
            it.elapsed.as_secs_f64() * 1e3,
            it.lineage_depth,
            if it.checkpointed {
                "  [checkpoint written]"
            } else {
                ""
            }
        );
        match &bar {
            Some(b) => {
                b.println(&line);
                b.set_message(format!("depth {}", it.lineage_depth));
                b.inc(1);
            }
            None => println!("{line}"),
        }
    })?;
    let loop_time = loop_start.elapsed();
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let mut top: Vec<&(u64, f64)> = ranks.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    println!(
        "\ntop {} of {} ranked nodes:",
        args.top.min(top.len()),
        ranks.len()
    );
    for (node, rank) in top.iter().take(args.top) {
        println!("  {node:>10}  {rank:.6}");
    }
    if let Some(path) = &args.output {
        // Written beside it and renamed into place: a run killed while writing leaves the
        // previous output (or none), never a truncated one.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let mut temp = tempfile::NamedTempFile::new_in(dir.unwrap_or(Path::new(".")))?;
        let mut w = std::io::BufWriter::new(temp.as_file_mut());
        for (node, rank) in &ranks {
            writeln!(w, "{node} {rank:.6}")?;
        }
        w.flush()?;
        drop(w);
        temp.persist(path)?;
        println!("wrote {} ranks to {}", ranks.len(), path.display());
    }
    if let Some(path) = &args.event_log {
        // Complete on disk already: the log is flushed when each job ends.
        println!(
            "event log: {} (see it: cargo run --release -- report {} -o report.html)",
            path.display(),
            path.display()
        );
    }
    let iterations = args.iterations.max(1) as f64;
    println!(
        "\ntotal {:.2} s, loop {:.2} s, {:.1} ms per iteration, checkpoint bytes written {}",
        total.elapsed().as_secs_f64(),
        loop_time.as_secs_f64(),
        loop_time.as_secs_f64() * 1e3 / iterations,
        checkpoint_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
