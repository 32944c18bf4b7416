//! The `pagerank` example's command line, as a newcomer meets it: `--help` says what the
//! program computes, what it reads and where checkpoints go; an argument no run could use
//! is a usage error (status 2, naming the argument) before any work starts; a path it
//! cannot read or write fails (status 1) with a message naming the path, and an output
//! path is checked before the job; the closing lines say where the checkpoints are and
//! count in proper English.
//!
//! Each case runs the example's own `main` (`examples/pagerank/cli.rs`, included by path)
//! in a child process, as `tests/pagerank_kill_resume.rs` does.

use crate::common;

// The pagerank example's modules (the suite includes them once).
use crate::cli;

use std::path::Path;

const CHILD_ENV: &str = "FLINTLOCK_TEST_PAGERANK_COMMAND_LINE";

/// Runs only as the child: the example's `main` on the arguments in the environment (one
/// per line).
#[test]
#[ignore = "a child process: every other test of this file starts it"]
fn child_runs_the_pagerank_main() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return; // not the child
    };
    let args: Vec<std::ffi::OsString> = std::iter::once("pagerank")
        .chain(args.lines())
        .map(Into::into)
        .collect();
    cli::main(args);
}

/// What a run printed, and how it ended.
struct Outcome {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Nothing was computed: no graph was read or generated.
    fn did_no_work(&self) -> bool {
        !self.stdout.contains("graph:") && !self.stdout.contains("iteration")
    }
}

fn pagerank(args: &[&str]) -> Outcome {
    let out = common::child_test("child_runs_the_pagerank_main")
        .env(CHILD_ENV, args.join("\n"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the child runs");
    Outcome {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A small built-in graph, so that a run that is allowed to start ends quickly.
const SMALL: [&str; 6] = ["--nodes", "200", "--edge-count", "1000", "--threads", "1"];

fn with_small<'a>(args: &[&'a str]) -> Vec<&'a str> {
    SMALL.iter().copied().chain(args.iter().copied()).collect()
}

#[test]
fn help_says_what_is_computed_from_what_and_where_checkpoints_go() {
    let out = pagerank(&["--help"]);
    assert_eq!(out.status, Some(0), "{}", out.describe());
    for needle in [
        "PageRank",
        "0.15 + 0.85",
        "Input (--edges FILE): one `src dst` pair",
        "Checkpoints:",
        "DIR/pagerank/",
        "--resume",
        "Examples:",
        "--edges graph.txt --output ranks.txt",
        "--checkpoint-dir ckpt",
        "RUST_LOG=flintlock=debug",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} in\n{}",
            out.describe()
        );
    }
}

#[test]
fn numbers_no_run_could_use_are_usage_errors_naming_the_argument() {
    for (args, named) in [
        (&["--partitions", "0"][..], "--partitions"),
        (&["--partitions", "10001"], "--partitions"),
        (&["--iterations", "0"], "--iterations"),
        (&["--iterations", "100001"], "--iterations"),
        (&["--top", "0"], "--top"),
        (&["--top", "many"], "--top"),
        (&["--threads", "0"], "--threads"),
        (&["--keep", "0"], "--keep"),
        (&["--memory-limit", "0"], "--memory-limit"),
        (&["--nodes", "1"], "--nodes"),
        (&["--nodes", "100", "--edge-count", "99"], "--edge-count"),
        (&["--nodes", "10", "--edge-count", "46"], "--edge-count"),
        (&["--nodes", "18446744073709551600"], "--nodes"),
        (&["--edge-count", "1000000000000"], "--edge-count"),
        (&["--memory-limit", "17592186044416"], "--memory-limit"),
        (&["--resume"], "--checkpoint-dir"),
        (&["--edges", "e.txt", "--nodes", "5"], "--nodes"),
        (&["--edges", "e.txt", "--output", "./e.txt"], "--output"),
        (&["--edges", "e.txt", "--event-log", "e.txt"], "--event-log"),
        (
            &["--event-log", "x.jsonl", "--output", "x.jsonl"],
            "--output",
        ),
    ] {
        let out = pagerank(args);
        assert_eq!(out.status, Some(2), "{args:?}: {}", out.describe());
        assert!(
            out.stderr.contains(named),
            "{args:?} names {named}: {}",
            out.describe()
        );
        assert!(out.did_no_work(), "{args:?}: {}", out.describe());
    }
}

#[test]
fn an_output_path_that_cannot_be_written_fails_before_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("ranks.txt");
    let folder = dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    for path in [&missing, &folder] {
        let out = pagerank(&with_small(&["--output", path.to_str().unwrap()]));
        assert_eq!(out.status, Some(1), "{}", out.describe());
        assert!(
            out.stderr.contains(&path.display().to_string()),
            "the message names {}: {}",
            path.display(),
            out.describe()
        );
        assert!(
            out.did_no_work(),
            "checked before the job: {}",
            out.describe()
        );
    }
    // Nothing was left beside them either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn inputs_that_cannot_be_read_or_created_fail_naming_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("edges.txt");
    let bad = dir.path().join("bad-edges.txt");
    std::fs::write(&bad, "1 2\n3 x\n").unwrap();
    let empty = dir.path().join("only-comments.txt");
    std::fs::write(&empty, "# no edges\n\n").unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "not a folder").unwrap();
    let log_in_missing = dir.path().join("no-such-folder").join("events.jsonl");
    for (args, path, also) in [
        (vec!["--edges", missing.to_str().unwrap()], &missing, ""),
        (vec!["--edges", bad.to_str().unwrap()], &bad, ":2:"),
        (vec!["--edges", empty.to_str().unwrap()], &empty, "no edges"),
        (
            with_small(&["--checkpoint-dir", a_file.to_str().unwrap()]),
            &a_file,
            "",
        ),
        (
            with_small(&["--event-log", log_in_missing.to_str().unwrap()]),
            &log_in_missing,
            "",
        ),
    ] {
        let out = pagerank(&args);
        assert_eq!(out.status, Some(1), "{args:?}: {}", out.describe());
        let first = out.stderr.lines().find(|l| l.starts_with("error:"));
        let first = first.unwrap_or_else(|| panic!("an error line: {}", out.describe()));
        assert!(
            first.contains(&path.display().to_string()) && first.contains(also),
            "{args:?}: the message names {} {also}: {}",
            path.display(),
            out.describe()
        );
    }
}

fn ranks_in(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

fn assert_says(out: &Outcome, needle: &str) {
    assert!(
        out.stdout.contains(needle),
        "{needle:?}: {}",
        out.describe()
    );
}

#[test]
fn a_run_says_where_its_checkpoints_are_and_counts_in_english() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("ckpt");
    let output = dir.path().join("ranks.txt");
    let out = pagerank(&with_small(&[
        "--partitions",
        "1",
        "--iterations",
        "1",
        "--checkpoint-every",
        "1",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--top",
        "1",
    ]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_says(
        &out,
        "running 1 iteration on 1 partition, 1 thread, checkpoint every iteration",
    );
    assert_says(&out, "top 1 of ");
    assert_says(
        &out,
        &format!(
            "checkpoints: 1 written; kept in {}, the newest of iteration 1",
            checkpoints.join("pagerank").display()
        ),
    );
    assert_says(&out, &format!("to {}", output.display()));
    assert!(ranks_in(&output) > 0);
    // Nothing but the output beside it: the temporary file was renamed over it.
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(beside.len(), 2, "ckpt and ranks.txt: {beside:?}");

    let out = pagerank(&with_small(&[
        "--partitions",
        "2",
        "--iterations",
        "2",
        "--checkpoint-every",
        "0",
    ]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_says(
        &out,
        "running 2 iterations on 2 partitions, 1 thread, checkpoint never",
    );
    assert_says(&out, "checkpoints: none written (--checkpoint-every 0)");

    let out = pagerank(&with_small(&[
        "--iterations",
        "2",
        "--checkpoint-every",
        "1",
    ]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_says(&out, "checkpoints: 2 written to ");
    assert_says(
        &out,
        "a temporary folder removed as the run ends (--checkpoint-dir DIR keeps them",
    );

    // A run that checkpoints nothing does not send anyone to --resume.
    let fresh = dir.path().join("fresh");
    let out = pagerank(&with_small(&[
        "--iterations",
        "3",
        "--checkpoint-dir",
        fresh.to_str().unwrap(),
    ]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_says(
        &out,
        "checkpoints: none written (one every 5 iterations; this run did 3)",
    );
}

#[test]
fn the_default_partition_count_grows_with_the_graph() {
    // Twice the threads, and at least one partition per 250,000 edges (rounded up).
    assert_eq!(cli::default_partitions(2, 1_000_000), 4);
    assert_eq!(cli::default_partitions(2, 1_000_001), 5);
    assert_eq!(cli::default_partitions(2, 5_000_000), 20);
    assert_eq!(cli::default_partitions(8, 1_000_000), 16);
    assert_eq!(cli::default_partitions(1, 0), 2);
    assert_eq!(
        cli::default_partitions(1, usize::MAX),
        10_000,
        "the flag's own limit"
    );

    let out = pagerank(&[
        "--nodes",
        "60000",
        "--edge-count",
        "600000",
        "--threads",
        "1",
        "--iterations",
        "1",
        "--checkpoint-every",
        "0",
    ]);
    assert_eq!(out.status, Some(0), "{}", out.describe());
    assert_says(
        &out,
        "running 1 iteration on 3 partitions, 1 thread, checkpoint never",
    );
}

#[test]
fn resuming_on_another_thread_count_says_which_partitions_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let run = |threads: &str, resume: bool| {
        let mut args = vec![
            "--nodes",
            "200",
            "--edge-count",
            "1000",
            "--iterations",
            "5",
            "--threads",
            threads,
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
        ];
        if resume {
            args.push("--resume");
        }
        pagerank(&args)
    };
    let out = run("2", false);
    assert_eq!(out.status, Some(0), "{}", out.describe());
    let out = run("1", true);
    assert_eq!(out.status, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("pass --partitions 4 to resume"),
        "{}",
        out.describe()
    );
}

#[cfg(unix)]
#[test]
fn the_output_keeps_its_permissions_follows_links_and_can_be_stdout() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.txt");
    std::fs::write(&real, "old\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = pagerank(&with_small(&["--output", link.to_str().unwrap()]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    let link_kind = std::fs::symlink_metadata(&link).unwrap().file_type();
    assert!(link_kind.is_symlink(), "the link stays a link");
    let ranks = std::fs::read_to_string(&real).unwrap();
    assert!(
        ranks.lines().count() > 100,
        "the file it points to has the ranks"
    );
    let mode = std::fs::metadata(&real).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640, "its permissions are kept");
    // `-`: the ranks on standard output, the same lines.
    let out = pagerank(&with_small(&["--output", "-"]));
    assert_eq!(out.status, Some(0), "{}", out.describe());
    for line in ranks.lines() {
        assert_says(&out, line);
    }
    assert!(!Path::new("-").exists(), "no file named -");
}

/// Ctrl-C (SIGINT) in the middle of a run: the running job is cancelled, the process exits
/// with status 130 saying so, and leaves nothing behind: the temporary checkpoint folder
/// and the output's temporary file are removed.
#[cfg(target_os = "linux")]
#[test]
fn an_interrupted_run_cancels_its_job_and_leaves_nothing_behind() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("ranks.txt");
    let args = [
        "--nodes",
        "20000",
        "--edge-count",
        "200000",
        "--threads",
        "1",
        "--iterations",
        "100000",
        "--checkpoint-every",
        "2",
        "--output",
        output.to_str().unwrap(),
    ];
    let mut child = common::ChildGuard(
        common::child_test("child_runs_the_pagerank_main")
            .env(CHILD_ENV, args.join("\n"))
            .env("TMPDIR", tmp.path())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Interrupt once a few iterations (and checkpoints) are done.
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let seen = lines
        .by_ref()
        .map_while(Result::ok)
        .filter(|l| l.contains("[checkpoint written]"))
        .nth(1);
    assert!(seen.is_some(), "the run got going");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().count() > 0,
        "its temporary folder exists while it runs"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    lines.for_each(drop);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let beside: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(
        beside.is_empty(),
        "no output and no temporary file: {beside:?}"
    );
}
