//! Crash at every operation of the commit protocol, in a simulated filesystem, and prove
//! that a checkpoint never lies: after any crash, opening it gives the complete, correct data
//! or "not committed"; and once an action has reported the checkpoint written, it survives a
//! crash. A journaling filesystem can hide a missing folder fsync from real-disk crash tests;
//! this model does not.
//!
//! The model is `common::simfs::SimFs`:
//! - a file's bytes are durable up to its last `sync`; after a crash each later (unsynced)
//!   write is kept or lost at random, and the last kept one may be torn;
//! - a folder's entries are durable as of its last `sync_dir`; the creations, renames and
//!   removals after it survive as a random subset, in order (nothing orders them);
//! - folders made with `create_dir_all` (the checkpoint directory and the app folder) are
//!   durable at once; a folder made with `create_dir` (each write attempt's `rdd-*` folder)
//!   is an entry of its parent like a file: durable once the parent is synced, else kept or
//!   lost at random, with everything in it;
//! - locks are held in memory and die with the process (a recovered filesystem has none).
//!
//! Mutation check: the same sweep with any one sync of the protocol removed (`SimFs` ignores
//! it) must fail at least once — every fsync and folder fsync is needed.

use crate::common;

use std::io;
use std::path::Path;

use common::simfs::{SimFs, Skip};
use flintlock::checkpoint::Storage;
use flintlock::{Context, Error};

/// What a crash left, as seen by a new process.
#[derive(Debug, PartialEq)]
enum Outcome {
    Complete,
    NotCommitted,
    Wrong(String),
}

const ROOT: &str = "/sim/checkpoints";

/// Writes a checkpoint of `partitions` partitions on a `SimFs` that crashes after `k`
/// operations, then recovers it with `seed` and opens the checkpoint in a new context.
fn trial(partitions: usize, k: usize, seed: u64, skip: Skip) -> (Outcome, bool, usize) {
    let fs = SimFs::new(k, skip);
    let ctx = Context::builder()
        .threads(2)
        .app_id("sim")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(fs.clone())
        .build();
    let Ok(ctx) = ctx else {
        return (Outcome::NotCommitted, false, fs.ops()); // crashed before the folder existed
    };
    let rdd = ctx.range(0..40, partitions).map(|x| (x, x * x));
    let expected = rdd.collect().unwrap();
    rdd.checkpoint().unwrap();
    let reported = rdd.count().is_ok();
    let ops = fs.ops();
    let recovered = fs.recover(seed);
    // The attempt's folder is `rdd-<id>-<write id>`; a crash may have come before it.
    let app = Path::new(ROOT).join("sim");
    let prefix = format!("rdd-{}-", rdd.id());
    let dir = recovered
        .list(&app)
        .ok()
        .and_then(|names| names.into_iter().find(|n| n.starts_with(&prefix)))
        .map_or_else(|| app.join(format!("{prefix}missing")), |n| app.join(n));
    let reader = Context::builder()
        .threads(1)
        .app_id("reader")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(recovered)
        .build()
        .unwrap();
    let outcome = match reader.open_checkpoint::<(u64, u64)>(&dir) {
        Err(Error::NotCommitted { .. }) => Outcome::NotCommitted,
        // The crash came before the checkpoint's folder was made: no checkpoint either.
        Err(e @ Error::Io { .. }) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
            Outcome::NotCommitted
        }
        Err(e) => Outcome::Wrong(format!("open: {e}")),
        Ok(r) => match r.collect() {
            Ok(got) if got == expected => Outcome::Complete,
            Ok(_) => Outcome::Wrong("wrong data".into()),
            Err(e) => Outcome::Wrong(format!("read: {e}")),
        },
    };
    (outcome, reported, ops)
}

/// Crashes after every operation, for several partition counts and recovery draws; returns
/// the violations found.
fn sweep(skip: Skip) -> Vec<String> {
    let mut violations = Vec::new();
    for partitions in [1usize, 2, 3, 8] {
        // The number of operations of a complete write.
        let (_, _, total) = trial(partitions, usize::MAX, 0, Skip::Nothing);
        for k in 0..=total {
            for seed in [0u64, 1, 2, 3, 4, 5, 6, 7] {
                let (outcome, reported, _) = trial(partitions, k, seed, skip);
                let violation = match (&outcome, reported) {
                    (Outcome::Wrong(why), _) => Some(format!("committed but wrong: {why}")),
                    (Outcome::NotCommitted, true) => {
                        Some("reported written, lost by the crash".to_string())
                    }
                    _ => None,
                };
                if let Some(v) = violation {
                    violations.push(format!(
                        "{partitions} partitions, crash after op {k}, seed {seed}: {v}"
                    ));
                }
            }
        }
    }
    violations
}

#[test]
fn a_crash_at_any_operation_leaves_a_complete_checkpoint_or_none() {
    let violations = sweep(Skip::Nothing);
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        violations.first()
    );
    // The sweep really crossed the commit point: some crashes leave a checkpoint.
    let (outcome, reported, _) = trial(3, usize::MAX, 1, Skip::Nothing);
    assert_eq!((outcome, reported), (Outcome::Complete, true));
    let (outcome, reported, _) = trial(3, 0, 1, Skip::Nothing);
    assert_eq!((outcome, reported), (Outcome::NotCommitted, false));
}

#[test]
fn removing_any_single_sync_from_the_protocol_is_caught() {
    for skip in [
        Skip::PartSync,
        Skip::ManifestSync,
        Skip::FolderSync(1),
        Skip::FolderSync(2),
        Skip::FolderSync(3),
    ] {
        let violations = sweep(skip);
        assert!(
            !violations.is_empty(),
            "without {skip:?} no crash case failed: that sync would be unnecessary"
        );
        println!(
            "without {skip:?}: {} violations, e.g. {}",
            violations.len(),
            violations[0]
        );
    }
}

/// The data of step `step` of the series job below.
fn step_data(step: u64) -> Vec<(u64, u64)> {
    (0..40).map(|x| (x, x * step + 1)).collect()
}

/// Four steps of a series keeping 1 on `fs`: every commit removes the step before it. Stops
/// at the first error (the crash); returns the newest step reported committed.
fn series_steps(fs: &SimFs) -> Option<u64> {
    let ctx = Context::builder()
        .threads(2)
        .app_id("sim")
        .checkpoint_dir(ROOT)
        .checkpoint_storage(fs.clone())
        .build()
        .ok()?;
    let mut cp = ctx.checkpointer::<(u64, u64)>("s").keep(1);
    let mut reported = None;
    for step in 1..=4u64 {
        let r = ctx.parallelize(step_data(step), 2);
        if cp.update(step, &r).is_err() || r.count().is_err() {
            break;
        }
        // The commit released the step before it, removed on the remover thread: done
        // here, so that the operations come in one order and a crash point names one.
        flintlock::checkpoint::wait_for_removals();
        reported = Some(step);
    }
    reported
}

/// `keep` removes old checkpoints while new ones commit. After a crash at any operation and
/// any recovery draw, every folder with a manifest reads back exactly its step's data (a
/// removal never leaves a manifest over missing parts), and the newest step reported
/// committed is still there.
#[test]
fn a_crash_while_keep_removes_old_checkpoints_never_leaves_a_damaged_committed_one() {
    let full = SimFs::new(usize::MAX, Skip::Nothing);
    assert_eq!(series_steps(&full), Some(4));
    let total = full.ops();
    let app = Path::new(ROOT).join("sim");
    let mut violations = Vec::new();
    for k in 0..=total {
        for seed in 0..6u64 {
            let fs = SimFs::new(k, Skip::Nothing);
            let reported = series_steps(&fs);
            let recovered = fs.recover(seed);
            // A new process: its start-up cleanup runs first.
            let reader = Context::builder()
                .threads(1)
                .app_id("reader")
                .checkpoint_dir(ROOT)
                .checkpoint_storage(recovered.clone())
                .build()
                .unwrap();
            let folders = recovered.list(&app).unwrap_or_default();
            let mut found = Vec::new();
            for name in folders.iter().filter(|n| n.starts_with("rdd-")) {
                match reader.open_checkpoint::<(u64, u64)>(app.join(name)) {
                    Err(Error::NotCommitted { .. }) => {}
                    Err(e) => violations.push(format!("k {k} seed {seed} {name}: {e}")),
                    Ok(rdd) => match rdd.collect() {
                        Ok(mut got) => {
                            got.sort();
                            let step = got.get(1).map_or(0, |p| p.1 - 1);
                            if got != step_data(step) {
                                violations.push(format!("k {k} seed {seed} {name}: wrong data"));
                            }
                            found.push(step);
                        }
                        Err(e) => violations.push(format!("k {k} seed {seed} {name}: {e}")),
                    },
                }
            }
            if let Some(step) = reported
                && !found.contains(&step)
            {
                violations.push(format!(
                    "k {k} seed {seed}: step {step} was reported committed, then lost"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        violations.first()
    );
}
