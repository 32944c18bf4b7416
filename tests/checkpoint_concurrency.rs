//! Concurrent actions on one marked RDD: exactly one job writes the checkpoint, every
//! thread sees the right data, no temp file is left.

mod common;

use common::{ctx_with_dir, files_below, temp_files, Recorder};
use flintlock::Event;

#[test]
fn two_threads_one_write_both_correct() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    let rdd = ctx
        .range(0..10_000, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b);
    rdd.checkpoint().unwrap();
    let want = {
        let mut v: Vec<(u64, u64)> = (0..10)
            .map(|k| (k, (0..10_000u64).filter(|x| x % 10 == k).sum()))
            .collect();
        v.sort();
        v
    };
    std::thread::scope(|s| {
        for _ in 0..2 {
            let rdd = rdd.clone();
            let want = want.clone();
            s.spawn(move || {
                let mut got = rdd.collect().unwrap();
                got.sort();
                assert_eq!(got, want);
            });
        }
    });
    assert!(rdd.is_checkpointed());
    let commits = rec
        .take()
        .iter()
        .filter(|e| matches!(e, Event::CheckpointCommitted { .. }))
        .count();
    assert_eq!(commits, 1);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn eight_threads_racing_on_fresh_marked_rdds_commit_each_exactly_once_over_1000_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_dir(dir.path());
    let rec = Recorder::attach(&ctx);
    for round in 0..1000u64 {
        let rdd = ctx.range(0..60, 3).map(move |x| x + round);
        rdd.checkpoint().unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let rdd = rdd.clone();
                s.spawn(move || {
                    assert_eq!(
                        rdd.collect().unwrap(),
                        (round..60 + round).collect::<Vec<_>>()
                    );
                });
            }
        });
        assert!(rdd.is_checkpointed());
        let events = rec.take();
        let commits = events
            .iter()
            .filter(|e| matches!(e, Event::CheckpointCommitted { .. }))
            .count();
        let parts = events
            .iter()
            .filter(|e| matches!(e, Event::CheckpointPartitionWritten { .. }))
            .count();
        assert_eq!((commits, parts), (1, 3), "round {round}");
    }
    assert!(temp_files(dir.path()).is_empty());
    let manifests = files_below(dir.path())
        .iter()
        .filter(|p| p.ends_with("_manifest.json"))
        .count();
    assert_eq!(manifests, 1000);
}
