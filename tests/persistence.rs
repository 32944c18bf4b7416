//! cache / persist / unpersist, and evicted blocks recomputed from lineage.

use crate::common;

use common::{ctx, Counter};
use flintlock::{Error, StorageLevel};

#[test]
fn a_cached_rdd_is_computed_once_across_actions() {
    let ctx = ctx();
    let calls = Counter::default();
    let rdd = ctx.range(0..100, 4).map(calls.counting(|x| x * 2)).cache();
    assert_eq!(rdd.storage_level(), StorageLevel::MemoryOnly);
    assert_eq!(rdd.count().unwrap(), 100);
    assert_eq!(rdd.collect().unwrap().len(), 100);
    assert_eq!(rdd.reduce(|a, b| a + b).unwrap(), Some(9900));
    assert_eq!(calls.get(), 100);
    assert_eq!(rdd.as_base().cached_partitions(), 4);
}

#[test]
fn an_uncached_rdd_is_recomputed_by_every_action() {
    let ctx = ctx();
    let calls = Counter::default();
    let rdd = ctx.range(0..10, 2).map(calls.counting(|x| x));
    rdd.count().unwrap();
    rdd.count().unwrap();
    assert_eq!(calls.get(), 20);
}

#[test]
fn unpersist_drops_the_blocks_and_recomputes() {
    let ctx = ctx();
    let calls = Counter::default();
    let rdd = ctx
        .range(0..10, 2)
        .map(calls.counting(|x| x))
        .persist(StorageLevel::MemoryOnly);
    rdd.count().unwrap();
    rdd.unpersist();
    assert_eq!(rdd.as_base().cached_partitions(), 0);
    rdd.count().unwrap();
    assert_eq!(calls.get(), 20);
}

#[test]
fn an_evicted_block_is_recomputed_from_lineage_and_only_that_block() {
    let ctx = ctx();
    let calls = Counter::default();
    let rdd = ctx.range(0..10, 2).map(calls.counting(|x| x)).cache();
    let before = rdd.collect().unwrap();
    assert!(ctx.evict_block(rdd.id(), 1));
    assert!(!ctx.evict_block(rdd.id(), 1), "already gone");
    assert_eq!(rdd.collect().unwrap(), before);
    assert_eq!(
        calls.get(),
        15,
        "only partition 1 (5 elements) was recomputed"
    );
}

#[test]
fn a_cached_parent_is_not_recomputed_by_its_children() {
    let ctx = ctx();
    let calls = Counter::default();
    let parent = ctx
        .range(0..20, 2)
        .map(calls.counting(|x| (x % 4, x)))
        .cache();
    parent.count().unwrap();
    parent.reduce_by_key(|a, b| a + b).count().unwrap();
    parent.map_values(|v| v + 1).count().unwrap();
    assert_eq!(calls.get(), 20);
}

#[test]
fn dropping_a_cached_rdd_frees_its_blocks() {
    let ctx = ctx();
    let rdd = ctx.range(0..10, 2).map(|x| x).cache();
    rdd.count().unwrap();
    let id = rdd.id();
    drop(rdd);
    assert!(!ctx.evict_block(id, 0), "the block went with the RDD");
}

/// A context whose spill files go under `dir`.
fn spilling_to(dir: &std::path::Path) -> flintlock::Context {
    flintlock::Context::builder()
        .spill_dir(dir)
        .build()
        .unwrap()
}

/// Every file under the context's spill folders in `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for folder in std::fs::read_dir(dir).unwrap() {
        let folder = folder.unwrap().path();
        for f in std::fs::read_dir(&folder).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[test]
fn a_disk_only_rdd_is_computed_once_and_read_back_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_to(dir.path());
    let calls = Counter::default();
    let rdd = ctx
        .range(0..1000, 4)
        .map(calls.counting(|x| (x, format!("v{x}"))))
        .persist(StorageLevel::DiskOnly);
    let first = rdd.collect().unwrap();
    assert_eq!(first.len(), 1000);
    assert_eq!(rdd.collect().unwrap(), first);
    assert_eq!(
        rdd.map(|p| p.0).reduce(|a, b| a + b).unwrap(),
        Some(499_500)
    );
    assert_eq!(calls.get(), 1000, "computed once, then read from disk");
    assert_eq!(ctx.memory_stats().spill_files, 4);
    assert_eq!(files_under(dir.path()).len(), 4);
    assert!(rdd.to_debug_string().contains("Disk Serialized"));
    drop(rdd);
    assert_eq!(ctx.memory_stats().spill_files, 0);
    assert!(
        files_under(dir.path()).is_empty(),
        "the blocks' files go with the RDD"
    );
}

#[test]
fn memory_and_disk_keeps_what_fits_the_limit_in_memory_and_the_rest_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let roomy = spilling_to(dir.path());
    let a = roomy
        .range(0..100_000, 4)
        .persist(StorageLevel::MemoryAndDisk);
    assert_eq!(a.count().unwrap(), 100_000);
    assert_eq!(
        roomy.memory_stats().spill_files,
        0,
        "no limit: all in memory"
    );

    // 4 blocks of 25,000 u64 (200 KB each, more as estimated) under a 1 MB limit (512 KiB
    // for kept data): some fit, the others go to disk.
    let tight = flintlock::Context::builder()
        .memory_limit(1 << 20)
        .spill_dir(dir.path())
        .threads(1)
        .build()
        .unwrap();
    let calls = Counter::default();
    let b = tight
        .range(0..100_000, 4)
        .map(calls.counting(|x| x * 3))
        .persist(StorageLevel::MemoryAndDisk);
    assert_eq!(b.count().unwrap(), 100_000);
    let stats = tight.memory_stats();
    assert!((1..=3).contains(&stats.spill_files), "{stats:?}");
    assert!(stats.budget_used >= 200_000, "{stats:?}");
    assert_eq!(b.reduce(|x, y| x + y).unwrap(), Some(3 * 4_999_950_000));
    assert_eq!(calls.get(), 100_000);
    drop(b);
    let stats = tight.memory_stats();
    assert_eq!((stats.spill_files, stats.budget_used), (0, 0));
}

#[test]
fn a_disk_level_without_a_codec_fails_the_action_saying_what_to_register() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        id: u64,
    }
    let ctx = ctx();
    let rdd = ctx
        .range(0..10, 2)
        .map(|id| Row { id })
        .persist(StorageLevel::DiskOnly);
    let err = rdd.count().unwrap_err().to_string();
    assert!(err.contains("register_spillable"), "{err}");
    assert!(err.contains("Row"), "{err}");
    ctx.register_spillable::<Row>();
    assert_eq!(rdd.collect().unwrap()[9], Row { id: 9 });
}

#[test]
fn a_disk_level_on_records_that_do_not_read_back_fails_the_action_saying_why() {
    /// Written as a number or a string, read with `deserialize_any`: postcard cannot.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Loose {
        N(u64),
        S(String),
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_to(dir.path());
    ctx.register_spillable::<Loose>();
    let calls = Counter::default();
    let rdd = ctx
        .range(0..100, 2)
        .map(calls.counting(Loose::N))
        .persist(StorageLevel::DiskOnly);
    for _ in 0..2 {
        let err = rdd.count().unwrap_err();
        assert!(matches!(err, Error::UnspillableRecord { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("Loose") && text.contains("Nothing was lost"),
            "{text}"
        );
        assert!(!text.contains("checkpoint"), "not a checkpoint: {text}");
        assert!(
            files_under(dir.path()).is_empty(),
            "a refused block leaves no file"
        );
    }
    // Kept in memory instead, the same lineage runs.
    rdd.unpersist();
    assert_eq!(rdd.count().unwrap(), 100);
}

#[test]
fn a_damaged_disk_block_is_recomputed_from_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = spilling_to(dir.path());
    let calls = Counter::default();
    let rdd = ctx
        .range(0..2000, 2)
        .map(calls.counting(|x| x + 1))
        .persist(StorageLevel::DiskOnly);
    let before = rdd.collect().unwrap();
    let files = files_under(dir.path());
    assert_eq!(files.len(), 2);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&files[0], bytes).unwrap();
    assert_eq!(rdd.collect().unwrap(), before);
    assert_eq!(calls.get(), 3000, "only the damaged block was recomputed");
    std::fs::remove_file(&files[1]).unwrap();
    assert_eq!(rdd.collect().unwrap(), before);
    assert_eq!(calls.get(), 4000, "a missing block file is recomputed too");
}

#[test]
fn under_a_limit_memory_only_keeps_what_fits_and_recomputes_the_rest() {
    let ctx = flintlock::Context::builder()
        .memory_limit(1 << 20)
        .threads(1)
        .build()
        .unwrap();
    let calls = Counter::default();
    // 8 blocks of 25,000 u64 (~275 KB each as estimated) against 512 KiB for kept data.
    let rdd = ctx
        .range(0..200_000, 8)
        .map(calls.counting(|x| x + 1))
        .cache();
    assert_eq!(rdd.count().unwrap(), 200_000);
    let kept = rdd.as_base().cached_partitions();
    assert!((1..8).contains(&kept), "{kept} of 8 blocks kept");
    assert_eq!(rdd.reduce(|a, b| a + b).unwrap(), Some(20_000_100_000));
    assert_eq!(
        calls.get(),
        200_000 + (8 - kept) * 25_000,
        "only the blocks that were not kept are computed again"
    );
    drop(rdd);
    assert_eq!(ctx.memory_stats().budget_used, 0);
}

#[test]
fn under_a_limit_a_local_checkpoint_keeps_every_block() {
    let ctx = flintlock::Context::builder()
        .memory_limit(1 << 20)
        .threads(1)
        .build()
        .unwrap();
    let rdd = ctx.range(0..200_000, 8).map(|x| x * 2);
    rdd.local_checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 200_000);
    assert_eq!(rdd.as_base().cached_partitions(), 8);
    assert_eq!(rdd.reduce(|a, b| a + b).unwrap(), Some(39_999_800_000));
}
