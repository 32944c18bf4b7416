//! Every element-wise transformation and action against the same computation on a `Vec`.

use crate::common;

use common::{ctx, sorted};
use proptest::prelude::*;

fn parts() -> impl Strategy<Value = usize> {
    1usize..7
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn map_matches_vec_map(data in proptest::collection::vec(any::<i32>(), 0..200), n in parts()) {
        let ctx = ctx();
        let got = ctx.parallelize(data.clone(), n).map(|x| x.wrapping_mul(3)).collect().unwrap();
        let want: Vec<i32> = data.iter().map(|x| x.wrapping_mul(3)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn filter_matches_vec_filter(data in proptest::collection::vec(any::<i32>(), 0..200), n in parts()) {
        let ctx = ctx();
        let got = ctx.parallelize(data.clone(), n).filter(|x| x % 3 == 0).collect().unwrap();
        let want: Vec<i32> = data.into_iter().filter(|x| x % 3 == 0).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn flat_map_matches_vec_flat_map(data in proptest::collection::vec(0u8..5, 0..100), n in parts()) {
        let ctx = ctx();
        let got = ctx.parallelize(data.clone(), n).flat_map(|x| vec![x; x as usize]).collect().unwrap();
        let want: Vec<u8> = data.into_iter().flat_map(|x| vec![x; x as usize]).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn distinct_matches_sorted_dedup(data in proptest::collection::vec(0u16..50, 0..200), n in parts()) {
        let ctx = ctx();
        let got = sorted(ctx.parallelize(data.clone(), n).distinct().collect().unwrap());
        let mut want = data;
        want.sort();
        want.dedup();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn reductions_match_vec(data in proptest::collection::vec(-1000i64..1000, 0..200), n in parts()) {
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), n);
        prop_assert_eq!(rdd.count().unwrap(), data.len() as u64);
        prop_assert_eq!(rdd.reduce(|a, b| a + b).unwrap(), data.iter().copied().reduce(|a, b| a + b));
        prop_assert_eq!(rdd.fold(0, |a, b| a + b).unwrap(), data.iter().sum::<i64>());
        prop_assert_eq!(rdd.max().unwrap(), data.iter().copied().max());
        prop_assert_eq!(rdd.min().unwrap(), data.iter().copied().min());
        prop_assert_eq!(rdd.aggregate(0usize, |c, _| c + 1, |a, b| a + b).unwrap(), data.len());
    }

    #[test]
    fn take_and_first_match_vec_prefix(data in proptest::collection::vec(any::<u8>(), 0..100), n in parts(), k in 0usize..120) {
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), n);
        prop_assert_eq!(rdd.take(k).unwrap(), data.iter().copied().take(k).collect::<Vec<_>>());
        prop_assert_eq!(rdd.first().unwrap(), data.first().copied());
    }

    #[test]
    fn union_coalesce_repartition_keep_the_elements(a in proptest::collection::vec(any::<u16>(), 0..100), b in proptest::collection::vec(any::<u16>(), 0..100), n in parts(), m in parts()) {
        let ctx = ctx();
        let ra = ctx.parallelize(a.clone(), n);
        let rb = ctx.parallelize(b.clone(), m);
        let mut all = a.clone();
        all.extend(b.iter().copied());
        prop_assert_eq!(ra.union(&rb).collect().unwrap(), all.clone());
        prop_assert_eq!(ra.union(&rb).coalesce(2).collect().unwrap(), all.clone());
        prop_assert_eq!(sorted(ra.union(&rb).repartition(m).collect().unwrap()), sorted(all));
    }

    #[test]
    fn zip_with_index_matches_enumerate(data in proptest::collection::vec(any::<u8>(), 0..100), n in parts()) {
        let ctx = ctx();
        let got = ctx.parallelize(data.clone(), n).zip_with_index().collect().unwrap();
        let want: Vec<(u8, u64)> = data.into_iter().zip(0u64..).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn zip_partitions_sees_both_partitions_of_each_index(a in proptest::collection::vec(any::<u8>(), 0..60), b in proptest::collection::vec(any::<u8>(), 0..60), n in parts()) {
        let ctx = ctx();
        let got = ctx
            .parallelize(a.clone(), n)
            .zip_partitions(&ctx.parallelize(b.clone(), n), |x, y| {
                vec![(x.map(u64::from).sum::<u64>(), y.count())]
            })
            .collect()
            .unwrap();
        // Partition i of a parallelized Vec is its i-th even slice.
        let slice = |v: &Vec<u8>, i: usize| v[i * v.len() / n..(i + 1) * v.len() / n].to_vec();
        let want: Vec<(u64, usize)> = (0..n)
            .map(|i| (slice(&a, i).iter().map(|&x| u64::from(x)).sum(), slice(&b, i).len()))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cartesian_matches_nested_loops(a in proptest::collection::vec(any::<u8>(), 0..12), b in proptest::collection::vec(any::<u8>(), 0..12), n in parts(), m in parts()) {
        let ctx = ctx();
        let got = sorted(ctx.parallelize(a.clone(), n).cartesian(&ctx.parallelize(b.clone(), m)).collect().unwrap());
        let want = sorted(a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))).collect());
        prop_assert_eq!(got, want);
    }
}

#[test]
fn map_partitions_with_index_sees_each_partition_once() {
    let ctx = ctx();
    let got = ctx
        .range(0..10, 3)
        .map_partitions_with_index(|i, it| vec![(i, it.count())])
        .collect()
        .unwrap();
    assert_eq!(got, vec![(0, 3), (1, 3), (2, 4)]);
}

#[test]
fn glom_returns_one_vec_per_partition_in_order() {
    let ctx = ctx();
    let got = ctx
        .parallelize((0..7).collect::<Vec<u32>>(), 3)
        .glom()
        .collect()
        .unwrap();
    assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4, 5, 6]]);
}

#[test]
fn zip_pairs_partitions_elementwise() {
    let ctx = ctx();
    let a = ctx.range(0..9, 3);
    let b = a.map(|x| x * x);
    let want: Vec<(u64, u64)> = (0..9).map(|x| (x, x * x)).collect();
    assert_eq!(a.zip(&b).collect().unwrap(), want);
}

#[test]
fn zip_of_unequal_partition_sizes_is_a_data_mismatch_error() {
    let ctx = ctx();
    let a = ctx.range(0..10, 2);
    let b = a.filter(|x| *x != 3);
    let err = a.zip(&b).collect().unwrap_err();
    assert!(
        matches!(err, flintlock::Error::DataMismatch { partition: 0, .. }),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "same number of partitions")]
fn zip_with_different_partition_counts_panics_at_the_call() {
    let ctx = ctx();
    let _ = ctx.range(0..4, 2).zip(&ctx.range(0..4, 3));
}

#[test]
#[should_panic(expected = "at least 1")]
fn parallelize_with_zero_partitions_panics_at_the_call() {
    let ctx = ctx();
    let _ = ctx.parallelize(vec![1], 0);
}

#[test]
fn sample_is_deterministic_for_a_seed_and_close_to_the_fraction() {
    let ctx = ctx();
    let rdd = ctx.range(0..20_000, 4);
    let a = rdd.sample(false, 0.25, 7).collect().unwrap();
    let b = rdd.sample(false, 0.25, 7).collect().unwrap();
    assert_eq!(a, b);
    assert!((4_500..5_500).contains(&a.len()), "{}", a.len());
    let with = rdd.sample(true, 2.0, 7).count().unwrap();
    assert!((38_000..42_000).contains(&with), "{with}");
}

#[test]
fn key_by_count_by_value_and_extremes_match_vec() {
    let ctx = ctx();
    let words = vec!["b", "a", "ccc", "a", "dd"];
    let rdd = ctx.parallelize(words.clone(), 2);
    assert_eq!(
        rdd.key_by(|w| w.len()).collect().unwrap(),
        words.iter().map(|w| (w.len(), *w)).collect::<Vec<_>>()
    );
    let counts = rdd.count_by_value().unwrap();
    assert_eq!(counts[&"a"], 2);
    assert_eq!(counts.len(), 4);
    assert_eq!(rdd.max_by_key(|w| w.len()).unwrap(), Some("ccc"));
    assert_eq!(rdd.min_by_key(|w| w.len()).unwrap(), Some("b"));
}

#[test]
fn foreach_and_foreach_partition_visit_every_element() {
    let ctx = ctx();
    let c = common::Counter::default();
    let c2 = c.clone();
    ctx.range(0..100, 4).foreach(move |_| c2.hit()).unwrap();
    assert_eq!(c.get(), 100);
    let c3 = c.clone();
    ctx.range(0..100, 4)
        .foreach_partition(move |it| it.for_each(|_| c3.hit()))
        .unwrap();
    assert_eq!(c.get(), 200);
}

#[test]
fn empty_rdd_has_no_partitions_and_empty_results() {
    let ctx = ctx();
    let e = ctx.empty::<u32>();
    assert_eq!(e.count().unwrap(), 0);
    assert_eq!(e.collect().unwrap(), Vec::<u32>::new());
    assert_eq!(e.reduce(|a, b| a + b).unwrap(), None);
    assert_eq!(e.first().unwrap(), None);
}

#[test]
fn save_as_text_file_writes_one_part_per_partition_and_refuses_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let out = dir.path().join("out");
    ctx.range(0..5, 2).save_as_text_file(&out).unwrap();
    let lines: Vec<String> = ["part-00000", "part-00001"]
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(out.join(p))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(lines, vec!["0", "1", "2", "3", "4"]);
    let err = ctx.range(0..5, 2).save_as_text_file(&out).unwrap_err();
    assert!(matches!(err, flintlock::Error::InvalidArgument(_)));
    // It reads back as a folder.
    assert_eq!(ctx.text_file(&out, 3).count().unwrap(), 5);
}

#[test]
fn a_failed_save_leaves_nothing_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let out = dir.path().join("nested").join("out");
    let failing = ctx.range(0..100, 4).map(|x| {
        if x == 77 {
            panic!("element 77 is bad");
        }
        x
    });
    let err = failing.save_as_text_file(&out).unwrap_err();
    assert!(err.to_string().contains("element 77"), "{err}");
    assert!(!out.exists(), "a failed save left {}", out.display());
    ctx.range(0..100, 4).save_as_text_file(&out).unwrap();
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}"); // four parts and _SUCCESS, no temporaries
    assert_eq!(ctx.text_file(&out, 2).count().unwrap(), 100);
    // The leftover of a killed save (no _SUCCESS) is named as such.
    let killed = dir.path().join("killed");
    std::fs::create_dir(&killed).unwrap();
    std::fs::write(killed.join("part-00000"), "1\n").unwrap();
    let err = ctx.range(0..5, 2).save_as_text_file(&killed).unwrap_err();
    assert!(err.to_string().contains("has no _SUCCESS"), "{err}");
}

/// A partition pulled element by element (what `map_partitions` closures, `zip` and `take`
/// see) against the same partition drained (what actions and shuffles use), for every kind
/// of narrow transformation and a join, one partition at a time.
#[test]
fn pulled_and_drained_partitions_agree_for_every_transformation() {
    use flintlock::Rdd;
    let ctx = ctx();
    let base = ctx.parallelize((0..300u64).collect(), 3);
    let pairs = base
        .map(|x| (x % 17, x))
        .partition_by(flintlock::Partitioner::hash(3));
    let other = base
        .filter(|x| x % 4 != 0)
        .flat_map(|x| vec![(x % 23, x as i64); (x % 3) as usize])
        .partition_by(flintlock::Partitioner::hash(3));
    let cases: Vec<(&str, Rdd<String>)> = vec![
        ("map", base.map(|x| x * 7).map(|x| x.to_string())),
        ("filter", base.filter(|x| x % 3 != 1).map(|x| x.to_string())),
        (
            "flat_map",
            base.flat_map(|x| 0..x % 5).map(|x| x.to_string()),
        ),
        (
            "by-key",
            pairs
                .map_values(|v| v + 1)
                .flat_map_values(|v| vec![v; 2])
                .reduce_by_key(|a, b| a + b)
                .map(|p| format!("{p:?}")),
        ),
        ("join", pairs.join(&other).map(|p| format!("{p:?}"))),
        (
            "outer joins",
            pairs
                .full_outer_join(&other)
                .map(|p| format!("{p:?}"))
                .union(&pairs.left_outer_join(&other).map(|p| format!("{p:?}")))
                .union(&pairs.right_outer_join(&other).map(|p| format!("{p:?}"))),
        ),
        ("cogroup", pairs.cogroup(&other).map(|p| format!("{p:?}"))),
        (
            "coalesce, cartesian, repartition, sample",
            base.coalesce(2)
                .cartesian(&base.filter(|x| x % 50 == 0))
                .map(|p| format!("{p:?}"))
                .union(&base.repartition(4).map(|x| x.to_string()))
                .union(&base.sample(true, 0.5, 7).map(|x| x.to_string())),
        ),
        (
            "zip_with_index",
            base.zip_with_index().map(|p| format!("{p:?}")),
        ),
    ];
    for (name, rdd) in cases {
        let drained = rdd.glom().collect().unwrap();
        let pulled = rdd
            .map_partitions(|it| std::iter::once(it.collect::<Vec<_>>()))
            .collect()
            .unwrap();
        // Hash tables iterate in an unspecified order: compare each partition as a multiset.
        let norm = |parts: Vec<Vec<String>>| -> Vec<Vec<String>> {
            parts
                .into_iter()
                .map(|mut p| {
                    p.sort();
                    p
                })
                .collect()
        };
        assert_eq!(norm(pulled), norm(drained), "{name}");
    }
}
