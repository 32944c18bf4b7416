//! `repartition` and `coalesce_with(n, true)` deal round-robin (balanced like Spark's), and
//! `range_step` counts like Spark's `range(start, end, step)`; reversed ranges are errors.

use flintlock::{Context, Error};
use proptest::prelude::*;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every element kept once, and each output partition within one element per input
    /// partition of an equal share.
    #[test]
    fn repartition_is_balanced_and_keeps_every_element(sizes in prop::collection::vec(0u64..60, 1..6), n in 1usize..9) {
        let ctx = ctx();
        let parts: Vec<_> = sizes.iter().enumerate().map(|(i, s)| ctx.range(i as u64 * 1000..i as u64 * 1000 + s, 1)).collect();
        let rdd = ctx.union(&parts);
        let total: u64 = sizes.iter().sum();
        for out in [rdd.repartition(n), rdd.coalesce_with(n, true)] {
            prop_assert_eq!(out.num_partitions(), n);
            let glom = out.glom().collect().unwrap();
            let mut all: Vec<u64> = glom.iter().flatten().copied().collect();
            all.sort();
            let mut want = rdd.collect().unwrap();
            want.sort();
            prop_assert_eq!(all, want);
            let share = total as f64 / n as f64;
            for g in &glom {
                prop_assert!((g.len() as f64 - share).abs() <= sizes.len() as f64, "{:?} for {:?} into {}", glom.iter().map(Vec::len).collect::<Vec<_>>(), sizes, n);
            }
        }
    }

    #[test]
    fn range_step_counts_like_a_loop(start in -50i64..50, len in 0i64..80, step in 1i64..9, down in any::<bool>(), p in 1usize..6) {
        let ctx = ctx();
        let (end, step) = if down { (start - len, -step) } else { (start + len, step) };
        let mut want = Vec::new();
        let mut x = start;
        while (step > 0 && x < end) || (step < 0 && x > end) {
            want.push(x);
            x += step;
        }
        let rdd = ctx.range_step(start, end, step, p).unwrap();
        prop_assert_eq!(rdd.num_partitions(), p);
        prop_assert_eq!(rdd.collect().unwrap(), want.clone());
        prop_assert_eq!(rdd.count().unwrap(), want.len() as u64);
    }
}

#[test]
fn reversed_ranges_and_zero_steps_are_errors() {
    let ctx = ctx();
    for (s, e, st) in [(10, 0, 1), (0, 10, -1), (0, 10, 0)] {
        let err = ctx.range_step(s, e, st, 2).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert!(ctx.range_step(0, 1, 1, 0).is_err());
    // Full i64 range with a large step: no overflow.
    let r = ctx.range_step(i64::MIN, i64::MAX, i64::MAX, 3).unwrap();
    assert_eq!(r.collect().unwrap(), vec![i64::MIN, -1, i64::MAX - 1]);
    // `range` over u64: reversed is an error naming it, at the first action.
    #[allow(clippy::reversed_empty_ranges)]
    let err = ctx.range(10..0, 2).count().unwrap_err().to_string();
    assert!(err.contains("10..0") && err.contains("reversed"), "{err}");
    assert_eq!(ctx.range(5..5, 2).count().unwrap(), 0);
}
