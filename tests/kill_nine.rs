//! kill -9 at random instants (every other trial: aimed at the part writes) of a process
//! writing checkpoints: after every kill, a restart (same stable app id: start-up cleanup
//! runs) leaves no temp file and no unmanifested folder, and every committed checkpoint holds exactly the lineage's result. The protocol
//! phase each kill landed in is read from the disk and reported.
//!
//! 100 trials (50 on S3: `FLINTLOCK_TEST_BACKEND=s3`, where the restart takes over the
//! killed process's lease at once and cleans up without a grace period);
//! `FLINTLOCK_LONG_TESTS=1` runs 500.

use crate::common;

use common::backend;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flintlock::{Context, Rdd};

const CHILD_ENV: &str = "FLINTLOCK_TEST_KILL_CHILD_DIR";

fn data(ctx: &Context) -> Rdd<(u64, u64)> {
    ctx.range(0..40_000, 4)
        .map(|x| (x, x.wrapping_mul(2_654_435_761)))
}

/// Runs only as the child: writes checkpoints until killed.
#[test]
#[ignore = "a child process: kill_nine_at_random_instants_never_leaves_a_partial_checkpoint starts it"]
fn child_writes_checkpoints_until_killed() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not the child
    };
    let ctx = Context::builder()
        .threads(2)
        .app_id("victim")
        .checkpoint_dir(&dir)
        .build()
        .unwrap();
    println!("STARTED");
    loop {
        let rdd = data(&ctx);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
    }
}

/// The protocol phase an `rdd-<id>-<write id>` folder shows.
fn phase(dir: &Path) -> &'static str {
    let names = backend::list(dir);
    let parts = names.iter().filter(|n| n.starts_with("part-")).count();
    let temp_parts = names.iter().filter(|n| n.starts_with(".part-")).count();
    if names.iter().any(|n| n == "_manifest.json") {
        "committed"
    } else if names.iter().any(|n| n.starts_with(".manifest")) {
        "writing the manifest"
    } else if parts == 4 {
        "parts renamed, before the manifest"
    } else if parts > 0 || temp_parts > 0 {
        "writing parts"
    } else {
        "folder created"
    }
}

/// The newest `rdd-<id>-<write id>` folder of the app.
fn newest(app: &Path) -> Option<std::path::PathBuf> {
    backend::list(app)
        .into_iter()
        .filter_map(|name| {
            let (id, _write_id) = name.strip_prefix("rdd-")?.split_once('-')?;
            id.parse::<u64>().ok().map(|id| (id, app.join(&name)))
        })
        .max_by_key(|(id, _)| *id)
        .map(|(_, p)| p)
}

#[test]
fn kill_nine_at_random_instants_never_leaves_a_partial_checkpoint() {
    let trials = if std::env::var("FLINTLOCK_LONG_TESTS").is_ok() {
        500
    } else if backend::on_s3() {
        50
    } else {
        100
    };
    let dir = backend::place();
    let app = dir.path().join("victim");
    let expected = {
        let ctx = Context::builder().threads(1).build().unwrap();
        let mut v = data(&ctx).collect().unwrap();
        v.sort();
        v
    };
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seed = 0x5eed_u64;
    for trial in 0..trials {
        let mut child = common::spawn_test(
            "child_writes_checkpoints_until_killed",
            (CHILD_ENV, dir.path()),
        );
        assert!(
            common::wait_for_line(&mut child, "STARTED"),
            "trial {trial}: child started"
        );
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if trial % 2 == 0 {
            // Any instant.
            std::thread::sleep(Duration::from_micros(2_000 + (seed >> 33) % 40_000));
        } else {
            // Aimed: as soon as part files are being written.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while newest(&app).is_none_or(|d| phase(&d) != "writing parts")
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(last) = newest(&app) {
            *phases.entry(phase(&last)).or_default() += 1;
        }

        // Restart with the same app id: start-up cleanup runs, then check what is visible.
        let ctx = backend::without_grace(Context::builder())
            .threads(2)
            .app_id("victim")
            .checkpoint_dir(dir.path())
            .build()
            .unwrap();
        for name in backend::list(&app) {
            let path = app.join(&name);
            assert!(
                !name.ends_with(".tmp"),
                "trial {trial}: temp file {name} left"
            );
            if !name.starts_with("rdd-") {
                continue;
            }
            let inner = backend::list(&path);
            assert!(
                inner.iter().all(|f| !f.ends_with(".tmp")),
                "trial {trial}: temp file in {name}: {inner:?}"
            );
            assert!(
                inner.iter().any(|f| f == "_manifest.json"),
                "trial {trial}: unmanifested folder {name} left: {inner:?}"
            );
            let mut got = ctx
                .open_checkpoint::<(u64, u64)>(&path)
                .unwrap()
                .collect()
                .unwrap();
            got.sort();
            assert_eq!(
                got, expected,
                "trial {trial}: {name} differs from the lineage result"
            );
            // Keep the folder small: verified checkpoints are removed.
            backend::remove_all(&path);
        }
        drop(ctx);
    }
    // Where random kills land varies from run to run: reported, not asserted. The aimed
    // kills make sure the part-writing phase is hit.
    println!("kill instants by protocol phase over {trials} trials: {phases:?}");
    assert!(
        phases.get("writing parts").copied().unwrap_or(0) > 0,
        "{phases:?}"
    );
}
