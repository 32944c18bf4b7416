//! `sample` draws the expected number of elements for every fraction (issue 9 item 8): a
//! Poisson draw with a large mean used to underflow `exp(-mean)` and undercount.

use crate::common;

#[test]
fn sampling_with_replacement_and_a_large_fraction_counts_about_fraction_times_n() {
    let ctx = common::ctx();
    let rdd = ctx.range(0..100, 4);
    for fraction in [0.5, 3.0, 12.0, 40.0, 2000.0] {
        let n = rdd.sample(true, fraction, 7).count().unwrap() as f64;
        let expected = 100.0 * fraction;
        // Five standard deviations of a Poisson(100 * fraction) count.
        let tolerance = 5.0 * expected.sqrt();
        assert!(
            (n - expected).abs() <= tolerance,
            "fraction {fraction}: {n} elements, expected about {expected}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_sample_and_zero_gives_none() {
    let ctx = common::ctx();
    let rdd = ctx.range(0..1000, 3);
    let a = rdd.sample(true, 25.0, 42).collect().unwrap();
    let b = rdd.sample(true, 25.0, 42).collect().unwrap();
    assert_eq!(a, b);
    assert_ne!(a, rdd.sample(true, 25.0, 43).collect().unwrap());
    assert_eq!(rdd.sample(true, 0.0, 1).count().unwrap(), 0);
}

#[test]
#[should_panic(expected = "sample: fraction must be")]
fn a_fraction_beyond_the_poisson_range_is_refused_at_the_call() {
    let ctx = common::ctx();
    let _ = ctx.range(0..10, 1).sample(true, 1e300, 1);
}

/// `take_sample`: exactly `num` elements (all of them, shuffled, when fewer without
/// replacement), distinct without replacement, the same for the same seed, different for
/// another; `random_split`: disjoint splits that cover the RDD, in about the weights'
/// proportions, the same for the same seed.
#[test]
fn take_sample_and_random_split_follow_spark() {
    let ctx = common::ctx_with_dir(&std::env::temp_dir());
    let rdd = ctx.range(0..10_000, 5);
    for (with, num) in [
        (false, 0),
        (false, 1),
        (false, 37),
        (true, 37),
        (true, 20_000),
    ] {
        let s = rdd.take_sample(with, num, 99).unwrap();
        assert_eq!(s.len(), num, "{with} {num}");
        assert_eq!(s, rdd.take_sample(with, num, 99).unwrap(), "not repeatable");
        if num > 1 {
            assert_ne!(s, rdd.take_sample(with, num, 100).unwrap(), "seed ignored");
        }
        if !with {
            let distinct: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!(distinct.len(), num, "repeats without replacement");
        }
        assert!(s.iter().all(|x| *x < 10_000));
    }
    let all = rdd.take_sample(false, 50_000, 1).unwrap();
    assert_eq!(all.len(), 10_000);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10_000).collect::<Vec<_>>());
    assert_ne!(all, sorted, "not shuffled");
    assert!(ctx
        .empty::<u8>()
        .take_sample(true, 5, 1)
        .unwrap()
        .is_empty());

    let splits = rdd.random_split(&[1.0, 2.0, 7.0], 3);
    let parts: Vec<Vec<u64>> = splits.iter().map(|r| r.collect().unwrap()).collect();
    let mut union: Vec<u64> = parts.iter().flatten().copied().collect();
    union.sort();
    assert_eq!(
        union,
        (0..10_000).collect::<Vec<_>>(),
        "not a partition of the RDD"
    );
    for (part, weight) in parts.iter().zip([0.1, 0.2, 0.7]) {
        let share = part.len() as f64 / 10_000.0;
        assert!((share - weight).abs() < 0.03, "{share} for {weight}");
    }
    let again: Vec<Vec<u64>> = rdd
        .random_split(&[1.0, 2.0, 7.0], 3)
        .iter()
        .map(|r| r.collect().unwrap())
        .collect();
    assert_eq!(parts, again);
    let one = rdd.random_split(&[0.0, 5.0], 3);
    assert_eq!(one[0].count().unwrap(), 0);
    assert_eq!(one[1].count().unwrap(), 10_000);
}

#[test]
#[should_panic(expected = "random_split: the weights must not all be zero")]
fn random_split_refuses_all_zero_weights() {
    let ctx = flintlock::Context::new();
    let _ = ctx.range(0..10, 1).random_split(&[0.0, 0.0], 1);
}
