//! The by-key operations against the same computation on a `Vec`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{ctx, sorted};
use flintlock::Partitioner;
use proptest::prelude::*;

fn pairs() -> impl Strategy<Value = Vec<(u8, i32)>> {
    proptest::collection::vec((0u8..20, -100i32..100), 0..150)
}

fn group(v: &[(u8, i32)]) -> BTreeMap<u8, Vec<i32>> {
    let mut m: BTreeMap<u8, Vec<i32>> = BTreeMap::new();
    for (k, x) in v {
        m.entry(*k).or_default().push(*x);
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reduce_by_key_matches_grouped_sums(data in pairs(), n in 1usize..6) {
        let ctx = ctx();
        let got = sorted(ctx.parallelize(data.clone(), n).reduce_by_key(|a, b| a + b).collect().unwrap());
        let want: Vec<(u8, i32)> = group(&data).into_iter().map(|(k, v)| (k, v.iter().sum())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn group_by_key_matches_grouping(data in pairs(), n in 1usize..6) {
        let ctx = ctx();
        let got: Vec<(u8, Vec<i32>)> = sorted(ctx.parallelize(data.clone(), n).group_by_key().collect().unwrap())
            .into_iter().map(|(k, v)| (k, sorted(v))).collect();
        let want: Vec<(u8, Vec<i32>)> = group(&data).into_iter().map(|(k, v)| (k, sorted(v))).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn join_matches_nested_loop_join(a in pairs(), b in pairs(), n in 1usize..6, m in 1usize..6) {
        let ctx = ctx();
        let got = sorted(ctx.parallelize(a.clone(), n).join(&ctx.parallelize(b.clone(), m)).collect().unwrap());
        let mut want = Vec::new();
        for (k, v) in &a { for (k2, w) in &b { if k == k2 { want.push((*k, (*v, *w))); } } }
        prop_assert_eq!(got, sorted(want));
    }

    #[test]
    fn outer_joins_match_reference(a in pairs(), b in pairs(), n in 1usize..5) {
        let ctx = ctx();
        let ra = ctx.parallelize(a.clone(), n);
        let rb = ctx.parallelize(b.clone(), n + 1);
        let bkeys: BTreeSet<u8> = b.iter().map(|p| p.0).collect();
        let akeys: BTreeSet<u8> = a.iter().map(|p| p.0).collect();
        let mut left = Vec::new();
        for (k, v) in &a {
            if bkeys.contains(k) { for (k2, w) in &b { if k == k2 { left.push((*k, (*v, Some(*w)))); } } }
            else { left.push((*k, (*v, None))); }
        }
        prop_assert_eq!(sorted(ra.left_outer_join(&rb).collect().unwrap()), sorted(left.clone()));
        let mut right = Vec::new();
        for (k, w) in &b {
            if akeys.contains(k) { for (k2, v) in &a { if k == k2 { right.push((*k, (Some(*v), *w))); } } }
            else { right.push((*k, (None, *w))); }
        }
        prop_assert_eq!(sorted(ra.right_outer_join(&rb).collect().unwrap()), sorted(right));
        let mut full: Vec<(u8, (Option<i32>, Option<i32>))> = left.iter().map(|(k, (v, w))| (*k, (Some(*v), *w))).collect();
        for (k, w) in &b { if !akeys.contains(k) { full.push((*k, (None, Some(*w)))); } }
        prop_assert_eq!(sorted(ra.full_outer_join(&rb).collect().unwrap()), sorted(full));
    }

    #[test]
    fn sort_by_key_matches_a_stable_sort_by_key(data in pairs(), n in 1usize..6, asc in any::<bool>()) {
        let ctx = ctx();
        let got: Vec<u8> = ctx.parallelize(data.clone(), n).sort_by_key(asc).keys().collect().unwrap();
        let mut want: Vec<u8> = data.iter().map(|p| p.0).collect();
        want.sort();
        if !asc { want.reverse(); }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cogroup_matches_grouping_of_both_sides(a in pairs(), b in pairs(), n in 1usize..5) {
        let ctx = ctx();
        let got: Vec<(u8, (Vec<i32>, Vec<i32>))> = sorted(ctx.parallelize(a.clone(), n).cogroup(&ctx.parallelize(b.clone(), 2)).collect().unwrap())
            .into_iter().map(|(k, (v, w))| (k, (sorted(v), sorted(w)))).collect();
        let (ga, gb) = (group(&a), group(&b));
        let keys: BTreeSet<u8> = ga.keys().chain(gb.keys()).copied().collect();
        let want: Vec<(u8, (Vec<i32>, Vec<i32>))> = keys.into_iter().map(|k| (k, (sorted(ga.get(&k).cloned().unwrap_or_default()), sorted(gb.get(&k).cloned().unwrap_or_default())))).collect();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn fold_aggregate_and_combine_by_key_agree_with_reduce_by_key() {
    let ctx = ctx();
    let data: Vec<(u32, u64)> = (0..1000).map(|i| (i % 37, i as u64)).collect();
    let rdd = ctx.parallelize(data, 4);
    let want = sorted(rdd.reduce_by_key(|a, b| a + b).collect().unwrap());
    assert_eq!(
        sorted(rdd.fold_by_key(0, |a, b| a + b).collect().unwrap()),
        want
    );
    assert_eq!(
        sorted(
            rdd.aggregate_by_key(0u64, |a, v| a + v, |a, b| a + b)
                .collect()
                .unwrap()
        ),
        want
    );
    assert_eq!(
        sorted(
            rdd.combine_by_key(|v| v, |a, v| a + v, |a, b| a + b)
                .collect()
                .unwrap()
        ),
        want
    );
}

#[test]
fn map_values_flat_map_values_keys_values_match_vec() {
    let ctx = ctx();
    let data = vec![(1, 10), (2, 20), (3, 30)];
    let rdd = ctx.parallelize(data.clone(), 2);
    assert_eq!(
        rdd.map_values(|v| v + 1).collect().unwrap(),
        vec![(1, 11), (2, 21), (3, 31)]
    );
    assert_eq!(rdd.flat_map_values(|v| vec![v; 2]).count().unwrap(), 6);
    assert_eq!(rdd.keys().collect().unwrap(), vec![1, 2, 3]);
    assert_eq!(rdd.values().collect().unwrap(), vec![10, 20, 30]);
}

#[test]
fn count_by_key_and_lookup_match_vec() {
    let ctx = ctx();
    let rdd = ctx.parallelize(vec![("a", 1), ("b", 2), ("a", 3)], 3);
    let counts = rdd.count_by_key().unwrap();
    assert_eq!((counts[&"a"], counts[&"b"]), (2, 1));
    assert_eq!(sorted(rdd.lookup(&"a").unwrap()), vec![1, 3]);
    let partitioned = rdd.partition_by(Partitioner::hash(4));
    assert_eq!(sorted(partitioned.lookup(&"a").unwrap()), vec![1, 3]);
    assert_eq!(partitioned.lookup(&"zzz").unwrap(), Vec::<i32>::new());
}

#[test]
fn partition_by_places_every_key_in_its_partition() {
    let ctx = ctx();
    let p = Partitioner::hash(5);
    let rdd = ctx
        .parallelize((0u64..500).map(|k| (k, ())).collect(), 3)
        .partition_by(p.clone());
    let parts = rdd.glom().collect().unwrap();
    assert_eq!(parts.len(), 5);
    for (i, part) in parts.iter().enumerate() {
        for (k, _) in part {
            assert_eq!(p.partition_of(k), i);
        }
    }
}

#[test]
fn sort_by_key_produces_range_partitioned_sorted_output() {
    let ctx = ctx();
    let data: Vec<(u32, ())> = (0..10_000u32)
        .rev()
        .map(|k| (k.wrapping_mul(2_654_435_761) % 100_000, ()))
        .collect();
    let sorted_rdd = ctx.parallelize(data.clone(), 4).sort_by_key(true);
    assert!(matches!(
        sorted_rdd.partitioner(),
        Some(Partitioner::Range(_))
    ));
    let parts = sorted_rdd.glom().collect().unwrap();
    assert!(
        parts.iter().filter(|p| !p.is_empty()).count() >= 3,
        "bounds spread the keys"
    );
    let flat: Vec<u32> = parts.into_iter().flatten().map(|p| p.0).collect();
    let mut want: Vec<u32> = data.iter().map(|p| p.0).collect();
    want.sort();
    assert_eq!(flat, want);
}

#[test]
fn with_variants_use_the_given_partitioner_and_match_the_defaults() {
    let ctx = ctx();
    let p = Partitioner::hash(3);
    let a = ctx.parallelize(vec![(1u8, 2i32), (2, 3), (1, 4)], 2);
    let b = ctx.parallelize(vec![(1u8, 10i32), (5, 50)], 2);
    let folded = a.fold_by_key_with(p.clone(), 0, |x, y| x + y);
    let aggregated = a.aggregate_by_key_with(p.clone(), 0, |x, y| x + y, |x, y| x + y);
    let left = a.left_outer_join_with(&b, p.clone());
    let right = a.right_outer_join_with(&b, p.clone());
    let full = a.full_outer_join_with(&b, p.clone());
    for part in [
        folded.partitioner(),
        aggregated.partitioner(),
        left.partitioner(),
        right.partitioner(),
        full.partitioner(),
    ] {
        assert_eq!(part, Some(p.clone()));
    }
    assert_eq!(
        sorted(folded.collect().unwrap()),
        sorted(a.fold_by_key(0, |x, y| x + y).collect().unwrap())
    );
    assert_eq!(sorted(aggregated.collect().unwrap()), vec![(1, 6), (2, 3)]);
    assert_eq!(
        sorted(left.collect().unwrap()),
        sorted(a.left_outer_join(&b).collect().unwrap())
    );
    assert_eq!(
        sorted(right.collect().unwrap()),
        sorted(a.right_outer_join(&b).collect().unwrap())
    );
    assert_eq!(
        sorted(full.collect().unwrap()),
        sorted(a.full_outer_join(&b).collect().unwrap())
    );
}

/// The map-side combine table of a call site is sized as it ended last time: a site run
/// over inputs of very different sizes (large, tiny, empty, large again) still gives
/// exactly the sums of a plain model.
#[test]
fn a_combine_sized_from_its_last_run_gives_the_same_sums() {
    let ctx = ctx();
    let sizes = [200_000u64, 10, 0, 50_000, 1, 300_000];
    for (round, &n) in sizes.iter().enumerate() {
        let keys = 1 + n / (1 + round as u64);
        let pairs: Vec<(u64, u64)> = (0..n).map(|i| (i * 7919 % keys, i)).collect();
        let mut got = ctx
            .parallelize(pairs.clone(), 4)
            .reduce_by_key(|a, b| a + b)
            .collect()
            .unwrap();
        got.sort_unstable();
        let mut model = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            *model.entry(k).or_insert(0) += v;
        }
        assert_eq!(
            got,
            model.into_iter().collect::<Vec<_>>(),
            "round {round}, {n} pairs"
        );
    }
}

/// Tables sized from a call site's last run must not change what a shuffle returns, nor its
/// order: the same RDD collected again (sizes warm) gives the same sequence as its first
/// run (sizes cold), after a `flat_map` (length unknown) and after a `map` (length known).
#[test]
fn by_key_results_keep_their_order_when_tables_are_sized_from_the_last_run() {
    let ctx = ctx();
    let base = ctx.range(0..20_000, 4);
    let unknown = base.flat_map(|i| [(i * 7919 % 3001, i), (i % 17, 1)]);
    let known = base.map(|i| (i * 31 % 4099, i));
    // Partitions of very different key counts (10 to 10,000 keys): one partition's size is
    // a poor hint for another's, on the map side and on the reduce side.
    let hash = Partitioner::hash(4);
    let place = hash.clone();
    let mut quota = [10usize, 100, 1_000, 10_000];
    let keys: Vec<(u64, u64)> = (0u64..)
        .filter(|k| {
            let q = &mut quota[place.partition_of(k)];
            *q = q.saturating_sub(1);
            *q > 0
        })
        .take(11_100 - 4)
        // Every partition gets about 10,000 records: few keys, many repeats, or the reverse.
        .flat_map(|k| {
            let repeats = 10_000 / [10, 100, 1_000, 10_000][hash.partition_of(&k)];
            (0..repeats).map(move |i| (k, i))
        })
        .collect();
    let skewed = ctx
        .parallelize(keys, 4)
        .partition_by(hash.clone())
        .map(|kv| kv);
    for pairs in [unknown, known, skewed] {
        let reduced = pairs.reduce_by_key(|a, b| a + b);
        let grouped = pairs.group_by_key();
        let distinct = pairs.keys().distinct();
        let first = (
            reduced.collect().unwrap(),
            grouped.collect().unwrap(),
            distinct.collect().unwrap(),
        );
        for _ in 0..3 {
            assert_eq!(reduced.collect().unwrap(), first.0);
            assert_eq!(grouped.collect().unwrap(), first.1);
            assert_eq!(distinct.collect().unwrap(), first.2);
        }
    }
}

/// One call site for the runs below (sizes are remembered per site).
fn distinct_of(ctx: &flintlock::Context, n: u64) -> Vec<u64> {
    ctx.parallelize((0..n).map(|i| i * 1_000_003).collect(), 2)
        .distinct()
        .collect()
        .unwrap()
}

fn grouped_of(ctx: &flintlock::Context, n: u64) -> Vec<(u64, Vec<u64>)> {
    ctx.parallelize((0..n).map(|i| (i * 1_000_003 % 7919, i)).collect(), 3)
        .group_by_key_with(Partitioner::hash(2))
        .collect()
        .unwrap()
}

/// A shuffle's output order depends on the keys alone, never on the sizes an earlier run
/// left: the same RDD collected again, another RDD of the same call site over the same data,
/// and a context warmed by a much larger run all give a fresh context's sequence. (Table
/// layouts depend on their history: before the order was fixed by the keys' hashes, 35 of
/// these 380 sizes of `distinct` changed order between two collects.)
#[test]
fn a_shuffles_order_does_not_depend_on_earlier_runs_or_their_sizes() {
    let warm = ctx();
    for n in 20..400 {
        let first = distinct_of(&warm, n);
        assert_eq!(distinct_of(&warm, n), first, "{n} keys");
        assert_eq!(distinct_of(&ctx(), n), first, "{n} keys, fresh context");
    }
    let warmed = ctx();
    grouped_of(&warmed, 200_000);
    assert_eq!(grouped_of(&warmed, 300), grouped_of(&ctx(), 300));
}
