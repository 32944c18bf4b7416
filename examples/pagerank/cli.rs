//! The `pagerank` example's command line: its arguments and the run they describe. Shared
//! by `main.rs` and the kill-and-resume test (`tests/pagerank_kill_resume.rs`, included by
//! path), so the test kills exactly the program users run.
#![allow(dead_code)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{CommandFactory, Parser};
use flintlock::{Context, Event};
use indicatif::{ProgressBar, ProgressStyle};

use super::{graph, job};

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
/// lineage. Without --checkpoint-dir they go to a temporary folder removed when the run
/// ends (with --processes: none are written) (also on Ctrl-C: the running job is
/// cancelled; a second Ctrl-C ends it at once); with it, to DIR/pagerank/, where the
/// newest --keep stay after the run, so that --resume continues a killed run from the
/// newest one (with the same graph and --partitions).
#[derive(Parser, Debug)]
#[command(name = "pagerank", version, after_help = EXAMPLES)]
pub struct Args {
    /// Text edge list: one `src dst` pair per line, `#` comments skipped. Without it, the
    /// built-in generated graph is used.
    #[arg(long, value_name = "FILE")]
    pub edges: Option<PathBuf>,
    /// Nodes of the built-in graph (2 to 1,000,000,000).
    #[arg(long, default_value_t = 100_000, conflicts_with = "edges")]
    pub nodes: u64,
    /// Edges of the built-in graph (at least one per node, at most 1,000,000,000).
    #[arg(long, default_value_t = 1_000_000, conflicts_with = "edges")]
    pub edge_count: u64,
    /// Seed of the built-in graph.
    #[arg(long, default_value_t = 42, conflicts_with = "edges")]
    pub seed: u64,
    /// Iterations of the rank update (1 to 100,000).
    #[arg(long, default_value_t = 10,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_ITERATIONS))]
    pub iterations: usize,
    /// Partitions of `links` and `ranks`, 1 to 10,000 (default: twice the worker threads,
    /// and at least one per 250,000 edges, so each partition's tables stay in a core's cache
    /// as the graph grows).
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
    /// Checkpoint directory (default: a temporary folder removed at exit; with
    /// --processes, none). With it, the checkpoints go to its app folder `pagerank/` and
    /// stay, so a killed run can resume.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the newest committed checkpoint in `--checkpoint-dir` (the same graph
    /// and partition count are required); starts at iteration 1 when there is none.
    #[arg(long, requires = "checkpoint_dir")]
    pub resume: bool,
    /// Checkpoints kept; older ones are deleted once nothing reads them.
    #[arg(long, default_value_t = 2, value_parser = at_least_one::<u64>)]
    pub keep: u64,
    /// Write every `node rank` line to FILE (`-`: standard output), sorted by node id,
    /// ranks with 6 decimals. Checked before the job starts; a regular file is replaced
    /// whole (keeping its permissions), never left half-written.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many top-ranked nodes to print (at least 1).
    #[arg(long, default_value_t = 10, value_parser = at_least_one::<usize>)]
    pub top: usize,
    /// Write every job, stage, task and checkpoint event to FILE (JSON lines), for
    /// `flintlock report FILE -o report.html`.
    #[arg(long, value_name = "FILE")]
    pub event_log: Option<PathBuf>,
    /// Bound the memory that shuffles hold to MB megabytes: older iterations' shuffle
    /// outputs go to spill files (in the system's temporary folder) when newer ones need
    /// the room, so a long run without checkpoints stays flat in memory.
    #[arg(long, value_name = "MB", value_parser = megabytes)]
    pub memory_limit: Option<u64>,
    /// Run as one of N processes (timely's `-n`; built with `--features cluster`): every
    /// process runs the same command with its own --process, and all print the same lines
    /// (only process 0 writes --output; `scripts/cluster.sh` sets these three from the
    /// environment and shows process 0's output). Checkpoints need --checkpoint-dir on
    /// storage every process shares (without it there are none); no event log yet in this
    /// mode.
    #[cfg(feature = "cluster")]
    #[arg(short = 'n', long, value_name = "N", requires = "process", env = "FLINTLOCK_PROCESSES",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub processes: Option<usize>,
    /// This process's index, 0 to N-1 (timely's `-p`).
    #[cfg(feature = "cluster")]
    #[arg(
        short = 'p',
        long,
        value_name = "P",
        requires = "processes",
        env = "FLINTLOCK_PROCESS"
    )]
    pub process: Option<usize>,
    /// The processes' `host:port` addresses, one per line (timely's hostfile; default:
    /// 127.0.0.1:2101 + P).
    #[cfg(feature = "cluster")]
    #[arg(
        long,
        value_name = "FILE",
        requires = "processes",
        env = "FLINTLOCK_HOSTFILE"
    )]
    pub hostfile: Option<PathBuf>,
}

impl Args {
    /// This process's place in a cluster, when the run is one process of several.
    #[cfg(feature = "cluster")]
    fn cluster(&self) -> Result<Option<flintlock::ClusterConfig>, Failure> {
        let (Some(n), Some(p)) = (self.processes, self.process) else {
            return Ok(None);
        };
        let config = match &self.hostfile {
            Some(path) => {
                flintlock::ClusterConfig::new(p, flintlock::cluster::read_hostfile(path, n)?)?
            }
            None => flintlock::ClusterConfig::local(n, p, 2101)?,
        };
        Ok(Some(config))
    }

    /// Whether this run is a process of a cluster other than process 0.
    fn secondary(&self) -> bool {
        #[cfg(feature = "cluster")]
        return self.process.is_some_and(|p| p > 0);
        #[cfg(not(feature = "cluster"))]
        false
    }
}

/// The example's `main`: parses and checks `args` (the program's name first), runs the
/// job. A usage error exits with status 2 before any work (clap's message, naming the
/// argument); a failed run prints `error: ...` (naming the path of a file it could not
/// read or write) and exits with status 1; an interrupted one with status 130.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) {
    let args = parse_args(args);
    if let Err(e) = run(args) {
        eprintln!("error: {e}");
        std::process::exit(if e.is::<Interrupted>() { 130 } else { 1 });
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
    let usage = |message: String| -> ! {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    };
    if args.edges.is_none()
        && let Err(message) = graph::check(args.nodes, args.edge_count)
    {
        usage(message);
    }
    #[cfg(feature = "cluster")]
    if let (Some(n), Some(p)) = (args.processes, args.process) {
        if p >= n {
            usage(format!("--process {p} is not below --processes {n}"));
        }
        if args.event_log.is_some() {
            usage("--event-log is not supported with --processes yet".to_string());
        }
    }
    // The files the run reads and writes must be distinct: the event log is created when
    // the context is, and the output replaces its file at the end.
    let files = [
        ("--edges", &args.edges),
        ("--event-log", &args.event_log),
        ("--output", &args.output),
    ];
    let files: Vec<(&str, &PathBuf)> = files
        .iter()
        .filter_map(|(name, path)| path.as_ref().map(|p| (*name, p)))
        .filter(|(_, p)| p.as_os_str() != "-")
        .collect();
    for (i, (a, pa)) in files.iter().enumerate() {
        for (b, pb) in &files[i + 1..] {
            if same_file(pa, pb) {
                usage(format!(
                    "{a} and {b} name the same file ({}): the run would overwrite it",
                    pa.display()
                ));
            }
        }
    }
    args
}

/// The folder a file `path` is (or would be) in: its parent, `.` for a bare name.
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether `a` and `b` are the same file, or would be once created: compared by their
/// resolved paths (symbolic links followed, `..` and `.` gone).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| -> PathBuf {
        if let Ok(full) = std::fs::canonicalize(p) {
            return full;
        }
        match (std::fs::canonicalize(folder_of(p)), p.file_name()) {
            (Ok(dir), Some(name)) => dir.join(name),
            _ => p.to_path_buf(),
        }
    };
    resolved(a) == resolved(b)
}

/// A count that must be positive.
fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialEq + From<u8>,
    T::Err: std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// The most `--memory-limit` takes: 16 TiB, in megabytes (more would overflow in bytes).
const MAX_MEMORY_MB: u64 = 1 << 24;

/// A memory limit in megabytes: 1 to [`MAX_MEMORY_MB`].
fn megabytes(text: &str) -> Result<u64, String> {
    let mb = at_least_one::<u64>(text)?;
    if mb > MAX_MEMORY_MB {
        return Err(format!("must be at most {MAX_MEMORY_MB} (16 TiB)"));
    }
    Ok(mb)
}

/// An error of the example, as `main` prints it.
pub type Failure = Box<dyn std::error::Error>;

/// `what` failed on `path`: an I/O error that names the path it happened on.
fn at(what: &str, path: &Path, e: impl std::fmt::Display) -> Failure {
    format!("{what} {}: {e}", path.display()).into()
}

/// Edges per partition above which the default partition count grows with the graph.
///
/// Measured on a machine with 512 KiB of L2 cache per core (`docs/BENCHMARKS.md`,
/// PageRank's growth with graph size): a partition of 250,000 edges (25,000 nodes) keeps
/// its hash tables about that large; with four partitions for 5,000,000 edges, time per
/// edge grew 1.5× over 1,000,000 edges, with twenty 1.13–1.15×.
const EDGES_PER_PARTITION: usize = 250_000;

/// The partition count without `--partitions`: twice the worker threads (two tasks per
/// core balance uneven partitions), and at least one per [`EDGES_PER_PARTITION`] edges.
pub fn default_partitions(threads: usize, edges: usize) -> usize {
    (2 * threads)
        .max(edges.div_ceil(EDGES_PER_PARTITION))
        .clamp(1, MAX_PARTITIONS as usize)
}

/// `n` and `word`, plural unless `n` is 1 ("1 partition", "4 partitions").
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Where `--output` goes, claimed before any work.
enum Output {
    /// `-`: standard output.
    Stdout,
    /// An existing file that is not a regular one (`/dev/stdout`, a named pipe): written
    /// in place, as a shell redirection would.
    InPlace(std::fs::File),
    /// A regular file (new, or replaced whole): a temporary file beside it (beside the
    /// file a symbolic link points to), renamed over it once every rank is in, so that a
    /// run that fails leaves the previous file (or none), never a truncated one. It gets
    /// the replaced file's permissions, or a new file's (as the umask allows).
    Replace {
        target: PathBuf,
        temp: tempfile::NamedTempFile,
    },
}

impl Output {
    /// Claims `path` (the user's spelling, for messages), or fails naming it.
    fn claim(path: &Path) -> Result<Output, Failure> {
        let fail = |why: &dyn std::fmt::Display| at("cannot write the output", path, why);
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout);
        }
        // Symbolic links are followed: the file they point to is the one replaced.
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let existing = std::fs::metadata(&target).ok();
        match &existing {
            Some(m) if m.is_dir() => return Err(fail(&"it is a directory")),
            Some(m) if !m.is_file() => {
                let file = std::fs::OpenOptions::new().write(true).open(&target);
                return file.map(Output::InPlace).map_err(|e| fail(&e));
            }
            _ => {}
        }
        let dir = folder_of(&target);
        if !dir.is_dir() {
            return Err(fail(&format!(
                "its folder {} does not exist",
                dir.display()
            )));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".pagerank-output");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let new_file = std::fs::Permissions::from_mode(0o666);
            builder.permissions(existing.map_or(new_file, |m| m.permissions()));
        }
        let temp = builder
            .tempfile_in(dir)
            // The kind alone ("permission denied"): tempfile's message names its own file.
            .map_err(|e| fail(&e.kind()))?;
        Ok(Output::Replace { target, temp })
    }

    /// Writes every `node rank` line and puts the file in place.
    fn write(self, ranks: &[(u64, f64)], path: &Path) -> Result<(), Failure> {
        let fail = |e: std::io::Error| at("cannot write the output", path, e);
        fn lines(w: impl Write, ranks: &[(u64, f64)]) -> std::io::Result<()> {
            let mut w = std::io::BufWriter::new(w);
            for (node, rank) in ranks {
                writeln!(w, "{node} {rank:.6}")?;
            }
            w.flush()
        }
        match self {
            Output::Stdout => lines(std::io::stdout().lock(), ranks).map_err(fail),
            Output::InPlace(file) => lines(file, ranks).map_err(fail),
            Output::Replace { target, mut temp } => {
                lines(temp.as_file_mut(), ranks).map_err(fail)?;
                temp.persist(&target).map(drop).map_err(|e| fail(e.error))
            }
        }
    }
}

/// How a run that was interrupted (Ctrl-C, SIGTERM) ends: `main` exits with status 130.
/// It says what became of the checkpoints.
#[derive(Debug)]
pub struct Interrupted(String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: the running job was cancelled; {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Set by Ctrl-C or SIGTERM (the handler is installed once per process; `None` when
/// another handler was there first). A second signal ends the process at once.
fn interrupt_flag() -> Option<&'static AtomicBool> {
    static FLAG: std::sync::OnceLock<Option<&'static AtomicBool>> = std::sync::OnceLock::new();
    *FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .ok()
        .map(|()| flag)
    })
}

/// Cancels `ctx`'s jobs while an interrupt is pending, until the returned guard drops: a
/// run interrupted mid-iteration ends as a failed one does, and its temporary checkpoint
/// folder and output file are removed on the way out.
fn cancel_on_interrupt(ctx: &Context) -> Option<impl Drop + use<>> {
    struct Watch(
        Option<std::sync::mpsc::Sender<()>>,
        Option<std::thread::JoinHandle<()>>,
    );
    impl Drop for Watch {
        fn drop(&mut self) {
            drop(self.0.take());
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }
    let flag = interrupt_flag()?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let ctx = ctx.clone();
    let thread = std::thread::spawn(move || loop {
        if flag.load(Ordering::SeqCst) {
            ctx.cancel_all_jobs();
        }
        match stopped.recv_timeout(std::time::Duration::from_millis(20)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    });
    Some(Watch(Some(stop), Some(thread)))
}

/// Runs the job `args` describe, printing progress to stdout. The output file is claimed
/// before anything else, so that a path it cannot be written to fails at once.
pub fn run(args: Args) -> Result<(), Failure> {
    let total = Instant::now();
    // In a cluster every process computes the same ranks; process 0 writes them.
    let output = match &args.output {
        Some(path) if !args.secondary() => Some((path, Output::claim(path)?)),
        _ => None,
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
    // A cluster's processes write one checkpoint together, into a folder they all see:
    // each process's temporary folder would not do, so without --checkpoint-dir a cluster
    // writes none.
    #[allow(unused_mut)]
    let mut checkpoint_every = args.checkpoint_every;
    #[cfg(feature = "cluster")]
    if let Some(cluster) = args.cluster()? {
        builder = builder.cluster(cluster);
        if args.checkpoint_dir.is_none() {
            checkpoint_every = 0;
        }
    }
    let ctx = builder.build()?;
    let app_folder = checkpoint_dir.join(ctx.app_id());
    let watch = cancel_on_interrupt(&ctx);
    // An error after an interrupt is the interrupt's.
    let or_interrupted = |e: Failure| -> Failure {
        if !interrupt_flag().is_some_and(|f| f.load(Ordering::SeqCst)) {
            return e;
        }
        let kept = match &args.checkpoint_dir {
            Some(_) => format!(
                "committed checkpoints stay in {} (the same command with --resume \
                 continues from the newest)",
                app_folder.display()
            ),
            None => "the temporary checkpoint folder is removed".to_string(),
        };
        Box::new(Interrupted(kept))
    };

    let edges = match &args.edges {
        Some(path) => {
            let e = job::read_edges(path)?;
            if e.is_empty() {
                return Err(at("no edges in", path, "nothing to rank"));
            }
            println!("graph: {} ({})", path.display(), count(e.len(), "edge"));
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
    let partitions = args
        .partitions
        .unwrap_or_else(|| default_partitions(ctx.threads(), edges.len()));
    println!(
        "running {} on {}, {}, checkpoint {}",
        count(args.iterations, "iteration"),
        count(partitions, "partition"),
        count(ctx.threads(), "thread"),
        match checkpoint_every {
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
        checkpoint_every,
        materialize_each_iteration: true,
        series: Some(job::Series {
            keep: usize::try_from(args.keep).unwrap_or(usize::MAX),
            resume: args.resume,
        }),
    };
    let job = job::Job::new(&ctx, edges, &config).map_err(|e| -> Failure {
        match &e {
            // The default partition count follows the thread count, which another machine
            // (or --threads) changes: say which to pass.
            flintlock::Error::ResumeMismatch {
                key,
                recorded: Some(recorded),
                ..
            } if key == "partitions" && args.partitions.is_none() => format!(
                "{e}\n(without --partitions the run uses twice its threads, or one partition \
                 per {EDGES_PER_PARTITION} edges if that is more; pass --partitions \
                 {recorded} to resume this checkpoint)"
            )
            .into(),
            _ => e.into(),
        }
    });
    let job = job.map_err(or_interrupted)?;
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
    let mut written = 0usize;
    let mut newest = None;
    let loop_start = Instant::now();
    let ranks = job.run(|it| {
        if it.checkpointed {
            written += 1;
            newest = Some(it.number);
        }
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
    });
    drop(watch);
    let ranks = ranks.map_err(|e| or_interrupted(e.into()))?;
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
    if let Some((path, output)) = output {
        let to_stdout = matches!(output, Output::Stdout);
        output.write(&ranks, path)?;
        if !to_stdout {
            println!("wrote {} to {}", count(ranks.len(), "rank"), path.display());
        }
    }
    if let Some(path) = &args.event_log {
        // Complete on disk already: the log is flushed when each job ends.
        println!(
            "event log: {} (see it: cargo run --release -- report {} -o report.html)",
            path.display(),
            path.display()
        );
    }
    let done = args.iterations - job_resumed_at;
    match (newest, &args.checkpoint_dir) {
        (None, _) if checkpoint_every != args.checkpoint_every => {
            println!(
                "checkpoints: none (with --processes, they need --checkpoint-dir on storage \
                 every process shares)"
            )
        }
        (None, _) if checkpoint_every == 0 => {
            println!("checkpoints: none written (--checkpoint-every 0)")
        }
        (None, _) => println!(
            "checkpoints: none written (one every {} iterations; this run did {})",
            checkpoint_every, done
        ),
        (Some(_), None) => println!(
            "checkpoints: {} written to {}, a temporary folder removed as the run ends \
             (--checkpoint-dir DIR keeps them, for --resume)",
            written,
            app_folder.display()
        ),
        (Some(newest), Some(_)) => println!(
            "checkpoints: {} written; kept in {}, the newest of iteration {newest} (the same \
             command with --resume continues from it)",
            written,
            app_folder.display()
        ),
    }
    println!(
        "\ntotal {:.2} s, loop {:.2} s, {:.1} ms per iteration, checkpoint bytes written {}",
        total.elapsed().as_secs_f64(),
        loop_time.as_secs_f64(),
        loop_time.as_secs_f64() * 1e3 / done.max(1) as f64,
        checkpoint_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
