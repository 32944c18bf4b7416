//! `Event::JobLineage`: every job shows listeners the lineage it starts with — one node per
//! RDD it reaches (the job's RDD first), with kind, name, call site, partitions,
//! partitioner, storage level, checkpoint state and the edges' dependency kinds — and after
//! a checkpoint the lineage ends at the `ReliableCheckpointRdd`.

use crate::common;

use common::{ctx_with_dir, Recorder};
use flintlock::{CheckpointState, DependencyKind, Event, LineageNode, StorageLevel};

fn lineages(rec: &Recorder) -> Vec<(usize, Vec<LineageNode>)> {
    rec.take_matching(|e| match e {
        Event::JobLineage { job_id, nodes } => Some((job_id, nodes)),
        _ => None,
    })
}

#[test]
fn each_job_reports_its_lineage_as_it_starts_and_a_checkpoint_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let pairs = ctx
        .range(0..1_000, 4)
        .map(|x| (x % 10, x))
        .set_name("pairs <b>\"quoted\"</b>")
        .cache();
    let sums = pairs.reduce_by_key(|a, b| a + b);
    sums.checkpoint().unwrap();
    assert_eq!(sums.count().unwrap(), 10);

    let first = lineages(&rec);
    assert_eq!(first.len(), 1, "one job, one lineage");
    let nodes = &first[0].1;
    assert_eq!(nodes[0].id, sums.id(), "the job's RDD comes first");
    let ids: Vec<usize> = nodes.iter().map(|n| n.id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each RDD once: {ids:?}");
    assert_eq!(
        nodes.len(),
        3,
        "range, map, the shuffled RDD and no more: {nodes:#?}"
    );
    // The marked RDD before its job; its shuffle edge; the named, cached map.
    assert_eq!(nodes[0].checkpoint_state, CheckpointState::Marked);
    assert!(nodes[0].partitioner.is_some());
    assert_eq!(nodes[0].parents.len(), 1);
    assert_eq!(nodes[0].parents[0].kind, DependencyKind::Shuffle);
    let map = nodes.iter().find(|n| n.id == pairs.id()).unwrap();
    assert_eq!(map.name.as_deref(), Some("pairs <b>\"quoted\"</b>"));
    assert_eq!(map.storage_level, StorageLevel::MemoryOnly);
    assert_eq!(map.partitions, 4);
    assert!(
        map.call_site.contains("job_lineage_events.rs"),
        "{}",
        map.call_site
    );
    assert_eq!(map.parents[0].kind, DependencyKind::OneToOne);
    // Every edge points at a node of the snapshot.
    for n in nodes {
        for e in &n.parents {
            assert!(
                ids.contains(&e.parent),
                "edge {} -> {} leaves the snapshot",
                n.id,
                e.parent
            );
        }
    }

    // After the checkpoint the lineage of a child ends at the checkpoint.
    let doubled = sums.map_values(|v| v * 2);
    doubled.count().unwrap();
    let second = lineages(&rec);
    let nodes = &second[0].1;
    let kinds: Vec<&str> = nodes.iter().map(|n| n.kind).collect();
    assert_eq!(nodes.len(), 3, "{kinds:?}");
    assert_eq!(nodes[1].checkpoint_state, CheckpointState::Checkpointed);
    assert_eq!(kinds[2], "ReliableCheckpointRdd", "{kinds:?}");
    assert!(nodes[2].parents.is_empty());
    assert!(second[0].0 > first[0].0, "job ids grow");
}

#[test]
fn no_listener_no_snapshot_and_a_panicking_listener_does_not_fail_the_job() {
    let ctx = common::ctx();
    assert_eq!(ctx.range(0..10, 2).count().unwrap(), 10);
    ctx.add_listener(|e: &Event| {
        if matches!(e, Event::JobLineage { .. }) {
            panic!("a listener that fails on lineage");
        }
    });
    let rec = Recorder::attach(&ctx);
    assert_eq!(ctx.range(0..10, 2).count().unwrap(), 10);
    assert_eq!(lineages(&rec).len(), 1, "the other listener still sees it");
}
