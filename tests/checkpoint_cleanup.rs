//! Opt-in cleanup: `clean_checkpoints(true)` deletes an RDD's folder with its last reader
//! and an empty generated app folder with the context; by default nothing is deleted.
//! (What cleanup must never delete is in `checkpoint_never_deletes.rs`.)

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};

use flintlock::checkpoint::StorageOp;
use flintlock::Context;

/// A context with a generated app id and `clean_checkpoints(true)`, checkpointing below
/// `dir`.
fn cleaning(dir: &std::path::Path) -> Context {
    Context::builder()
        .threads(2)
        .checkpoint_dir(dir)
        .clean_checkpoints(true)
        .build()
        .unwrap()
}

#[test]
fn with_cleanup_the_folder_goes_with_the_last_handle_and_the_app_folder_with_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = cleaning(dir.path());
    let app = dir.path().join(ctx.app_id());
    let rdd = ctx.range(0..10, 2).map(|x| x * 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    assert!(path.join("_manifest.json").exists());
    let child = rdd.map(|x| x + 1);
    drop(rdd);
    assert!(path.exists(), "a child still reads through the checkpoint");
    assert_eq!(child.count().unwrap(), 10);
    drop(child);
    // Removed in the background: the drop does not wait for the fsyncs.
    flintlock::checkpoint::wait_for_removals();
    assert!(!path.exists(), "the rdd folder went with the last handle");
    assert!(app.exists());
    drop(ctx);
    assert!(!app.exists(), "the app folder went with the context");
}

#[test]
fn an_app_folder_a_visitor_is_in_stays_and_its_visit_lock_is_not_pulled_away() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = cleaning(dir.path());
    let app = dir.path().join(ctx.app_id());
    let visit = |app: &std::path::Path| {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(app.join(".visit.lock"))
            .unwrap();
        file.try_lock().unwrap();
        file
    };
    // A visitor (another process's start-up cleanup, `flintlock gc`) holds the visit lock
    // and stays.
    let staying = visit(&app);
    drop(ctx);
    assert!(
        app.join(".visit.lock").exists(),
        "the visitor's lock file was removed under it: a second visitor could take it"
    );
    assert!(app.exists());
    drop(staying);
    // A visitor that leaves soon (as one does on finding the owner lock busy) is waited for.
    let ctx = cleaning(dir.path());
    let app = dir.path().join(ctx.app_id());
    let passing = visit(&app);
    let leaves = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(passing);
    });
    drop(ctx);
    leaves.join().unwrap();
    assert!(
        !app.exists(),
        "the app folder stayed after its visitor left"
    );
}

/// Set to make folder fsyncs take a second: a removal (which fsyncs the folder once its
/// manifest is gone) is then still under way when the test drops its context.
static SLOW: AtomicBool = AtomicBool::new(false);

#[test]
fn a_context_dropped_while_its_checkpoint_is_being_removed_waits_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_storage(common::hooked::Hooked::new(|op, _| {
            if op == StorageOp::SyncDir && SLOW.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }))
        .clean_checkpoints(true)
        .build()
        .unwrap();
    let app = dir.path().join(ctx.app_id());
    let rdd = ctx.range(0..1000, 4);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    SLOW.store(true, Ordering::SeqCst);
    let dropped = std::time::Instant::now();
    drop(rdd); // the removal starts on the remover thread, and takes a second or more
    assert!(
        dropped.elapsed() < std::time::Duration::from_millis(500),
        "the drop waited for the removal"
    );
    assert!(path.exists(), "still being removed");
    drop(ctx); // waits for it before letting go of the app folder
    assert!(dropped.elapsed() >= std::time::Duration::from_secs(1));
    assert!(!path.exists(), "the checkpoint was removed");
    assert!(
        !app.exists(),
        "the app folder, empty by then, went with the context"
    );
}

#[test]
fn without_cleanup_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let app = dir.path().join(ctx.app_id());
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    drop(rdd);
    drop(ctx);
    assert!(path.join("_manifest.json").exists());
    assert!(app.exists());
}
