//! Opt-in cleanup: `clean_checkpoints(true)` deletes an RDD's folder with its last reader
//! and an empty generated app folder with the context; by default nothing is deleted.
//! (What cleanup must never delete is in `checkpoint_never_deletes.rs`.)

mod common;

use flintlock::Context;

#[test]
fn with_cleanup_the_folder_goes_with_the_last_handle_and_the_app_folder_with_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .clean_checkpoints(true)
        .build()
        .unwrap();
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
    assert!(!path.exists(), "the rdd folder went with the last handle");
    assert!(app.exists());
    drop(ctx);
    assert!(!app.exists(), "the app folder went with the context");
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
