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

#[test]
fn a_segment_that_fails_ends_the_task_before_anything_above_it_is_computed() {
    // The source fails on its third line, under a chain of 600 maps: the task computes it
    // in segments (256 levels each), and the first segment fails. The task ends there with
    // the read error; computing on would run the levels above from the partial segment, and
    // through every later segment left unfilled, by the recursion segments exist to avoid
    // (for a long enough chain, a stack overflow instead of an error).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    std::fs::write(&path, b"a\nb\n\xff\xfe\nc\n").unwrap();
    let ctx = flintlock::Context::builder().threads(1).build().unwrap();
    let above = common::Counter::default();
    let mut rdd = ctx.text_file(&path, 1).map(|l: String| l.len());
    for i in 0..600 {
        rdd = if i == 400 {
            rdd.map(above.counting(|n: usize| n))
        } else {
            rdd.map(|n| n + 1)
        };
    }
    let err = rdd.count().unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(
        above.get(),
        0,
        "levels above the failed segment were computed: {err}"
    );
}
