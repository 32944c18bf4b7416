//! `subtract`, `intersection`, `subtract_by_key`, `cogroup3`, `cogroup4`, `group_by`,
//! `sort_by`, `union` (partitioner-aware or not), `Context::union` and `collect_as_map`
//! give what the same computation on a `Vec` gives, on random inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flintlock::{Context, DependencyKind, Partitioner};
use proptest::prelude::*;

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn small_vec() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..20, 0..60)
}

fn pairs() -> impl Strategy<Value = Vec<(u8, u16)>> {
    prop::collection::vec((0u8..12, any::<u16>()), 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn subtract_and_intersection(a in small_vec(), b in small_vec(), pa in 1usize..5, pb in 1usize..5) {
        let ctx = ctx();
        let (ra, rb) = (ctx.parallelize(a.clone(), pa), ctx.parallelize(b.clone(), pb));
        let bset: BTreeSet<u8> = b.iter().copied().collect();
        let aset: BTreeSet<u8> = a.iter().copied().collect();
        let want: Vec<u8> = a.iter().copied().filter(|x| !bset.contains(x)).collect();
        let got = ra.subtract(&rb);
        prop_assert_eq!(got.num_partitions(), pa);
        prop_assert_eq!(sorted(got.collect().unwrap()), sorted(want));
        let want: Vec<u8> = aset.intersection(&bset).copied().collect();
        prop_assert_eq!(sorted(ra.intersection(&rb).collect().unwrap()), want);
    }

    #[test]
    fn subtract_by_key_keeps_the_partitioner(a in pairs(), b in pairs(), p in 1usize..5) {
        let ctx = ctx();
        let ra = ctx.parallelize(a.clone(), 3).partition_by(Partitioner::hash(p));
        let rb = ctx.parallelize(b.clone(), 2);
        let keys: BTreeSet<u8> = b.iter().map(|x| x.0).collect();
        let want: Vec<(u8, u16)> = a.iter().copied().filter(|x| !keys.contains(&x.0)).collect();
        let got = ra.subtract_by_key(&rb);
        prop_assert_eq!(got.partitioner(), Some(Partitioner::hash(p)));
        prop_assert_eq!(sorted(got.collect().unwrap()), sorted(want));
    }

    #[test]
    fn cogroup3_and_cogroup4(a in pairs(), b in pairs(), c in pairs(), d in pairs()) {
        let ctx = ctx();
        let r = |v: &Vec<(u8, u16)>, p| ctx.parallelize(v.clone(), p);
        type Groups = BTreeMap<u8, [Vec<u16>; 4]>;
        let mut want: Groups = BTreeMap::new();
        for (i, side) in [&a, &b, &c, &d].iter().enumerate() {
            for (k, v) in side.iter() {
                want.entry(*k).or_default()[i].push(*v);
            }
        }
        for g in want.values_mut() {
            for side in g.iter_mut() {
                side.sort();
            }
        }
        let got: Groups = r(&a, 2)
            .cogroup4(&r(&b, 3), &r(&c, 1), &r(&d, 4))
            .collect()
            .unwrap()
            .into_iter()
            .map(|(k, (v, w, x, y))| (k, [sorted(v), sorted(w), sorted(x), sorted(y)]))
            .collect();
        prop_assert_eq!(&got, &want);
        let got3: BTreeMap<u8, [Vec<u16>; 3]> = r(&a, 2)
            .cogroup3(&r(&b, 3), &r(&c, 1))
            .collect()
            .unwrap()
            .into_iter()
            .map(|(k, (v, w, x))| (k, [sorted(v), sorted(w), sorted(x)]))
            .collect();
        let want3: BTreeMap<u8, [Vec<u16>; 3]> = want
            .into_iter()
            .filter(|(_, g)| !(g[0].is_empty() && g[1].is_empty() && g[2].is_empty()))
            .map(|(k, [v, w, x, _])| (k, [v, w, x]))
            .collect();
        prop_assert_eq!(got3, want3);
    }

    #[test]
    fn group_by_and_sort_by(a in small_vec(), p in 1usize..5, asc in any::<bool>()) {
        let ctx = ctx();
        let rdd = ctx.parallelize(a.clone(), p);
        let mut want: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        for x in &a {
            want.entry(x % 3).or_default().push(*x);
        }
        let got: BTreeMap<u8, Vec<u8>> = rdd
            .group_by(|x| x % 3)
            .collect()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, sorted(v)))
            .collect();
        let want: BTreeMap<u8, Vec<u8>> = want.into_iter().map(|(k, v)| (k, sorted(v))).collect();
        prop_assert_eq!(got, want);
        // sort_by a key: the keys come out in order (ties in any order).
        let keys: Vec<u8> = rdd.sort_by(|x| x % 7, asc).collect().unwrap().iter().map(|x| x % 7).collect();
        let mut want_keys: Vec<u8> = a.iter().map(|x| x % 7).collect();
        want_keys.sort();
        if !asc {
            want_keys.reverse();
        }
        prop_assert_eq!(keys, want_keys);
    }

    #[test]
    fn unions_and_collect_as_map(parts in prop::collection::vec(pairs(), 0..4), p in 1usize..4) {
        let ctx = ctx();
        let rdds: Vec<_> = parts.iter().map(|v| ctx.parallelize(v.clone(), 2)).collect();
        let all: Vec<(u8, u16)> = parts.iter().flatten().copied().collect();
        prop_assert_eq!(ctx.union(&rdds).collect().unwrap(), all.clone());
        // Partitioned alike: partition-aware, partitioner kept, no shuffle after.
        let hashed: Vec<_> = rdds.iter().map(|r| r.partition_by(Partitioner::hash(p))).collect();
        let u = ctx.union(&hashed);
        if !hashed.is_empty() {
            prop_assert_eq!(u.partitioner(), Some(Partitioner::hash(p)));
            prop_assert_eq!(u.num_partitions(), p);
            let reduced = u.reduce_by_key(|a, b| a.wrapping_add(b));
            prop_assert!(reduced.dependencies().iter().all(|d| d.kind() == DependencyKind::OneToOne));
        }
        prop_assert_eq!(sorted(u.collect().unwrap()), sorted(all.clone()));
        // collect_as_map: the last value of each key in RDD order.
        let rdd = ctx.union(&rdds);
        let mut want: HashMap<u8, u16> = HashMap::new();
        for (k, v) in &all {
            want.insert(*k, *v);
        }
        prop_assert_eq!(rdd.collect_as_map().unwrap(), want);
    }
}

#[test]
fn union_of_differently_partitioned_rdds_concatenates() {
    let ctx = ctx();
    let a = ctx
        .parallelize(vec![(1, 1), (2, 2)], 2)
        .partition_by(Partitioner::hash(2));
    let b = ctx
        .parallelize(vec![(1, 10)], 2)
        .partition_by(Partitioner::hash(3));
    let u = a.union(&b);
    assert_eq!(u.num_partitions(), 5);
    assert_eq!(u.partitioner(), None);
    assert!(u
        .dependencies()
        .iter()
        .all(|d| d.kind() == DependencyKind::Range));
    assert_eq!(ctx.union::<u8>(&[]).count().unwrap(), 0);
}
