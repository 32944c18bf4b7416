//! Nothing outside a write attempt is ever deleted (DESIGN §4, issue 9 items 3 and 4).
//!
//! A rerun with the same app id, a changed checkpoint folder and `clean_checkpoints` never
//! remove a checkpoint that a run committed and a live RDD reads.

use crate::common;

use flintlock::{CheckpointState, Context};

fn stable_ctx(dir: &std::path::Path, clean: bool) -> Context {
    Context::builder()
        .app_id("stable")
        .threads(2)
        .checkpoint_dir(dir)
        .clean_checkpoints(clean)
        .build()
        .unwrap()
}

/// A context with a generated app id, cleaning its checkpoints once unread.
fn cleaning_ctx(dir: &std::path::Path) -> Context {
    Context::builder()
        .threads(2)
        .checkpoint_dir(dir)
        .clean_checkpoints(true)
        .build()
        .unwrap()
}

/// A first run of the program: checkpoints `0..10` under the stable app id and exits.
fn first_run(dir: &std::path::Path) -> std::path::PathBuf {
    let ctx = stable_ctx(dir, false);
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.checkpoint_path().unwrap()
}

#[test]
fn a_rerun_with_the_same_app_id_keeps_the_previous_runs_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let first_path = {
        let ctx = stable_ctx(dir.path(), false);
        let rdd = ctx.range(0..100, 4).map(|x| x * 2);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    // The same program again: RDD ids restart at 0, so the same RDD gets the same id.
    let ctx = stable_ctx(dir.path(), false);
    let rdd = ctx.range(0..100, 4).map(|x| x * 3);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 100);
    assert!(rdd.is_checkpointed());
    let second_path = rdd.checkpoint_path().unwrap();
    assert_ne!(
        first_path, second_path,
        "each attempt has a folder of its own"
    );
    // The first run's checkpoint is intact and opens.
    let old = ctx.open_checkpoint::<u64>(&first_path).unwrap();
    let mut values = old.collect().unwrap();
    values.sort();
    assert_eq!(values, (0..100).map(|x| x * 2).collect::<Vec<_>>());
    let mut now = rdd.collect().unwrap();
    now.sort();
    assert_eq!(now, (0..100).map(|x| x * 3).collect::<Vec<_>>());
}

#[test]
fn a_failed_attempt_of_a_rerun_removes_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let first_path = first_run(dir.path());
    let before = common::files_below(&first_path);
    let ctx = stable_ctx(dir.path(), false);
    let rdd = ctx
        .range(0..10, 2)
        .map(|x| if x == 7 { panic!("boom at {x}") } else { x });
    rdd.checkpoint().unwrap();
    assert!(rdd.count().is_err());
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert_eq!(common::files_below(&first_path), before);
    assert_eq!(
        ctx.open_checkpoint::<u64>(&first_path)
            .unwrap()
            .count()
            .unwrap(),
        10
    );
    // Only the earlier run's folder (and the lock) remain in the app folder.
    let app = dir.path().join("stable");
    let folders: Vec<_> = std::fs::read_dir(&app)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock" && n != ".flintlock-app")
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
}

#[test]
fn clean_checkpoints_with_a_stable_app_id_never_deletes_an_earlier_runs_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let first_path = first_run(dir.path());
    {
        let ctx = stable_ctx(dir.path(), true);
        let rdd = ctx.range(0..10, 2).map(|x| x + 1);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        let own = rdd.checkpoint_path().unwrap();
        drop(rdd);
        flintlock::checkpoint::wait_for_removals(); // removals run in the background
        assert!(
            !own.exists(),
            "its own checkpoint goes with its last reader"
        );
    }
    assert!(first_path.join("_manifest.json").exists());
}

#[test]
fn changing_the_checkpoint_dir_keeps_the_old_folder_while_an_rdd_reads_it() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let ctx = cleaning_ctx(first.path());
    let rdd = ctx.range(0..50, 2).map(|x| x + 1);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    ctx.set_checkpoint_dir(second.path()).unwrap();
    assert!(path.join("_manifest.json").exists(), "still read by `rdd`");
    assert_eq!(rdd.count().unwrap(), 50);
    assert_eq!(rdd.collect().unwrap(), (1..=50).collect::<Vec<u64>>());
    drop(rdd);
    flintlock::checkpoint::wait_for_removals(); // removals run in the background
    assert!(!path.exists(), "gone with its last reader");
}

#[test]
fn a_reopened_copy_keeps_a_cleaned_checkpoint_alive() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = cleaning_ctx(dir.path());
    let rdd = ctx.range(0..20, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    let copy = ctx.open_checkpoint::<u64>(&path).unwrap();
    // Another context of the process reads it too.
    let other = common::ctx();
    let other_copy = other.open_checkpoint::<u64>(&path).unwrap();
    drop(rdd);
    assert!(path.exists());
    assert_eq!(copy.count().unwrap(), 20);
    drop(copy);
    assert!(path.exists(), "the other context's copy still reads it");
    assert_eq!(other_copy.count().unwrap(), 20);
    drop(other_copy);
    flintlock::checkpoint::wait_for_removals(); // removals run in the background
    assert!(!path.exists());
}

#[test]
fn setting_the_same_checkpoint_dir_again_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    ctx.set_checkpoint_dir(dir.path()).unwrap();
    // Another spelling of the same folder.
    ctx.set_checkpoint_dir(dir.path().join(".")).unwrap();
    assert_eq!(
        ctx.checkpoint_dir().unwrap(),
        dir.path().canonicalize().unwrap()
    );
    let again = ctx.range(0..5, 1);
    again.checkpoint().unwrap();
    assert_eq!(again.count().unwrap(), 5);
    assert!(again.is_checkpointed());
    assert!(rdd.checkpoint_path().unwrap().exists());
}

#[test]
fn start_up_cleanup_never_touches_folders_flintlock_did_not_make() {
    let root = tempfile::tempdir().unwrap();
    // Another tool's folder that happens to look like an app folder.
    let other = root.path().join("some-other-tool");
    std::fs::create_dir_all(other.join("rdd-notes")).unwrap();
    std::fs::write(other.join(".lock"), b"").unwrap();
    std::fs::write(other.join("download.tmp"), b"half a download").unwrap();
    std::fs::write(other.join("rdd-notes").join("thesis.txt"), b"precious").unwrap();
    // And a folder that an app id happens to name.
    let named = root.path().join("stable");
    std::fs::create_dir_all(named.join("rdd-7")).unwrap();
    std::fs::write(named.join("notes.tmp"), b"mine").unwrap();
    let ctx = stable_ctx(root.path(), false);
    let rdd = ctx.range(0..4, 1);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    drop((rdd, ctx));
    let _again = stable_ctx(root.path(), false);
    assert!(other.join("download.tmp").exists());
    assert!(other.join("rdd-notes/thesis.txt").exists());
    assert!(named.join("rdd-7").exists());
    assert!(named.join("notes.tmp").exists());
}

#[test]
fn clean_checkpoints_never_deletes_a_series_step_a_restart_needs() {
    // A series' steps are restart points, retained by `keep`; `clean_checkpoints` removes
    // the context's other checkpoints once unread, never these.
    let dir = tempfile::tempdir().unwrap();
    let run = |steps: std::ops::RangeInclusive<u64>| {
        let ctx = stable_ctx(dir.path(), true);
        let mut cp = ctx.checkpointer::<u64>("ranks").every(1).keep(2);
        let mut plain = None;
        for step in steps {
            let r = ctx.range(0..100, 4).map(move |x| x * step);
            cp.update(step, &r).unwrap();
            assert_eq!(r.count().unwrap(), 100);
            // A plain checkpoint beside the series: cleaned once unread, as before.
            let p = ctx.range(0..10, 2);
            p.checkpoint().unwrap();
            p.count().unwrap();
            plain = p.checkpoint_path();
        }
        drop(ctx);
        flintlock::checkpoint::wait_for_removals();
        assert!(
            !plain.unwrap().exists(),
            "a plain checkpoint is still cleaned"
        );
    };
    run(1..=4);
    let ctx = stable_ctx(dir.path(), true);
    let cp = ctx.checkpointer::<u64>("ranks").keep(2);
    let steps: Vec<u64> = cp.committed().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, vec![4, 3], "the two steps `keep` retains");
    let (step, rdd) = cp.latest().unwrap().expect("the newest step");
    assert_eq!(step, 4);
    let mut values = rdd.collect().unwrap();
    values.sort_unstable();
    assert_eq!(values, (0..100).map(|x| x * 4).collect::<Vec<_>>());
}

#[test]
fn a_resumed_step_keeps_its_app_folder_held_after_the_checkpoint_dir_changes() {
    // `latest()` reads a step of the context's app folder. Pointing the context elsewhere
    // must not free that folder for another run (whose `keep` or `flintlock gc` would
    // remove what the resumed RDD reads) while the RDD lives.
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    {
        let ctx = stable_ctx(dir.path(), false);
        let mut cp = ctx.checkpointer::<u64>("ranks").every(1).keep(3);
        for step in 1..=3u64 {
            let r = ctx.range(0..20, 2).map(move |x| x + step);
            cp.update(step, &r).unwrap();
            r.count().unwrap();
        }
    }
    let ctx = stable_ctx(dir.path(), false);
    let (step, ranks) = ctx
        .checkpointer::<u64>("ranks")
        .latest()
        .unwrap()
        .expect("step 3");
    assert_eq!(step, 3);
    ctx.set_checkpoint_dir(other.path()).unwrap();
    let rival = Context::builder()
        .app_id("stable")
        .checkpoint_dir(dir.path())
        .build();
    assert!(
        matches!(rival, Err(flintlock::Error::Locked { .. })),
        "the folder the resumed RDD reads is still held: {:?}",
        rival.map(|_| ())
    );
    assert_eq!(ranks.collect().unwrap(), (3..23).collect::<Vec<u64>>());
    drop(ranks);
    let rival = Context::builder()
        .app_id("stable")
        .checkpoint_dir(dir.path())
        .build();
    assert!(rival.is_ok(), "free once nothing reads it");
}

#[test]
fn under_a_generated_app_id_clean_checkpoints_still_removes_a_series_steps() {
    // No later run can open a generated app id's folder, so its series' steps are no
    // restart points: cleaned with the context, folder and all.
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = cleaning_ctx(dir.path());
        let mut cp = ctx.checkpointer::<u64>("ranks").every(1).keep(2);
        for step in 1..=3u64 {
            let r = ctx.range(0..20, 2).map(move |x| x + step);
            cp.update(step, &r).unwrap();
            r.count().unwrap();
        }
    }
    flintlock::checkpoint::wait_for_removals();
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_commit_that_fails_after_its_manifest_is_in_place_withdraws_it_but_never_deletes_under_a_reader(
) {
    use flintlock::checkpoint::{FaultyStorage, StorageOp};
    use flintlock::Rdd;
    use std::sync::{Arc, Mutex};

    // The folder fsync right after the manifest's rename opens the checkpoint from another
    // context (as a series' `latest()` or `open_checkpoint` would, on another thread); the
    // app folder's fsync after it then fails, and the commit with it.
    let dir = tempfile::tempdir().unwrap();
    let opened: Arc<Mutex<Option<Rdd<u64>>>> = Arc::default();
    let slot = opened.clone();
    let hooked = common::hooked::Hooked::new(move |op, path| {
        let committed = path.join("_manifest.json").exists()
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rdd-"));
        if op == StorageOp::SyncDir && committed && slot.lock().unwrap().is_none() {
            let path = path.to_path_buf();
            let rdd = std::thread::spawn(move || {
                let reader = Context::builder().threads(1).build().unwrap();
                reader.open_checkpoint::<u64>(&path).unwrap()
            })
            .join()
            .unwrap();
            *slot.lock().unwrap() = Some(rdd);
        }
    });
    let storage = FaultyStorage::new(std::sync::Arc::new(hooked));
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_storage(storage.clone())
        .build()
        .unwrap();
    let rdd = ctx.range(0..1000, 4).map(|x| x * 3);
    rdd.checkpoint().unwrap();
    // The first is the crash guard before the manifest, the second the folder's after its
    // rename (where the hook opens it), the third the app folder's.
    storage.fail_nth(StorageOp::SyncDir, 3, std::io::ErrorKind::Other);
    let err = rdd.count().unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    let reader = opened
        .lock()
        .unwrap()
        .take()
        .expect("the hook opened the checkpoint");
    // The reader reads exactly what was written: the failed commit left its folder to it.
    let expected: Vec<u64> = (0..1000).map(|x| x * 3).collect();
    assert_eq!(reader.collect().unwrap(), expected);
    let folder = reader.checkpoint_path().unwrap();
    // Its manifest is withdrawn: nothing opens it any more, and no later run resumes
    // from a commit that failed.
    assert!(!folder.join("_manifest.json").exists());
    assert!(Context::builder()
        .threads(1)
        .build()
        .unwrap()
        .open_checkpoint::<u64>(&folder)
        .is_err());
    assert_eq!(reader.count().unwrap(), 1000, "the reader still reads it");
    // The next action writes the checkpoint again, in a folder of its own.
    storage.clear();
    assert_eq!(rdd.count().unwrap(), 1000);
    assert!(rdd.is_checkpointed());
    assert_ne!(rdd.checkpoint_path().unwrap(), folder);
    // The failed attempt's folder goes with its last reader.
    drop(reader);
    flintlock::checkpoint::wait_for_removals();
    assert!(!folder.exists(), "{} is left", folder.display());
}
