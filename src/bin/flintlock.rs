//! `flintlock`: works on checkpoint folders without knowing the element type.
//!
//! ```text
//! flintlock list DIR                     apps, series, steps, types, sizes, status
//! flintlock verify PATH                  every checksum and frame; exit status 1 on damage
//! flintlock show PATH                    the manifest and a table of its parts
//! flintlock gc DIR [--keep N] [--dry-run]
//! flintlock report EVENTLOG -o report.html   an HTML page of an event log's jobs
//! ```
//! `--json` on each prints the report as JSON, for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flintlock::checkpoint::admin;

#[derive(Parser)]
#[command(
    name = "flintlock",
    version,
    about = "Inspect, verify and clean flintlock checkpoints; turn event logs into reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apps, series, steps, element types, partitions, records, bytes, write time and status
    /// (committed / uncommitted / damaged; apps locked by a live process) under DIR.
    List {
        /// The checkpoint directory (the one given to `checkpoint_dir`).
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Checks every checksum and frame of a checkpoint folder; exit status 1 on damage.
    Verify {
        /// A checkpoint folder (`<dir>/<app>/rdd-<id>-<write id>`).
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The manifest of a checkpoint folder and a table of its part files.
    Show {
        /// A checkpoint folder.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Removes uncommitted leftovers of dead owners and, with --keep, all but the newest N
    /// checkpoints of each series; never touches an app a live process holds, and does not
    /// apply --keep in a stream's state and input-log folders (the stream's commits say
    /// which steps a restart reads). A process
    /// that reads an old step through `open_checkpoint` without owning its app folder is not
    /// seen: run gc --keep when no such reader runs. On S3, an uncommitted attempt goes only
    /// after nothing was written below it for 15 minutes (a writer may be stalled).
    Gc {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Keep the newest N checkpoints of each series (N >= 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes one self-contained HTML page (no network, no script) from an event log
    /// (`Context::builder().event_log(path)`): each job's lineage drawn with its checkpoint
    /// states, stages and shuffles, a timeline of tasks per worker thread, the checkpoint
    /// writes, and lineage depth and time per job. Lines of a damaged or cut-off log are
    /// skipped, and the report says which.
    Report {
        /// The event log.
        event_log: PathBuf,
        /// The HTML file to write.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flintlock: {e}");
            ExitCode::from(2)
        }
    }
}

fn json(value: &impl serde::Serialize) -> flintlock::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| flintlock::Error::InvalidArgument(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

fn run(cli: Cli) -> flintlock::Result<ExitCode> {
    match cli.command {
        Command::Report { event_log, output } => {
            let summary = flintlock::report::write(&event_log, &output)?;
            for s in summary.skipped.iter().take(10) {
                eprintln!(
                    "flintlock: {} line {}: skipped: {}",
                    event_log.display(),
                    s.line,
                    s.reason
                );
            }
            if summary.skipped.len() > 10 {
                eprintln!(
                    "flintlock: and {} more lines skipped (listed in the report)",
                    summary.skipped.len() - 10
                );
            }
            for (job, why) in summary.not_drawn.iter().take(3) {
                eprintln!("flintlock: the lineage of job {job} is not drawn: {why}");
            }
            println!(
                "wrote {}: {} jobs, {} stages, {} tasks{}",
                output.display(),
                summary.jobs,
                summary.stages,
                summary.tasks,
                if summary.skipped.is_empty() {
                    String::new()
                } else {
                    format!(" ({} lines of the log skipped)", summary.skipped.len())
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::List { dir, json: as_json } => {
            let apps = admin::list(&dir)?;
            if as_json {
                json(&apps)?;
                return Ok(ExitCode::SUCCESS);
            }
            if apps.is_empty() {
                println!(
                    "no flintlock app folders in {} (give the checkpoint directory, the \
                     one passed to checkpoint_dir, or an app folder in it)",
                    dir.display()
                );
            }
            for app in &apps {
                println!(
                    "{}  ({}){}",
                    app.app,
                    app.path.display(),
                    if app.locked {
                        "  locked by a live process"
                    } else {
                        ""
                    }
                );
                println!(
                    "  {:<34} {:<11} {:<10} {:>6} {:>6} {:>10} {:>12} {:<27} type",
                    "checkpoint",
                    "status",
                    "series",
                    "step",
                    "parts",
                    "records",
                    "bytes",
                    "written at"
                );
                for c in &app.checkpoints {
                    let name = c.path.file_name().map(|n| n.to_string_lossy().into_owned());
                    println!(
                        "  {:<34} {:<11} {:<10} {:>6} {:>6} {:>10} {:>12} {:<27} {}",
                        opt(&name),
                        c.status,
                        opt(&c.series.as_ref().map(|s| s.escape_debug().to_string())),
                        opt(&c.step),
                        opt(&c.partitions),
                        opt(&c.records),
                        opt(&c.bytes),
                        opt(&c.written_at),
                        c.element_type
                            .clone()
                            .or_else(|| c.problem.clone())
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            path,
            json: as_json,
        } => {
            let report = admin::verify(&path)?;
            if as_json {
                json(&report)?;
            } else if report.problems.is_empty() {
                println!(
                    "ok: {} parts, {} records, every checksum verified",
                    report.parts_checked, report.records
                );
            } else {
                let what = if report.committed {
                    "damaged"
                } else {
                    "not committed"
                };
                for p in &report.problems {
                    println!("{what}: {p}");
                }
            }
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Show {
            path,
            json: as_json,
        } => {
            let m = admin::show(&path)?;
            if as_json {
                json(&m)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!("checkpoint  {}", path.display());
            println!("format      {} version {}", m.format, m.version);
            println!("app id      {}", m.app_id);
            println!("rdd id      {}", m.rdd_id);
            println!("write id    {:016x}", m.write_id);
            println!("type        {}", m.element_type);
            println!("layout      {}", opt(&m.element_layout));
            println!(
                "partitioner {}",
                opt(&m.partitioner.as_ref().map(|p| format!("{p:?}")))
            );
            println!("compression {:?}", m.compression);
            println!("written at  {}", opt(&m.written_at));
            if let Some(s) = &m.series {
                println!("series      {} step {} meta {:?}", s.name, s.step, s.meta);
            }
            println!(
                "{:<12} {:>12} {:>12} {:>10}",
                "part", "bytes", "records", "crc32c"
            );
            for p in &m.parts {
                println!(
                    "{:<12} {:>12} {:>12} {:>10}",
                    p.file,
                    p.bytes,
                    p.records,
                    format!("{:08x}", p.crc32c)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc {
            dir,
            keep,
            dry_run,
            json: as_json,
        } => {
            let keep = keep.map(|k| usize::try_from(k).unwrap_or(usize::MAX));
            let report = admin::gc(&dir, keep, dry_run)?;
            if as_json {
                json(&report)?;
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                for r in &report.removed {
                    println!("{verb} {} ({})", r.path.display(), r.reason);
                }
                for app in &report.skipped_locked {
                    println!("skipped {}: held by a live process", app.display());
                }
                for app in &report.kept_for_streams {
                    println!(
                        "--keep not applied in {}: a stream's folder, retained by its commits",
                        app.display()
                    );
                }
                println!("{} {verb}", report.removed.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
