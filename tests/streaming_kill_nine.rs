//! kill -9 a stateful stream at uniform random instants (during start-up, recovery,
//! batches, state checkpoints, sink writes and commits alike), restart it with
//! `get_or_create` each time, until all 100 batches have committed: every batch id has
//! exactly one committed output in each of its three sinks (`update_state_by_key`, an
//! incremental window with inverse and filter, `map_with_state` with a timeout), the
//! SHA-256 of each batch's sorted output equals the uncrashed run's, and so does the final
//! state (the last batch's output is the whole state); the uncrashed run itself matches the
//! model.
//!
//! 50 trials, two at a time; `FLINTLOCK_LONG_TESTS=1` runs 500. (100 batches a run: a
//! kill lands at a uniform instant of a run whatever its length, so shorter runs give more
//! kills for the same time.)

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::stream::{lines_of, model, more_sinks, sink_lines, WordCount};
use flintlock::streaming::{StreamingContext, Until};

const CHILD_ENV: &str = "FLINTLOCK_TEST_STREAM_KILL_DIR";
const SEED: u64 = 77;
const BATCHES: u64 = 100;

fn word_count() -> WordCount {
    WordCount {
        more_state: true,
        ..WordCount::new(SEED, BATCHES, 10)
    }
}

/// Runs the stream in `dir` until batch `BATCHES - 1` has committed.
fn run_to_the_end(dir: &Path) {
    let ctx = common::ctx();
    let wc = word_count();
    let out = dir.join("out");
    let (mut s, _) =
        StreamingContext::get_or_create(&ctx, dir.join("ckpt"), |c| wc.build(c, &out)).unwrap();
    s.run(Until::Committed(BATCHES - 1)).unwrap();
}

/// Runs only as the child: the stream, until it is done or killed.
#[test]
#[ignore = "a child process: kill_nine_at_random_instants_loses_and_repeats_no_batch starts it"]
fn child_runs_the_stream_until_killed() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not the child
    };
    run_to_the_end(Path::new(&dir));
}

/// The SHA-256 of each committed batch's sorted output in each sink, batches
/// `0..BATCHES` (panics on a missing one; the window writes every second batch).
fn digests(out: &Path) -> Vec<(String, u64, [u8; 32])> {
    use sha2::{Digest, Sha256};
    let [window, mapped] = more_sinks(out);
    let mut v = Vec::new();
    for (sink, step) in [(out.to_path_buf(), 1), (window, 2), (mapped, 1)] {
        for b in (step - 1..BATCHES).step_by(step as usize) {
            let lines = sink_lines(&sink, b)
                .unwrap_or_else(|| panic!("{}: batch {b} has no output", sink.display()));
            let name = sink.file_name().unwrap().to_string_lossy().into_owned();
            v.push((name, b, Sha256::digest(lines.join("\n").as_bytes()).into()));
        }
        assert_eq!(sink_lines(&sink, BATCHES), None);
    }
    v
}

#[test]
fn kill_nine_at_random_instants_loses_and_repeats_no_batch() {
    let trials = if std::env::var("FLINTLOCK_LONG_TESTS").is_ok() {
        500
    } else {
        50
    };
    // The length of an uncrashed run (in this process) scales the kill instants. Measured
    // under a heavier load than the trials meet (CI builds beside the tests), it would be too
    // long: a first run that ends before its kill instant shortens it (see `one_trial`).
    let reference = tempfile::tempdir().unwrap();
    let started = Instant::now();
    run_to_the_end(reference.path());
    let span = AtomicU64::new(started.elapsed().as_micros() as u64 + 20_000);
    let expected: Vec<Vec<String>> = model(SEED, BATCHES).iter().map(lines_of).collect();
    let uncrashed = digests(&reference.path().join("out"));
    for (b, want) in expected.iter().enumerate() {
        assert_eq!(
            sink_lines(&reference.path().join("out"), b as u64).as_ref(),
            Some(want)
        );
    }
    // Two trials at a time: a run waits on fsyncs more than it computes, so two share the
    // machine's cores without stretching the kill instants' scale much.
    let kills: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|worker| {
                let (uncrashed, span) = (&uncrashed, &span);
                scope.spawn(move || {
                    let mut rng = 0x5eed_5eed_u64 ^ worker;
                    let mut kills = 0;
                    for trial in (worker..trials).step_by(2) {
                        kills += one_trial(trial, span, &mut rng, uncrashed);
                    }
                    kills
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let span = span.into_inner();
    println!("{kills} kills over {trials} trials (kill instants within {span} µs)");
    assert!(
        kills >= trials,
        "most trials are killed at least once: {kills}"
    );
}

/// One trial: kills at up to 3 random instants in `0..span` µs, then a run to the end; checks
/// the digests against the uncrashed run's and that no temporary name is left. Returns the
/// number of kills. A first run (from nothing) that ends before its kill instant took at
/// most that long: `span` shrinks to it.
fn one_trial(
    trial: u64,
    span: &AtomicU64,
    rng: &mut u64,
    uncrashed: &[(String, u64, [u8; 32])],
) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut kills = 0;
    loop {
        let mut child = common::ChildGuard(
            common::child_test("child_runs_the_stream_until_killed")
                .env(CHILD_ENV, dir.path())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        if kills < 3 {
            *rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let wait = (*rng >> 33) % span.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_micros(wait));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
            if kills == 0 {
                span.fetch_min(wait.max(20_000), Ordering::Relaxed);
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "trial {trial}: the last run failed: {status}"
        );
        break;
    }
    let out = dir.path().join("out");
    let got = digests(&out);
    assert_eq!(got.len(), uncrashed.len());
    for (got, want) in got.iter().zip(uncrashed) {
        assert_eq!(
            got, want,
            "trial {trial} ({kills} kills): {} batch {}",
            want.0, want.1
        );
    }
    for sink in [out.clone()].into_iter().chain(more_sinks(&out)) {
        let leftovers: Vec<String> = common::stream::files(&sink)
            .into_iter()
            .filter(|f| f.contains(".tmp") || f.contains("/."))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: {leftovers:?}");
    }
    kills
}
