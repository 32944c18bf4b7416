//! A checkpoint written by one process is opened by another, with its partitioner.

use crate::common;

use flintlock::{Context, DependencyKind, Partitioner};

const CHILD_ENV: &str = "FLINTLOCK_TEST_CHILD_DIR";

/// Runs only as the child of `a_checkpoint_written_by_another_process_reopens_with_its_partitioner`:
/// writes a checkpoint and prints its path.
#[test]
#[ignore = "a child process: a_checkpoint_written_by_another_process_reopens_with_its_partitioner starts it"]
fn child_writes_a_checkpoint() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do
    };
    let ctx = Context::builder()
        .app_name("writer")
        .checkpoint_dir(&dir)
        .build()
        .unwrap();
    let ranks = ctx
        .range(0..1000, 4)
        .map(|x| (x % 100, 1.0f64))
        .reduce_by_key_with(Partitioner::hash(5), |a, b| a + b);
    ranks.checkpoint().unwrap();
    ranks.count().unwrap();
    println!(
        "CHECKPOINT_PATH={}",
        ranks.checkpoint_path().unwrap().display()
    );
}

#[test]
fn a_checkpoint_written_by_another_process_reopens_with_its_partitioner() {
    let dir = common::backend::place();
    let out = common::child_test("child_writes_a_checkpoint")
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = stdout
        .lines()
        .find_map(|l| l.split("CHECKPOINT_PATH=").nth(1))
        .expect("the child printed the path");

    let ctx = Context::builder().app_name("reader").build().unwrap();
    let ranks = ctx.open_checkpoint::<(u64, f64)>(path).unwrap();
    assert_eq!(ranks.num_partitions(), 5);
    assert_eq!(ranks.partitioner(), Some(Partitioner::hash(5)));
    let mut got = ranks.collect().unwrap();
    got.sort_by_key(|p| p.0);
    assert_eq!(got, (0..100).map(|k| (k, 10.0)).collect::<Vec<_>>());
    // The same key lands in the same partition in this process: the join is narrow.
    let links = ctx
        .range(0..100, 3)
        .map(|x| (x, x))
        .partition_by(Partitioner::hash(5));
    let joined = links.join(&ranks);
    assert!(joined
        .dependencies()
        .iter()
        .all(|d| d.kind() == DependencyKind::OneToOne));
    assert_eq!(joined.count().unwrap(), 100);
}

/// Consumers size their tables from a partition's length (a join's build side): a
/// checkpointed partition knows its exact length from the manifest.
#[test]
fn a_checkpointed_partition_reports_its_exact_length() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let pairs = ctx
        .range(0..1000, 3)
        .map(|x| (x % 97, x))
        .reduce_by_key(|a, b| a + b);
    pairs.checkpoint().unwrap();
    assert_eq!(pairs.count().unwrap(), 97);
    let lengths = pairs
        .map_partitions(|mut it| {
            let before = it.size_hint();
            let first = it.next().is_some();
            let after = it.size_hint();
            let rest = it.count();
            std::iter::once((before, after, usize::from(first) + rest))
        })
        .collect()
        .unwrap();
    for (before, after, n) in lengths {
        assert_eq!(before, (n, Some(n)));
        assert_eq!(after, (n.saturating_sub(1), Some(n.saturating_sub(1))));
    }
}
