//! Depth never costs stack: a 1,000,000-step narrow chain and a 10,000-iteration shuffle
//! loop run, print and drop on the default test-thread stack.

use crate::common;

use common::ctx;

#[test]
fn a_million_step_map_chain_counts_prints_and_drops_without_overflow() {
    let ctx = ctx();
    let base = ctx.parallelize((0u32..8).collect(), 2);
    let weak_base = base.downgrade();
    let mut rdd = base.clone();
    drop(base);
    for _ in 0..1_000_000 {
        rdd = rdd.map(|x| x.wrapping_add(1));
    }
    assert_eq!(rdd.lineage_depth(), 1_000_000);
    assert_eq!(rdd.count().unwrap(), 8);
    assert_eq!(
        rdd.collect().unwrap(),
        (0u32..8).map(|x| x + 1_000_000).collect::<Vec<_>>()
    );
    let text = rdd.to_debug_string();
    assert_eq!(text.lines().count(), 1_000_001);
    assert!(text
        .lines()
        .last()
        .unwrap()
        .contains("ParallelCollectionRdd"));
    drop(text);
    drop(rdd);
    assert!(weak_base.upgrade().is_none(), "the whole chain was freed");
}

#[test]
fn ten_thousand_shuffle_iterations_run_as_one_job() {
    let ctx = ctx();
    let mut rdd = ctx.parallelize((0u32..4).map(|k| (k, 1u64)).collect(), 2);
    for _ in 0..10_000 {
        rdd = rdd.map_values(|v| v + 1).reduce_by_key(|a, b| a + b);
    }
    assert_eq!(rdd.lineage_depth(), 20_000);
    let mut got = rdd.collect().unwrap();
    got.sort();
    assert_eq!(got, (0u32..4).map(|k| (k, 10_001)).collect::<Vec<_>>());
    drop(rdd);
}

#[test]
fn a_deep_chain_with_a_shared_branch_is_computed_correctly() {
    // zip of a deep chain with itself: the chain's partitions have two consumers.
    let ctx = ctx();
    let mut rdd = ctx.range(0..6, 2);
    for _ in 0..2_000 {
        rdd = rdd.map(|x| x + 1);
    }
    let zipped = rdd.zip(&rdd).map(|(a, b)| a + b);
    assert_eq!(
        zipped.collect().unwrap(),
        (0..6).map(|x| 2 * (x + 2_000)).collect::<Vec<_>>()
    );
}
