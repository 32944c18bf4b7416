//! The checkpoint state machine: marking rules, transitions and their events, discovery of
//! marked ancestors.

use crate::common;

use common::{ctx, ctx_with_dir, files_below, Recorder};
use flintlock::{CheckpointState, Context, DependencyKind, Error, Event};

fn transitions(rec: &Recorder) -> Vec<(usize, CheckpointState, CheckpointState)> {
    rec.take()
        .into_iter()
        .filter_map(|e| match e {
            Event::CheckpointStateChanged { rdd_id, from, to } => Some((rdd_id, from, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn checkpoint_without_a_directory_is_an_error_and_the_rdd_stays_usable() {
    let ctx = ctx();
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    assert!(matches!(rdd.checkpoint(), Err(Error::NoCheckpointDir)));
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Initialized);
    assert_eq!(rdd.count().unwrap(), 10);
    assert!(!rdd.is_checkpointed());
    assert_eq!(rdd.checkpoint_path(), None);
}

#[test]
fn set_checkpoint_dir_later_enables_checkpoint() {
    let dir = common::backend::place();
    let ctx = ctx();
    ctx.set_checkpoint_dir(dir.path()).unwrap();
    assert_eq!(ctx.checkpoint_dir().as_deref(), Some(dir.path()));
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    assert!(rdd.is_checkpointed());
}

#[test]
fn the_state_walks_initialized_marked_in_progress_checkpointed_with_events() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let rdd = ctx.range(0..10, 2).map(|x| x * 2);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Initialized);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert_eq!(rdd.count().unwrap(), 10);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
    use CheckpointState::*;
    assert_eq!(
        transitions(&rec),
        vec![
            (rdd.id(), Initialized, Marked),
            (rdd.id(), Marked, InProgress),
            (rdd.id(), InProgress, Checkpointed)
        ]
    );
}

#[test]
fn marking_twice_is_a_no_op() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.checkpoint().unwrap();
    assert_eq!(transitions(&rec).len(), 1);
    rdd.count().unwrap();
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
    assert_eq!(
        transitions(&rec).len(),
        2,
        "only Marked->InProgress->Checkpointed"
    );
}

#[test]
fn marking_a_checkpoint_rdd_is_a_no_op() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let reopened = ctx
        .open_checkpoint::<u64>(rdd.checkpoint_path().unwrap())
        .unwrap();
    assert_eq!(reopened.checkpoint_state(), CheckpointState::Checkpointed);
    reopened.checkpoint().unwrap();
    reopened.local_checkpoint().unwrap();
    assert_eq!(reopened.checkpoint_state(), CheckpointState::Checkpointed);
    assert_eq!(reopened.dependencies().len(), 0);
}

#[test]
fn checkpoint_after_an_action_takes_effect_at_the_next_action() {
    // SPARK-3625 / SPARK-19215: Spark ignores a mark placed after the RDD was computed.
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    let child = rdd.map(|x| x * 2);
    assert_eq!(rdd.count().unwrap(), 10);
    assert_eq!(child.count().unwrap(), 10);
    rdd.checkpoint().unwrap();
    assert_eq!(
        child.collect().unwrap(),
        (1..=10).map(|x| x * 2).collect::<Vec<u64>>()
    );
    assert!(rdd.is_checkpointed());
}

#[test]
fn an_action_on_a_descendant_materialises_a_marked_ancestor_and_children_read_through_it() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let calls = common::Counter::default();
    let parent = ctx.range(0..10, 2).map(calls.counting(|x| x + 1));
    let child = parent.map(|x| x * 10);
    parent.checkpoint().unwrap();
    assert_eq!(child.count().unwrap(), 10);
    assert!(parent.is_checkpointed());
    assert_eq!(calls.get(), 10);
    // The child built before the checkpoint now reads through it.
    assert_eq!(child.collect().unwrap()[0], 10);
    assert_eq!(calls.get(), 10, "no recomputation of the parent");
}

#[test]
fn only_the_nearest_marked_rdd_is_checkpointed_by_default() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let a = ctx.range(0..10, 2).map(|x| x + 1);
    let b = a.map(|x| x * 2);
    let c = b.map(|x| x - 1);
    a.checkpoint().unwrap();
    b.checkpoint().unwrap();
    c.count().unwrap();
    assert!(b.is_checkpointed());
    assert_eq!(
        a.checkpoint_state(),
        CheckpointState::Marked,
        "behind b's checkpoint"
    );
    a.count().unwrap();
    assert!(a.is_checkpointed());
}

#[test]
fn all_marked_ancestors_are_checkpointed_when_configured() {
    let dir = common::backend::place();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_all_marked_ancestors(true)
        .build()
        .unwrap();
    let a = ctx.range(0..10, 2).map(|x| (x % 3, x));
    let b = a.reduce_by_key(|x, y| x + y);
    let c = b.map_values(|v| v * 2);
    a.checkpoint().unwrap();
    b.checkpoint().unwrap();
    c.count().unwrap();
    assert!(a.is_checkpointed());
    assert!(b.is_checkpointed());
    let mut got = c.collect().unwrap();
    got.sort();
    assert_eq!(got, vec![(0, 36), (1, 24), (2, 30)]);
}

#[test]
fn a_zero_partition_rdd_checkpoints_to_a_manifest_only() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let e = ctx.empty::<String>();
    e.checkpoint().unwrap();
    assert_eq!(e.count().unwrap(), 0);
    assert!(e.is_checkpointed());
    let path = e.checkpoint_path().unwrap();
    assert_eq!(
        files_below(&path),
        vec![std::path::PathBuf::from("_manifest.json")]
    );
    assert_eq!(
        ctx.open_checkpoint::<String>(&path)
            .unwrap()
            .count()
            .unwrap(),
        0
    );
}

#[test]
fn empty_partitions_get_files_and_the_layout_matches_the_design() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![1u8], 3);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    // `rdd-<id>-<write id>`: 16 hex digits that keep every attempt's folder its own.
    assert_eq!(path.parent().unwrap(), dir.path().join(ctx.app_id()));
    let name = path.file_name().unwrap().to_str().unwrap();
    let write_id = name
        .strip_prefix(&format!("rdd-{}-", rdd.id()))
        .expect("rdd-<id>-<write id>");
    assert_eq!(write_id.len(), 16);
    assert!(write_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let names: Vec<String> = files_below(&path)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["_manifest.json", "part-00000", "part-00001", "part-00002"]
    );
    assert_eq!(rdd.collect().unwrap(), vec![1]);
}

#[test]
fn after_the_swap_dependencies_are_one_edge_to_the_checkpoint() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx
        .range(0..10, 3)
        .map(|x| (x, x))
        .reduce_by_key(|a, b| a + b);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let deps = rdd.dependencies();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0].kind(), DependencyKind::OneToOne);
    assert_eq!(deps[0].parent().kind(), "ReliableCheckpointRdd");
    assert_eq!(deps[0].parent().dependencies().len(), 0);
    assert_eq!(rdd.lineage_depth(), 1);
    let text = rdd.to_debug_string();
    assert!(
        text.contains("(checkpoint: Checkpointed)") && text.contains("ReliableCheckpointRdd"),
        "{text}"
    );
}
