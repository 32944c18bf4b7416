//! A checkpoint written by one process is opened by another, with its partitioner.

mod common;

use std::process::Command;

use flintlock::{Context, DependencyKind, Partitioner};

const CHILD_ENV: &str = "FLINTLOCK_TEST_CHILD_DIR";

/// Runs only as the child of `a_checkpoint_written_by_another_process_reopens_with_its_partitioner`:
/// writes a checkpoint and prints its path.
#[test]
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
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_a_checkpoint",
            "--nocapture",
            "--test-threads",
            "1",
        ])
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
