//! `sample` draws the expected number of elements for every fraction (issue 9 item 8): a
//! Poisson draw with a large mean used to underflow `exp(-mean)` and undercount.

mod common;

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
