//! The `pagerank` example's command line: its arguments and the run they describe. Shared
//! by `main.rs` and the kill-and-resume test (`tests/pagerank_kill_resume.rs`, included by
//! path), so the test kills exactly the program users run.
#![allow(dead_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, Parser};
use flintlock::{Context, Event};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{graph, job};

/// The examples `--help` ends with.
const EXAMPLES: &str = "\
Examples:
  cargo run --release --example pagerank
      the built-in graph (100,000 nodes, 1,000,000 edges), 10 iterations
  cargo run --release --example pagerank -- --edges graph.txt --output ranks.txt
      your graph; every node's rank written to ranks.txt
  cargo run --release --example pagerank -- --checkpoint-dir ckpt --iterations 50
      checkpoints kept in ckpt/pagerank/; after a crash, the same command with --resume
      continues from the newest one
  RUST_LOG=flintlock=debug cargo run --release --example pagerank
      the engine's jobs, stages, tasks and checkpoint phases, as tracing output";

/// The most iterations, partitions and threads the example accepts: far past any sensible
/// run, short of one that could only be a typo.
const MAX_ITERATIONS: u64 = 100_000;
const MAX_PARTITIONS: u64 = 10_000;
const MAX_THREADS: u64 = 1_024;

/// PageRank on flintlock, the way Spark's classic example computes it.
///
/// Reads a directed graph (a text edge list, or a built-in generated one) and builds
/// `links`: each node's distinct out-neighbours, hash-partitioned and cached. Each
/// iteration, every node sends rank / out-degree to each of its neighbours, and a node's
/// new rank is 0.15 + 0.85 × the sum it received (ranks start at 1.0). Prints a line per
/// iteration (its time and the lineage depth of `ranks`) and the top-ranked nodes.
///
/// Input (--edges FILE): one `src dst` pair of non-negative integer node ids per line,
/// separated by whitespace; empty lines and lines starting with `#` are skipped; a repeated
/// edge counts once.
///
/// Checkpoints: `ranks` is checkpointed every --checkpoint-every iterations, which cuts its
/// lineage. Without --checkpoint-dir they go to a temporary folder removed at exit; with
/// it, to DIR/pagerank/, where the newest --keep stay after the run, so that --resume
/// continues a killed run from the newest one.
#[derive(Parser, Debug)]
#[command(name = "pagerank", version, about, long_about, after_help = EXAMPLES)]
pub struct Args {
    /// Text edge list: one `src dst` pair per line, `#` comments skipped. Without it, the
    /// built-in generated graph is used.
    #[arg(long, value_name = "FILE")]
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
    /// Iterations of the rank update (1 to 100,000).
    #[arg(long, default_value_t = 10,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_ITERATIONS))]
    pub iterations: usize,
    /// Partitions of `links` and `ranks`, 1 to 10,000 (default: twice the worker threads).
    #[arg(long,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_PARTITIONS))]
    pub partitions: Option<usize>,
    /// Worker threads, 1 to 1,024 (default: available parallelism).
    #[arg(long,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_THREADS))]
    pub threads: Option<usize>,
    /// Checkpoint `ranks` every N iterations; 0 = never.
    #[arg(long, default_value_t = 5)]
    pub checkpoint_every: usize,
    /// Checkpoint directory (default: a temporary folder removed at exit). With it, the
    /// checkpoints go to its app folder `pagerank/` and stay, so a killed run can resume.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the newest committed checkpoint in `--checkpoint-dir` (the same graph
    /// and partition count are required); starts at iteration 1 when there is none.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// Checkpoints kept; older ones are deleted once nothing reads them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Write every `node rank` line to FILE, sorted by node id, ranks with 6 decimals
    /// (checked before the job starts; replaced whole, never left half-written).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many top-ranked nodes to print (at least 1).
    #[arg(long, default_value_t = 10, value_parser = at_least_one)]
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

/// The example's `main`: parses and checks `args` (the program's name first), runs the job. A usage error exits with status 2 before any work (clap's
/// message, naming the argument); a failed run prints `error: ...` (naming the path of a
/// file it could not read or write) and exits with status 1.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) {
    let args = parse_args(args);
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The command line, parsed and checked: a value no run could use (out of range, or a
/// built-in graph that cannot be built) ends the process with clap's usage error (status
/// 2) before any work starts.
pub fn parse_args<I, T>(args: I) -> Args
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    if args.edges.is_none() {
        if let Err(message) = graph::check(args.nodes, args.edge_count) {
            Args::command()
                .error(clap::error::ErrorKind::ValueValidation, message)
                .exit();
        }
    }
    args
}

/// A count that must be positive.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// An error of the example, as `main` prints it.
pub type Failure = Box<dyn std::error::Error>;

/// `what` failed on `path`: an I/O error that names the path it happened on.
fn at(what: &str, path: &Path, e: impl std::fmt::Display) -> Failure {
    format!("{what} {}: {e}", path.display()).into()
}

/// `n` and `word`, plural unless `n` is 1 ("1 partition", "4 partitions").
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Where `--output` will be written, claimed before any work: a temporary file beside it,
/// renamed over it once every rank is in (a run that fails or is killed leaves the
/// previous file, or none, never a truncated one). Fails, naming the path, when the file
/// could not be written there.
fn claim_output(path: &Path) -> Result<tempfile::NamedTempFile, Failure> {
    if path.is_dir() {
        return Err(at("cannot write the output", path, "it is a directory"));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    if !dir.is_dir() {
        let why = format!("its folder {} does not exist", dir.display());
        return Err(at("cannot write the output", path, why));
    }
    tempfile::Builder::new()
        .prefix(".pagerank-output")
        .tempfile_in(dir)
        // The kind alone ("permission denied"): tempfile's message names its own file.
        .map_err(|e| at("cannot write the output", path, e.kind()))
}

/// Runs the job `args` describe, printing progress to stdout. The output file is claimed
/// before anything else, so that a path it cannot be written to fails at once.
pub fn run(args: Args) -> Result<(), Failure> {
    let total = Instant::now();
    let output = match &args.output {
        Some(path) => Some((path, claim_output(path)?)),
        None => None,
    };
    let temp = match &args.checkpoint_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("pagerank")
                .tempdir()
                .map_err(|e| {
                    at(
                        "cannot create a temporary checkpoint folder in",
                        &std::env::temp_dir(),
                        e,
                    )
                })?,
        ),
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
    let partitions = args.partitions.unwrap_or(2 * ctx.threads());

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
        "running {} on {}, {}, checkpoint {}",
        count(args.iterations, "iteration"),
        count(partitions, "partition"),
        count(ctx.threads(), "thread"),
        match args.checkpoint_every {
            0 => "never".to_string(),
            1 => "every iteration".to_string(),
            n => format!("every {n} iterations"),
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
    let job_resumed_at = job.resumed_from().map_or(0, |(done, _)| done);
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
        "\ntop {} of {}:",
        args.top.min(top.len()),
        count(ranks.len(), "ranked node")
    );
    for (node, rank) in top.iter().take(args.top) {
        println!("  {node:>10}  {rank:.6}");
    }
    if let Some((path, mut file)) = output {
        let write = |file: &mut tempfile::NamedTempFile| -> std::io::Result<()> {
            let mut w = std::io::BufWriter::new(file.as_file_mut());
            for (node, rank) in &ranks {
                writeln!(w, "{node} {rank:.6}")?;
            }
            w.flush()
        };
        write(&mut file).map_err(|e| at("cannot write the output", path, e))?;
        file.persist(path)
            .map_err(|e| at("cannot write the output", path, e.error))?;
        println!("wrote {} to {}", count(ranks.len(), "rank"), path.display());
    }
    if let Some(path) = &args.event_log {
        // Complete on disk already: the log is flushed when each job ends.
        println!(
            "event log: {} (see it: cargo run --release -- report {} -o report.html)",
            path.display(),
            path.display()
        );
    }
    let app_folder = checkpoint_dir.join(ctx.app_id());
    match (args.checkpoint_every, &args.checkpoint_dir) {
        (0, _) => println!("checkpoints: none written (--checkpoint-every 0)"),
        (_, None) => println!(
            "checkpoints: in {}, a temporary folder removed at exit (--checkpoint-dir DIR keeps \
             them, for --resume)",
            app_folder.display()
        ),
        (_, Some(_)) => println!(
            "checkpoints: kept in {} (at most the newest {}; the same command with --resume \
             continues from there)",
            app_folder.display(),
            args.keep
        ),
    }
    let done = args.iterations - job_resumed_at;
    println!(
        "\ntotal {:.2} s, loop {:.2} s, {:.1} ms per iteration, checkpoint bytes written {}",
        total.elapsed().as_secs_f64(),
        loop_time.as_secs_f64(),
        loop_time.as_secs_f64() * 1e3 / done.max(1) as f64,
        checkpoint_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
