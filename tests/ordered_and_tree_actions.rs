//! `top`, `take_ordered` (Spark's tie rule: earlier elements win), `is_empty`,
//! `tree_aggregate`, `tree_reduce` and `count_approx_distinct`, against a `Vec` model.

use std::cmp::Ordering;

use flintlock::{Context, Error};
use proptest::prelude::*;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

/// A value whose order looks at `key` only: equal keys with different tags are ties.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tagged {
    key: u8,
    tag: u32,
}

impl PartialOrd for Tagged {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Tagged {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The n smallest (largest) by a stable sort of the RDD's order: ties go to the earlier
    /// elements and keep their order.
    #[test]
    fn take_ordered_and_top_match_a_stable_sort(keys in prop::collection::vec(0u8..6, 0..80), n in 0usize..90, p in 1usize..6) {
        let ctx = ctx();
        let data: Vec<Tagged> = keys.iter().enumerate().map(|(i, k)| Tagged { key: *k, tag: i as u32 }).collect();
        let rdd = ctx.parallelize(data.clone(), p);
        let mut asc = data.clone();
        asc.sort(); // stable
        let mut desc = data.clone();
        desc.sort_by(|a, b| b.cmp(a)); // stable
        prop_assert_eq!(rdd.take_ordered(n).unwrap(), asc.iter().take(n).cloned().collect::<Vec<_>>());
        prop_assert_eq!(rdd.top(n).unwrap(), desc.iter().take(n).cloned().collect::<Vec<_>>());
        let by_tag_rev = rdd.take_ordered_by_key(n, |t| u32::MAX - t.tag).unwrap();
        let mut want = data.clone();
        want.reverse();
        prop_assert_eq!(by_tag_rev, want.into_iter().take(n).collect::<Vec<_>>());
    }

    #[test]
    fn tree_aggregate_and_tree_reduce_equal_a_fold(data in prop::collection::vec(any::<u32>(), 0..200), p in 1usize..20, depth in 1usize..5) {
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), p);
        let sum: u64 = data.iter().map(|&x| u64::from(x)).sum();
        prop_assert_eq!(rdd.tree_aggregate(0u64, |a, x| a + u64::from(x), |a, b| a + b, depth).unwrap(), sum);
        // A non-commutative but associative combine (concatenation) keeps the order.
        let joined = rdd.tree_aggregate(Vec::new(), |mut a, x| { a.push(x); a }, |mut a, b| { a.extend(b); a }, depth).unwrap();
        prop_assert_eq!(joined, data.clone());
        prop_assert_eq!(rdd.tree_reduce(|a, b| a.max(b), depth).unwrap(), data.iter().copied().max());
        prop_assert_eq!(rdd.is_empty().unwrap(), data.is_empty());
    }
}

#[test]
fn tree_ops_refuse_depth_zero_and_report_a_panicking_combine() {
    let ctx = ctx();
    let rdd = ctx.range(0..100, 8);
    assert!(matches!(
        rdd.tree_aggregate(0, |a, x| a + x, |a, b| a + b, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        rdd.tree_reduce(|a, b| a + b, 0),
        Err(Error::InvalidArgument(_))
    ));
    let err = rdd
        .tree_reduce(
            |a, b| {
                if a > 40 {
                    panic!("combine broke")
                } else {
                    a + b
                }
            },
            2,
        )
        .unwrap_err();
    assert!(err.to_string().contains("combine broke"), "{err}");
    // The context still works.
    assert_eq!(rdd.count().unwrap(), 100);
}

#[test]
fn count_approx_distinct_is_within_its_error_and_repeatable() {
    let ctx = ctx();
    for (n, sd) in [
        (0u64, 0.05),
        (1, 0.05),
        (1000, 0.05),
        (100_000, 0.01),
        (50_000, 0.2),
    ] {
        let rdd = ctx.range(0..n * 3, 4).map(move |x| x % n.max(1));
        let n = if n == 0 { 0 } else { n };
        let est = rdd.count_approx_distinct(sd).unwrap();
        let err = (est as f64 - n as f64).abs() / (n.max(1) as f64);
        assert!(err <= 4.0 * sd, "{n} distinct at sd {sd}: estimated {est}");
        assert_eq!(
            est,
            rdd.count_approx_distinct(sd).unwrap(),
            "not repeatable"
        );
    }
    // Strings hash too; the bounds are checked.
    let words = ctx.parallelize((0..5000).map(|i| format!("w{}", i % 700)).collect(), 3);
    let est = words.count_approx_distinct(0.02).unwrap();
    assert!((650..=750).contains(&est), "{est}");
    for bad in [0.0, 0.001, 0.5, f64::NAN] {
        assert!(matches!(
            words.count_approx_distinct(bad),
            Err(Error::InvalidArgument(_))
        ));
    }
}
