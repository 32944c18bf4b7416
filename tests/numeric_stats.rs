//! `sum`, `mean`, `variance`, `stdev`, their sample forms, `stats` and `histogram` match a
//! `Vec` computation, and the histogram's buckets follow Spark's documented edges.

use flintlock::{Context, Error, StatCounter};
use proptest::prelude::*;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn statistics_match_two_pass_formulas(data in prop::collection::vec(-1e6f64..1e6, 0..120), p in 1usize..7) {
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), p);
        let n = data.len() as f64;
        let mean = data.iter().sum::<f64>() / n;
        let var = data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let svar = data.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let s = rdd.stats().unwrap();
        prop_assert_eq!(s.count(), data.len() as u64);
        prop_assert!(close(rdd.sum().unwrap(), data.iter().sum::<f64>()));
        prop_assert!(close(s.mean(), mean), "{} {}", s.mean(), mean);
        prop_assert!(close(rdd.variance().unwrap(), var));
        prop_assert!(close(rdd.stdev().unwrap(), var.sqrt()));
        if data.len() >= 2 {
            prop_assert!(close(rdd.sample_variance().unwrap(), svar));
            prop_assert!(close(rdd.sample_stdev().unwrap(), svar.sqrt()));
        } else {
            prop_assert!(rdd.sample_variance().unwrap().is_nan());
        }
        if !data.is_empty() {
            prop_assert_eq!(s.max(), data.iter().copied().fold(f64::MIN, f64::max));
            prop_assert_eq!(s.min(), data.iter().copied().fold(f64::MAX, f64::min));
        }
        // Merging per-partition counters equals one counter over everything.
        let whole = StatCounter::of(data.iter().copied());
        prop_assert_eq!(whole.count(), s.count());
        prop_assert!(close(whole.variance(), s.variance()));
    }

    /// Every element between the edges lands in the bucket a linear scan picks.
    #[test]
    fn histogram_buckets_match_a_scan(data in prop::collection::vec(-50i32..50, 1..100), buckets in 1usize..12) {
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), 3);
        let (edges, counts) = rdd.histogram(buckets).unwrap();
        let min = *data.iter().min().unwrap() as f64;
        let max = *data.iter().max().unwrap() as f64;
        prop_assert_eq!(edges[0], min);
        prop_assert_eq!(*edges.last().unwrap(), max);
        prop_assert_eq!(counts.iter().sum::<u64>(), data.len() as u64);
        if min != max {
            // The edge search against a linear scan: the last edge at or below each element,
            // the top edge closing the last bucket.
            let counts2 = rdd.histogram_with(&edges).unwrap();
            let mut scan = vec![0u64; edges.len() - 1];
            for &x in &data {
                let x = f64::from(x);
                let b = (0..edges.len() - 1).rev().find(|&i| edges[i] <= x).unwrap();
                scan[b] += 1;
            }
            prop_assert_eq!(&counts2, &scan);
            prop_assert_eq!(counts2.iter().sum::<u64>(), data.len() as u64);
        }
    }
}

#[test]
fn histogram_edges_follow_spark() {
    let ctx = ctx();
    // Spark's doc example: buckets [1, 10, 20, 50] are [1,10) [10,20) [20,50]; an input of
    // 1 and 50 gives 1, 0, 1.
    let rdd = ctx.parallelize(vec![1.0, 50.0], 2);
    assert_eq!(
        rdd.histogram_with(&[1.0, 10.0, 20.0, 50.0]).unwrap(),
        vec![1, 0, 1]
    );
    // Outside the edges and NaN are not counted; an edge value opens its bucket.
    let rdd = ctx.parallelize(vec![0.5, 1.0, 9.999, 10.0, 20.0, 50.0, 50.5, f64::NAN], 3);
    assert_eq!(
        rdd.histogram_with(&[1.0, 10.0, 20.0, 50.0]).unwrap(),
        vec![2, 1, 2]
    );
    // Even buckets: Spark's HistogramSuite "WorksWithoutBucketsBasic".
    let rdd = ctx.parallelize(vec![1, 2, 3, 4], 2);
    assert_eq!(rdd.histogram(1).unwrap(), (vec![1.0, 4.0], vec![4]));
    // "WorksWithoutBucketsBasicTwo": two buckets.
    assert_eq!(rdd.histogram(2).unwrap(), (vec![1.0, 2.5, 4.0], vec![2, 2]));
    // "WorksWithoutBucketsWithMoreRequestedThanElements".
    let rdd = ctx.parallelize(vec![1, 2], 1);
    assert_eq!(
        rdd.histogram(10).unwrap(),
        (
            vec![1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0],
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        )
    );
    // All equal: one closed bucket [v, v].
    let rdd = ctx.parallelize(vec![3.0, 3.0, 3.0], 2);
    assert_eq!(rdd.histogram(5).unwrap(), (vec![3.0, 3.0], vec![3]));
    // Errors: no range, zero buckets, bad edges.
    for bad in [vec![], vec![1.0, f64::INFINITY], vec![f64::NAN]] {
        assert!(matches!(
            ctx.parallelize(bad, 1).histogram(3),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(ctx.parallelize(vec![1.0], 1).histogram(0).is_err());
    for edges in [&[1.0][..], &[2.0, 1.0], &[1.0, 1.0], &[0.0, f64::NAN]] {
        assert!(ctx.parallelize(vec![1.0], 1).histogram_with(edges).is_err());
    }
}

#[test]
fn integers_and_empty_rdds() {
    let ctx = ctx();
    assert_eq!(ctx.range(1..101, 4).sum().unwrap(), 5050.0);
    assert_eq!(ctx.range(1..101, 4).mean().unwrap(), 50.5);
    let empty = ctx.empty::<u32>();
    assert_eq!(empty.sum().unwrap(), 0.0);
    assert!(empty.mean().unwrap().is_nan());
    assert!(empty.variance().unwrap().is_nan());
    assert_eq!(empty.stats().unwrap().count(), 0);
}
