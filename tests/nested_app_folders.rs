//! An app folder nested in another app's folder (one app's `checkpoint_dir` is another's app
//! folder) belongs to its own app: start-up cleanup and `flintlock gc` of the outer one never
//! take it for an interrupted write attempt, whatever its name, and an app id shaped like an
//! attempt's folder name is refused. On either backend (see `common::backend`).

use crate::common;

use common::backend;
use flintlock::{Context, Error};

fn ctx(root: &std::path::Path, app: &str) -> Result<Context, Error> {
    Context::builder()
        .app_id(app)
        .threads(2)
        .checkpoint_dir(root)
        .build()
}

#[test]
fn a_live_app_nested_in_another_keeps_its_lock_and_checkpoints_through_cleanup_and_gc() {
    let place = backend::place();
    let outer = ctx(place.path(), "app").unwrap();
    drop(outer);
    let outer_folder = place.path().join("app");
    for name in ["rdd-team", "rdd-7-team"] {
        let inner = ctx(&outer_folder, name).unwrap();
        let rdd = inner.range(0..1_000, 4).map(|x| (x, x * 2));
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 1_000);
        // The outer app restarts (start-up cleanup of its folder and its root) and gc runs.
        drop(ctx(place.path(), "app").unwrap());
        drop(ctx(place.path(), "other").unwrap());
        flintlock::checkpoint::admin::gc(place.path(), Some(1), false).unwrap();
        flintlock::checkpoint::admin::gc(&outer_folder, None, false).unwrap();
        // The inner app still owns its folder and reads its checkpoint.
        assert!(matches!(
            ctx(&outer_folder, name),
            Err(Error::Locked { .. })
        ));
        assert_eq!(
            common::sorted(rdd.collect().unwrap()),
            (0..1_000).map(|x| (x, x * 2)).collect::<Vec<_>>()
        );
        let path = rdd.checkpoint_path().unwrap();
        assert!(backend::exists(&path.join("_manifest.json")), "{name}");
    }
}

#[test]
fn an_app_id_shaped_like_an_attempt_folder_is_refused() {
    let place = backend::place();
    for id in ["rdd-12", "rdd-3-00000000deadbeef"] {
        let err = ctx(place.path(), id).expect_err(id);
        assert!(matches!(err, Error::InvalidArgument(_)), "{id}: {err}");
        assert!(err.to_string().contains(id), "{err}");
    }
    for id in ["rdd", "rdd-team", "rdd-1-2-3", "rdd-5-abc"] {
        ctx(place.path(), id).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}
