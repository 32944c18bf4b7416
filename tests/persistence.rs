//! cache / persist / unpersist, and evicted blocks recomputed from lineage.

mod common;

use common::{ctx, Counter};
use flintlock::StorageLevel;

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
