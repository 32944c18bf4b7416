//! App folders: a stable `app_id` is locked by its live owner; start-up cleanup removes the
//! leftovers of dead owners only, and never a committed checkpoint.

use crate::common;

use std::path::Path;

use flintlock::{Context, Error};

const CHILD_ENV: &str = "FLINTLOCK_TEST_LOCK_HOLDER_DIR";

fn ctx_with_id(dir: &Path, id: &str) -> flintlock::Result<Context> {
    Context::builder()
        .threads(1)
        .app_id(id)
        .checkpoint_dir(dir)
        .build()
}

/// Leftovers of an interrupted write: a temp part in a committed folder, and a folder whose
/// manifest was never written.
fn plant_leftovers(app: &Path) {
    std::fs::create_dir_all(app.join("rdd-999")).unwrap();
    std::fs::write(app.join("rdd-999").join("part-00000"), b"half").unwrap();
    std::fs::write(app.join("rdd-999").join(".part-00001.7.tmp"), b"half").unwrap();
}

#[test]
fn a_second_context_with_the_same_app_id_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = ctx_with_id(dir.path(), "stable").unwrap();
    assert_eq!(first.app_id(), "stable");
    let err = ctx_with_id(dir.path(), "stable").unwrap_err();
    assert!(
        matches!(&err, Error::Locked { path } if path.ends_with("stable/.lock")),
        "{err}"
    );
    drop(first);
    assert!(
        ctx_with_id(dir.path(), "stable").is_ok(),
        "free again once the owner is gone"
    );
}

#[test]
fn setting_a_directory_again_while_its_rdds_live_takes_its_folder_back() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ctx = ctx_with_id(a.path(), "returns").unwrap();
    let first = ctx.range(0..10, 2);
    first.checkpoint().unwrap();
    assert_eq!(first.count().unwrap(), 10);
    ctx.set_checkpoint_dir(b.path()).unwrap();
    let second = ctx.range(0..20, 2);
    second.checkpoint().unwrap();
    assert_eq!(second.count().unwrap(), 20);
    // `first` still holds A's folder (and its lock): A is taken back, not locked out.
    ctx.set_checkpoint_dir(a.path())
        .expect("A's folder is this context's own");
    let third = ctx.range(0..30, 3);
    third.checkpoint().unwrap();
    assert_eq!(third.count().unwrap(), 30);
    let (p1, p3) = (
        first.checkpoint_path().unwrap(),
        third.checkpoint_path().unwrap(),
    );
    assert_eq!(p1.parent(), p3.parent(), "both in A's app folder");
    assert!(p3.starts_with(a.path()));
    assert_eq!(first.count().unwrap(), 10);
    assert_eq!(second.count().unwrap(), 20);
    // Another context still cannot have it.
    assert!(matches!(
        ctx_with_id(a.path(), "returns"),
        Err(Error::Locked { .. })
    ));
    drop((first, second, third, ctx));
    assert!(
        ctx_with_id(a.path(), "returns").is_ok(),
        "free once all are gone"
    );
    assert!(ctx_with_id(b.path(), "returns").is_ok());
}

#[test]
fn a_stable_app_id_reopens_its_committed_checkpoints_in_a_later_context() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let ctx = ctx_with_id(dir.path(), "restartable").unwrap();
        let rdd = ctx.range(0..10, 2);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    assert!(path.starts_with(dir.path().join("restartable")));
    let ctx = ctx_with_id(dir.path(), "restartable").unwrap();
    assert_eq!(
        ctx.open_checkpoint::<u64>(&path).unwrap().count().unwrap(),
        10
    );
}

#[test]
fn distinct_live_apps_never_touch_each_others_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = ctx_with_id(dir.path(), "app-a").unwrap();
    let a_dir = dir.path().join("app-a");
    plant_leftovers(&a_dir);
    let _b = ctx_with_id(dir.path(), "app-b").unwrap();
    assert!(
        a_dir.join("rdd-999").join(".part-00001.7.tmp").exists(),
        "a live app's files stay"
    );
    drop(a);
}

#[test]
fn start_up_cleanup_removes_a_dead_apps_leftovers_but_keeps_its_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let committed = {
        let dead = ctx_with_id(dir.path(), "dead").unwrap();
        let rdd = dead.range(0..10, 2);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    let dead_dir = dir.path().join("dead");
    plant_leftovers(&dead_dir);
    std::fs::write(committed.join(".part-00000.3.tmp"), b"x").unwrap();
    let _other = ctx_with_id(dir.path(), "other").unwrap();
    assert!(
        !dead_dir.join("rdd-999").exists(),
        "the unmanifested folder is gone"
    );
    assert!(common::temp_files(dir.path()).is_empty());
    assert!(
        committed.join("_manifest.json").exists(),
        "the committed checkpoint stays"
    );
}

/// Runs only as the child of the test below: holds the lock of app `held` and waits.
#[test]
#[ignore = "a child process: a_killed_lock_holder_is_taken_over_and_only_its_leftovers_are_cleaned starts it"]
fn child_holds_an_app_lock() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not the child
    };
    let ctx = ctx_with_id(Path::new(&dir), "held").unwrap();
    plant_leftovers(&Path::new(&dir).join("held"));
    println!("LOCKED");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(ctx);
}

#[test]
fn a_killed_lock_holder_is_taken_over_and_only_its_leftovers_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::spawn_test("child_holds_an_app_lock", (CHILD_ENV, dir.path()));
    assert!(
        common::wait_for_line(&mut child, "LOCKED"),
        "the child took the lock"
    );
    let err = ctx_with_id(dir.path(), "held").unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(
        dir.path().join("held/rdd-999").exists(),
        "a live owner's files are not cleaned"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let ctx = ctx_with_id(dir.path(), "held").unwrap();
    assert!(
        !dir.path().join("held/rdd-999").exists(),
        "the dead owner's leftovers are gone"
    );
    assert_eq!(ctx.range(0..4, 1).count().unwrap(), 4);
}

/// A visitor (another process's start-up cleanup, or `flintlock gc`) holds a free app's
/// owner lock while it works, under the visit lock. The owner that starts meanwhile waits for
/// it instead of reporting `Locked`; a live owner is still reported at once.
#[test]
fn an_owner_waits_for_a_visitor_instead_of_reporting_locked() {
    let dir = tempfile::tempdir().unwrap();
    drop(ctx_with_id(dir.path(), "visited").unwrap());
    let app = dir.path().join("visited");
    // The visitor, as another process would hold them: the visit lock first, then the owner
    // lock, each through its own open file.
    let visit = std::fs::File::create(app.join(".visit.lock")).unwrap();
    visit.try_lock().unwrap();
    let owner = std::fs::File::create(app.join(".lock")).unwrap();
    owner.try_lock().unwrap();
    let visitor = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(owner); // the owner lock goes first
        drop(visit);
    });
    let ctx = ctx_with_id(dir.path(), "visited").expect("waits for the visitor");
    visitor.join().unwrap();
    // Now a live owner holds it: the next one fails fast.
    let err = ctx_with_id(dir.path(), "visited").unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(ctx);
}

/// A process that starts child processes (a `Command`, a `pipe`) hands each child a copy of
/// every open file while it starts, the lock file's included: an owner that drops its
/// context at that instant must still release the lock at once, so that the same process
/// reopening the folder right away gets it, not `Locked`.
#[cfg(unix)]
#[test]
fn a_dropped_owner_reopens_at_once_while_the_process_starts_children() {
    let dir = tempfile::tempdir().unwrap();
    common::while_starting_processes(|| {
        for i in 0..400 {
            if let Err(e) = ctx_with_id(dir.path(), "restarted") {
                panic!("reopening {i}: {e}");
            }
        }
    });
}
