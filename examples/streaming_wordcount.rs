//! A running word count over the new files of a folder, with Spark Streaming's checkpoints.
//!
//! ```text
//! cargo run --release --example streaming_wordcount                  # a demo folder fed by this program
//! cargo run --release --example streaming_wordcount -- --input DIR   # count the words of new files in DIR
//! cargo run --release --example streaming_wordcount -- --help
//! ```
//!
//! Stop it at any instant (Ctrl-C, `kill -9`) and run it again with the same folders: it
//! prints `recovered at batch N` and goes on where the last committed batch ended. No batch
//! is lost or counted twice: the counts in `--output` read as if it had never stopped.
//! Delete the `--checkpoint` folder to start over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use flintlock::streaming::{FileSink, StreamingContext, Until};
use flintlock::{Context, Result};

/// A stateful word count over a folder of text files on flintlock's micro-batch streaming:
/// each batch reads the files that appeared in the folder since the previous one, adds their
/// words to a running count (`update_state_by_key`, its state checkpointed every
/// `--checkpoint-every` batches) and writes the counts of every word to `--output`, one
/// folder per batch, exactly once. Run it again after any stop and it resumes from
/// `--checkpoint`.
#[derive(Parser, Debug)]
#[command(
    name = "streaming_wordcount",
    after_help = "Examples:\n  \
        cargo run --release --example streaming_wordcount\n  \
        cargo run --release --example streaming_wordcount -- --input ~/inbox --batches 100\n  \
        cargo run --release --example streaming_wordcount -- --interval-ms 200 --checkpoint-every 5"
)]
struct Args {
    /// The folder whose new files each batch reads (files whose names start with `.` or
    /// `_` are skipped: write elsewhere or under such a name, then rename). Without it, a
    /// demo folder under the checkpoint folder's parent gets one new file per batch.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The streaming checkpoint folder (plans, commits, state): reuse it to resume.
    #[arg(long, default_value = "target/streaming-wordcount/checkpoint")]
    checkpoint: PathBuf,
    /// Where each batch's counts go, one `batch-<id>` folder per batch.
    #[arg(long, default_value = "target/streaming-wordcount/out")]
    output: PathBuf,
    /// The batch interval in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    interval_ms: u64,
    /// How many batches this run processes before it stops (a later run continues).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    batches: u64,
    /// Write the state as a reliable checkpoint every this many batches.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    checkpoint_every: u32,
    /// How many of the most frequent words each batch prints.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    top: u64,
}

const DEMO_TEXT: &[&str] = &[
    "a checkpoint is a promise",
    "lineage grows with every batch until a checkpoint cuts it",
    "the state of a stream is its history folded into a value",
    "a batch is planned then computed then committed",
    "exactly once means once whatever happens",
];

#[path = "support/tracing_output.rs"]
mod tracing_output;

fn main() {
    tracing_output::init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let demo = args.input.is_none();
    let input = args.input.clone().unwrap_or_else(|| {
        args.checkpoint
            .parent()
            .unwrap_or(Path::new("."))
            .join("demo-input")
    });
    if !input.is_dir() {
        if demo {
            std::fs::create_dir_all(&input)
                .map_err(|e| format!("create folder {}: {e}", input.display()))?;
        } else {
            return Err(format!("--input {}: not a folder", input.display()).into());
        }
    }
    let ctx = Context::new();
    let interval = Duration::from_millis(args.interval_ms);
    let new_lines = Arc::new(Mutex::new(0u64));
    let (mut ssc, recovery) = StreamingContext::get_or_create(&ctx, &args.checkpoint, |ctx| {
        build(ctx, &args, &input, interval, new_lines.clone())
    })?;
    println!("{recovery}");
    for change in &recovery.changes {
        println!("  accepted change: {change}");
    }
    println!(
        "reading new files of {}, a batch every {interval:?}; state checkpoint every {} \
         batches in {}",
        input.display(),
        args.checkpoint_every,
        args.checkpoint.display()
    );
    let feeder = demo.then(|| spawn_feeder(input.clone(), interval, args.batches));
    let result = ssc.run(Until::Batches(args.batches));
    if let Some(f) = feeder {
        let _ = f.join();
    }
    result?;
    match ssc.last_committed() {
        Some(b) => println!(
            "stopped after batch {b}: counts in {}, run again to continue",
            FileSink::new(&args.output).batch_dir(b).display()
        ),
        None => println!("no batch committed"),
    }
    let needed = ssc.files_needed_for_recovery("files")?;
    println!(
        "{} input file(s) may still be read by a restart; the others may be moved away",
        needed.len()
    );
    Ok(())
}

/// The stream: new lines → words → running counts → a sink and a short report per batch.
fn build(
    ctx: &Context,
    args: &Args,
    input: &Path,
    interval: Duration,
    new_lines: Arc<Mutex<u64>>,
) -> Result<StreamingContext> {
    let mut ssc = StreamingContext::new(ctx, interval);
    let lines = ssc.text_file_stream("files", input);
    let seen = new_lines.clone();
    lines.count().foreach_rdd("line-count", move |rdd, _| {
        *seen.lock().expect("not poisoned") = rdd.collect()?.into_iter().sum();
        Ok(())
    });
    let counts = lines
        .flat_map(|line| {
            line.split_whitespace()
                .map(|w| w.to_lowercase())
                .collect::<Vec<_>>()
        })
        .map(|w| (w, 1u64))
        .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
            Some(old.unwrap_or(0) + new.iter().sum::<u64>())
        })
        .checkpoint_every(args.checkpoint_every);
    counts
        .map(|(w, n)| format!("{w} {n}"))
        .sink("counts-out", FileSink::new(&args.output));
    let top = args.top as usize;
    counts.foreach_rdd("report", move |rdd, batch| {
        let mut all: Vec<(String, u64)> = rdd.collect()?;
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let words: u64 = all.iter().map(|(_, n)| n).sum();
        let top: BTreeMap<usize, String> = all
            .iter()
            .take(top)
            .enumerate()
            .map(|(i, (w, n))| (i, format!("{w} {n}")))
            .collect();
        let lines = *new_lines.lock().expect("not poisoned");
        println!(
            "batch {:>4}: {lines:>3} new line{}, {words} words counted, top: {}",
            batch.id,
            if lines == 1 { "" } else { "s" },
            top.into_values().collect::<Vec<_>>().join(", ")
        );
        Ok(())
    });
    Ok(ssc)
}

/// Demo input: one new file per interval, written under a skipped name and renamed in.
fn spawn_feeder(dir: PathBuf, interval: Duration, files: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let first = std::fs::read_dir(&dir)
            .map(|r| {
                r.flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".txt")?.parse().ok())
                    .max()
                    .map_or(0, |n: u64| n + 1)
            })
            .unwrap_or(0);
        for i in first..first + files {
            let text: String = (0..=i % 4)
                .map(|k| DEMO_TEXT[((i + k) % DEMO_TEXT.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join("\n");
            let tmp = dir.join(format!("_{i:06}.txt"));
            let done = std::fs::write(&tmp, text + "\n")
                .and_then(|()| std::fs::rename(&tmp, dir.join(format!("{i:06}.txt"))));
            if let Err(e) = done {
                eprintln!("demo input: {e}");
                return;
            }
            std::thread::sleep(interval);
        }
    })
}
