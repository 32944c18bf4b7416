//! The `flintlock` binary on real checkpoint folders (issue 10): list, verify, show and gc,
//! with damaged folders (a flipped byte, a missing part, no manifest) and a folder held by a
//! live process.

use std::path::{Path, PathBuf};
use std::process::Command;

use flintlock::Context;

fn flintlock(args: &[&str]) -> (i32, String) {
    flintlock_in(Path::new("."), args)
}

/// [`flintlock`] run in the folder `cwd` (relative paths in `args` start there).
fn flintlock_in(cwd: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flintlock"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run the flintlock binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An app "dead" (its context dropped) with a series of three steps; returns the checkpoint
/// folders, newest step first.
fn dead_app(dir: &Path) -> Vec<PathBuf> {
    let ctx = Context::builder()
        .app_id("dead")
        .threads(2)
        .checkpoint_dir(dir)
        .build()
        .unwrap();
    let mut cp = ctx
        .checkpointer::<(u64, u64)>("ranks")
        .keep(3)
        .meta("graph", "g1");
    let mut r = ctx.parallelize((0..50u64).map(|k| (k, k)).collect(), 3);
    for step in 1..=3 {
        r = r.map_values(move |v| v + step);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
    }
    cp.committed()
        .unwrap()
        .into_iter()
        .map(|c| c.path)
        .collect()
}

/// An interrupted write of the dead app (made after any other context started: start-up
/// cleanup would remove it).
fn interrupted_write(dir: &Path) -> PathBuf {
    let leftover = dir.join("dead").join("rdd-9-00000000000000ff");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join(".part-00000.3.tmp"), b"half").unwrap();
    leftover
}

#[test]
fn verify_accepts_an_intact_checkpoint_and_names_the_damage_in_others() {
    let dir = tempfile::tempdir().unwrap();
    let paths = dead_app(dir.path());
    let leftover = interrupted_write(dir.path());
    let (code, out) = flintlock(&["verify", s(&paths[0])]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 3 parts, 50 records"), "{out}");

    // A flipped byte inside a frame.
    let part = paths[1].join("part-00001");
    let mut bytes = std::fs::read(&part).unwrap();
    let at = bytes.len() - 30;
    bytes[at] ^= 0x01;
    std::fs::write(&part, bytes).unwrap();
    let (code, out) = flintlock(&["verify", s(&paths[1])]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("part-00001") && out.contains("offset"),
        "{out}"
    );

    // A missing part.
    std::fs::remove_file(paths[2].join("part-00002")).unwrap();
    let (code, out) = flintlock(&["verify", "--json", s(&paths[2])]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["problems"][0]
        .as_str()
        .unwrap()
        .contains("part-00002"));

    // A folder without a manifest.
    let (code, out) = flintlock(&["verify", s(&leftover)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not a committed checkpoint"), "{out}");
}

#[test]
fn list_shows_series_steps_status_and_live_locks() {
    let dir = tempfile::tempdir().unwrap();
    dead_app(dir.path());
    let live = Context::builder()
        .app_id("live")
        .threads(1)
        .checkpoint_dir(dir.path())
        .build()
        .unwrap();
    let rdd = live.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    interrupted_write(dir.path());
    let (code, out) = flintlock(&["list", s(dir.path())]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("live") && out.contains("locked by a live process"),
        "{out}"
    );
    assert!(
        out.contains("ranks") && out.contains("uncommitted"),
        "{out}"
    );
    let (_, out) = flintlock(&["list", "--json", s(dir.path())]);
    let apps: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dead = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == "dead")
        .unwrap();
    assert_eq!(dead["locked"], false);
    let steps: Vec<u64> = dead["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["step"].as_u64())
        .collect();
    assert_eq!(steps.len(), 3);
    drop((rdd, live));
}

#[test]
fn show_prints_the_manifest_and_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let paths = dead_app(dir.path());
    let (code, out) = flintlock(&["show", s(&paths[0])]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("series      ranks step 3"), "{out}");
    assert!(out.contains("part-00002"), "{out}");
    assert!(out.contains("(u64, u64)"), "{out}");
    let (code, out) = flintlock(&["show", "--json", s(&paths[0])]);
    assert_eq!(code, 0);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["series"]["meta"]["graph"], "g1");
}

#[test]
fn gc_removes_dead_leftovers_and_old_steps_but_never_a_live_apps_folders() {
    let dir = tempfile::tempdir().unwrap();
    let paths = dead_app(dir.path());
    let live = Context::builder()
        .app_id("live")
        .threads(1)
        .checkpoint_dir(dir.path())
        .build()
        .unwrap();
    let live_leftover = dir.path().join("live").join("rdd-7-00000000000000aa");
    std::fs::create_dir(&live_leftover).unwrap();
    let leftover = interrupted_write(dir.path());

    let (code, out) = flintlock(&["gc", "--keep", "1", "--dry-run", s(dir.path())]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 would remove"), "{out}");
    assert!(
        out.contains("skipped") && out.contains("live: held by a live process"),
        "a locked app is reported, not passed over in silence: {out}"
    );
    assert!(
        paths.iter().all(|p| p.exists()),
        "a dry run removes nothing"
    );

    let (code, out) = flintlock(&["gc", "--keep", "1", "--json", s(dir.path())]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 3);
    assert_eq!(report["skipped_locked"].as_array().unwrap().len(), 1);
    assert!(paths[0].exists(), "the newest step stays");
    assert!(!paths[1].exists() && !paths[2].exists());
    assert!(!leftover.exists());
    assert!(live_leftover.exists(), "a live process holds that app");
    drop(live);
    let (code, out) = flintlock(&["gc", "--keep", "0", s(dir.path())]);
    assert_eq!(code, 2, "keep 0 is refused: {out}");
}

#[test]
fn list_takes_an_app_folder_too_and_says_when_it_finds_no_app() {
    let dir = tempfile::tempdir().unwrap();
    dead_app(dir.path());
    let (code, out) = flintlock(&["list", s(&dir.path().join("dead"))]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dead") && out.contains("ranks"), "{out}");
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = flintlock(&["list", s(empty.path())]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no flintlock app folders"), "{out}");
}

/// A word count whose state is checkpointed every batch and whose output fails batch 4
/// while `fail` is set.
fn failing_stream(
    ctx: &Context,
    fail: bool,
) -> flintlock::Result<flintlock::streaming::StreamingContext> {
    use flintlock::streaming::{ManualClock, RddQueue, StreamingContext};
    let queue = RddQueue::from_rdds(
        (0..10).map(|b| ctx.parallelize(crate::common::stream::batch_words(7, b), 2)),
    );
    let mut s =
        StreamingContext::new(ctx, std::time::Duration::from_secs(1)).clock(ManualClock::auto());
    s.queue_stream("words", queue)
        .map(|w| (w, 1u64))
        .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
            crate::common::stream::update(&new, old)
        })
        .checkpoint_every(1)
        .foreach_rdd("flaky", move |_, batch| {
            if fail && batch.id == 4 {
                return Err(flintlock::Error::InvalidArgument("flaky output".into()));
            }
            Ok(())
        });
    Ok(s)
}

#[test]
fn gc_keep_leaves_a_streams_state_to_the_stream() {
    use flintlock::streaming::{StreamingContext, Until};
    // Batch 4 writes its state checkpoint, then its output fails: the newest state step (4)
    // is one no commit names, and a restart needs step 3. Counting steps, `gc --keep 1`
    // would remove step 3; it must leave a stream's folders to the stream.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    {
        let ctx = crate::common::ctx();
        let (mut s, _) =
            StreamingContext::get_or_create(&ctx, &ckpt, |c| failing_stream(c, true)).unwrap();
        assert!(s.run(Until::Batches(10)).is_err(), "batch 4's output fails");
    }
    let state = ckpt.join("state");
    // However the folder is spelled: relative from the stream's folder and from `state`.
    for (cwd, arg) in [(&ckpt, "state"), (&state, "."), (&state, "counts")] {
        let (code, out) = flintlock_in(cwd, &["gc", "--keep", "1", "--json", arg]);
        assert_eq!(code, 0, "{out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            report["removed"].as_array().unwrap().len(),
            0,
            "{arg}: {out}"
        );
    }
    let (code, out) = flintlock(&["gc", "--keep", "1", "--json", s(&state)]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{out}");
    assert_eq!(
        report["kept_for_streams"].as_array().unwrap().len(),
        1,
        "{out}"
    );
    let (code, out) = flintlock(&["gc", "--keep", "1", s(&state.join("counts"))]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("a stream's folder, retained by its commits"),
        "{out}"
    );
    // The stream restarts from the state its newest commit names.
    let ctx = crate::common::ctx();
    let (mut s2, rec) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| failing_stream(c, false)).unwrap();
    assert_eq!(rec.committed, Some(3));
    s2.run(Until::Committed(9)).unwrap();
}
