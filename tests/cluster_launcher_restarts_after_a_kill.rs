//! Fail-stop, then restart, on the program users run (feature `cluster`):
//! `scripts/cluster.sh` runs the `pagerank` example as 3 processes; one of them, chosen at
//! random, is killed with SIGKILL at a random instant (every other trial: once a checkpoint
//! is written); the launcher stops the others and restarts all 3, which resume from the
//! newest checkpoint they committed together (`--checkpoint-every 2 --resume` on a shared
//! `--checkpoint-dir`; a kill after a checkpoint always resumes), and the ranks the run
//! writes are byte-identical to those of an uncrashed run in one process. 20 trials;
//! `FLINTLOCK_LONG_TESTS=1` runs 100.

#[cfg(not(feature = "cluster"))]
#[test]
#[ignore = "needs the `cluster` feature: the README's cargo test --release --all-features runs it"]
fn needs_the_cluster_feature() {}

#[cfg(feature = "cluster")]
use crate::common;
// The pagerank example's modules (the suite includes them once).
#[cfg(feature = "cluster")]
use crate::cli;

#[cfg(feature = "cluster")]
mod cluster {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use clap::Parser;

    use super::{cli, common};

    const CHILD_ENV: &str = "FLINTLOCK_TEST_CLUSTER_PAGERANK_ARGS";

    /// Runs only as a child: the example's command line, arguments from the environment
    /// (one per line), its place in the cluster from the launcher's variables.
    #[test]
    #[ignore = "a child process: the launcher of a_killed_process_is_restarted_with_the_others_and_the_ranks_are_unchanged starts it"]
    fn child_runs_the_pagerank_example() {
        let Ok(args) = std::env::var(CHILD_ENV) else {
            return; // not the child
        };
        let args = cli::Args::parse_from(std::iter::once("pagerank").chain(args.lines()));
        if let Err(e) = cli::run(args) {
            eprintln!("pagerank failed: {e}");
            std::process::exit(1);
        }
    }

    /// The example's arguments: checkpoints every 2 of 20 iterations into `checkpoints`,
    /// resuming from the newest one there, ranks written to `output`.
    fn args(output: &Path, checkpoints: &Path) -> Vec<String> {
        [
            "--nodes",
            "20000",
            "--edge-count",
            "200000",
            "--iterations",
            "20",
            "--threads",
            "1",
            "--partitions",
            "6",
            "--checkpoint-every",
            "2",
            "--resume",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--checkpoint-dir".to_string(),
            checkpoints.display().to_string(),
        ])
        .chain(["--output".to_string(), output.display().to_string()])
        .collect()
    }

    fn launcher() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
    }

    /// A free port with `n - 1` free ones after it (the launcher numbers its processes'
    /// ports from it), outside the range the other tests of the suite draw theirs from.
    fn base_port(n: u16) -> u16 {
        common::free_ports_outside_the_ephemeral_range(n)
    }

    /// The process ids of the launcher's attempt `k`, once all are written.
    fn attempt_pids(logs: &Path, k: usize, n: usize) -> Option<Vec<u32>> {
        let text = std::fs::read_to_string(logs.join(format!("attempt-{k}.pids"))).ok()?;
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (pids.len() == n).then_some(pids)
    }

    #[test]
    fn a_killed_process_is_restarted_with_the_others_and_the_ranks_are_unchanged() {
        let trials = if std::env::var("FLINTLOCK_LONG_TESTS").is_ok() {
            100
        } else {
            20
        };
        let dir = tempfile::tempdir().unwrap();
        // The uncrashed run, in one process: a child, as the trials' processes are (the
        // example installs a Ctrl-C handler, which belongs in its own process, not in the
        // suite's).
        let expected_path = dir.path().join("expected.txt");
        let checkpoints = dir.path().join("expected-checkpoints");
        let reference = common::child_test("cluster::child_runs_the_pagerank_example")
            .env(CHILD_ENV, args(&expected_path, &checkpoints).join("\n"))
            .output()
            .unwrap();
        assert!(
            reference.status.success(),
            "the uncrashed run failed: {}",
            String::from_utf8_lossy(&reference.stderr)
        );
        let expected = std::fs::read(&expected_path).unwrap();
        assert!(expected.len() > 100_000);

        let exe = std::env::current_exe().unwrap();
        let mut seed = 0x5eed_u64;
        let (mut restarted, mut resumed) = (0, 0);
        // Trial 0 is not killed: it measures how long a run of the launcher takes, and the
        // kills land within that time.
        let mut run_time = Duration::ZERO;
        for trial in 0..=trials {
            let output = dir.path().join(format!("ranks-{trial}.txt"));
            let logs = dir.path().join(format!("logs-{trial}"));
            let checkpoints = dir.path().join(format!("checkpoints-{trial}"));
            // Process 0's output (the launcher's own).
            let stdout_path = dir.path().join(format!("stdout-{trial}.txt"));
            let started = Instant::now();
            let mut launch = common::ChildGuard(
                Command::new("bash")
                    .arg(launcher())
                    .args(["3", "--restarts", "2", "--logs"])
                    .arg(&logs)
                    .args(["--base-port", &base_port(3).to_string(), "--"])
                    .arg(&exe)
                    .args([
                        "--exact",
                        &common::test_name("cluster::child_runs_the_pagerank_example"),
                        "--include-ignored",
                        "--nocapture",
                        "--test-threads",
                        "1",
                    ])
                    .env(CHILD_ENV, args(&output, &checkpoints).join("\n"))
                    .stdout(std::fs::File::create(&stdout_path).unwrap())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            let pids = loop {
                if let Some(pids) = attempt_pids(&logs, 1, 3) {
                    break pids;
                }
                assert!(
                    Instant::now() < deadline,
                    "trial {trial}: the launcher started nothing"
                );
                std::thread::sleep(Duration::from_millis(5));
            };
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Even trials kill at a random instant of the run; odd ones once process 0 has
            // said a checkpoint is written (a random instant would often land before the
            // first one on a loaded machine), and must then resume from it.
            let aimed = trial % 2 == 1;
            if aimed {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !std::fs::read_to_string(&stdout_path)
                    .unwrap_or_default()
                    .contains("[checkpoint written]")
                {
                    assert!(
                        Instant::now() < deadline,
                        "trial {trial}: no checkpoint written within a minute"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            if trial > 0 {
                let victim = pids[(seed >> 40) as usize % 3];
                let window = if aimed { run_time / 4 } else { run_time };
                let window = window.as_micros().max(1) as u64;
                std::thread::sleep(Duration::from_micros((seed >> 20) % window));
                // SIGKILL; the victim may have finished already.
                let _ = Command::new("kill")
                    .args(["-9", &victim.to_string()])
                    .status();
            }
            let status = launch.wait().unwrap();
            if trial == 0 {
                run_time = started.elapsed();
            }
            let stderr = {
                use std::io::Read;
                let mut s = String::new();
                launch
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                s
            };
            assert!(
                status.success(),
                "trial {trial}: the launcher failed: {stderr}"
            );
            if stderr.contains("restarting all 3 processes") {
                restarted += 1;
                let stdout = std::fs::read_to_string(&stdout_path).unwrap();
                if stdout.contains("resumed at iteration") {
                    resumed += 1;
                } else {
                    assert!(
                        !aimed,
                        "trial {trial}: killed after a checkpoint was written, the restart \
                         did not resume from it:\n{stdout}"
                    );
                }
            }
            let got = std::fs::read(&output).unwrap();
            assert!(got == expected, "trial {trial}: other ranks ({stderr})");
        }
        eprintln!("{restarted} of {trials} trials restarted, {resumed} resumed from a checkpoint");
        // Most kills land in a run (the rest after it ended, on a machine slower than at
        // trial 0): the restarts were exercised.
        assert!(
            restarted >= trials / 4,
            "only {restarted} of {trials} trials restarted"
        );
        // Every restart after a kill aimed past a checkpoint resumed (checked above), and
        // some of them happened.
        assert!(
            resumed >= trials / 8,
            "only {resumed} of {restarted} restarts resumed from a checkpoint"
        );
    }
}
