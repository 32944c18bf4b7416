//! The dependency kinds each transformation creates, and the rule that an equal
//! partitioner means no shuffle.

use crate::common;

use common::ctx;
use flintlock::{DependencyKind, Partitioner};

fn kinds<T: flintlock::Data>(rdd: &flintlock::Rdd<T>) -> Vec<DependencyKind> {
    rdd.dependencies().iter().map(|d| d.kind()).collect()
}

#[test]
fn narrow_transformations_have_one_to_one_dependencies() {
    let ctx = ctx();
    let base = ctx.parallelize(vec![(1, 2)], 2);
    assert!(kinds(&base).is_empty());
    assert_eq!(kinds(&base.map(|x| x)), vec![DependencyKind::OneToOne]);
    assert_eq!(
        kinds(&base.filter(|_| true)),
        vec![DependencyKind::OneToOne]
    );
    assert_eq!(
        kinds(&base.map_values(|v| v)),
        vec![DependencyKind::OneToOne]
    );
    assert_eq!(
        kinds(&base.zip(&base)),
        vec![DependencyKind::OneToOne, DependencyKind::OneToOne]
    );
    assert_eq!(base.map(|x| x).dependencies()[0].parent_id(), base.id());
}

#[test]
fn union_has_one_range_dependency_per_parent() {
    let ctx = ctx();
    let a = ctx.range(0..4, 2);
    let b = ctx.range(0..4, 3);
    let u = a.union(&b);
    assert_eq!(
        kinds(&u),
        vec![DependencyKind::Range, DependencyKind::Range]
    );
    let deps = u.dependencies();
    assert_eq!(deps[1].parent_partitions(3), Some(vec![1]));
    assert_eq!(deps[0].parent_partitions(3), Some(vec![]));
}

#[test]
fn coalesce_and_cartesian_have_narrow_dependencies() {
    let ctx = ctx();
    let a = ctx.range(0..8, 4);
    let c = a.coalesce(2);
    assert_eq!(kinds(&c), vec![DependencyKind::Narrow]);
    assert_eq!(c.dependencies()[0].parent_partitions(1), Some(vec![2, 3]));
    let x = a.cartesian(&ctx.range(0..2, 2));
    assert_eq!(
        kinds(&x),
        vec![DependencyKind::Narrow, DependencyKind::Narrow]
    );
    assert_eq!(x.dependencies()[0].parent_partitions(5), Some(vec![2]));
    assert_eq!(x.dependencies()[1].parent_partitions(5), Some(vec![1]));
}

#[test]
fn by_key_operations_shuffle_unpartitioned_parents() {
    let ctx = ctx();
    let pairs = ctx.parallelize(vec![(1, 2)], 2);
    assert_eq!(
        kinds(&pairs.reduce_by_key(|a, b| a + b)),
        vec![DependencyKind::Shuffle]
    );
    assert_eq!(kinds(&pairs.group_by_key()), vec![DependencyKind::Shuffle]);
    assert_eq!(
        kinds(&pairs.join(&pairs)),
        vec![DependencyKind::Shuffle, DependencyKind::Shuffle]
    );
    assert!(pairs.reduce_by_key(|a, b| a + b).dependencies()[0].is_shuffle());
}

#[test]
fn an_equal_partitioner_means_no_shuffle() {
    let ctx = ctx();
    let p = Partitioner::hash(3);
    let partitioned = ctx
        .parallelize(vec![(1, 2), (2, 3)], 2)
        .partition_by(p.clone());
    // reduce_by_key on a parent partitioned the same way combines in place.
    let reduced = partitioned.reduce_by_key(|a, b| a + b);
    assert_eq!(kinds(&reduced), vec![DependencyKind::OneToOne]);
    assert_eq!(reduced.partitioner(), Some(p.clone()));
    // map_values keeps the partitioner, so the join reads both sides in place.
    let values = partitioned.map_values(|v| v * 10);
    let joined = partitioned.join(&values);
    assert_eq!(
        kinds(&joined),
        vec![DependencyKind::OneToOne, DependencyKind::OneToOne]
    );
    // A different partition count is a different partitioner: shuffle again.
    let other = partitioned.reduce_by_key_with(Partitioner::hash(4), |a, b| a + b);
    assert_eq!(kinds(&other), vec![DependencyKind::Shuffle]);
    // partition_by with the same partitioner is the RDD itself.
    assert_eq!(partitioned.partition_by(p).id(), partitioned.id());
    let mut got = joined.collect().unwrap();
    got.sort();
    assert_eq!(got, vec![(1, (2, 20)), (2, (3, 30))]);
}

#[test]
fn join_with_one_copartitioned_side_shuffles_only_the_other() {
    let ctx = ctx();
    let p = Partitioner::hash(2);
    let left = ctx.parallelize(vec![(1, 'a')], 2).partition_by(p);
    let right = ctx.parallelize(vec![(1, 'b')], 3);
    assert_eq!(
        kinds(&left.join(&right)),
        vec![DependencyKind::OneToOne, DependencyKind::Shuffle]
    );
}

#[test]
fn map_drops_the_partitioner_and_filter_keeps_it() {
    let ctx = ctx();
    let p = ctx
        .parallelize(vec![(1, 2)], 2)
        .partition_by(Partitioner::hash(2));
    assert_eq!(p.map(|x| x).partitioner(), None);
    assert_eq!(p.filter(|_| true).partitioner(), p.partitioner());
}

#[test]
fn map_partitions_drops_the_partitioner_and_the_preserving_variant_keeps_it() {
    let ctx = ctx();
    let p = ctx
        .parallelize((0..40).map(|i| (i % 7, i)).collect(), 3)
        .group_by_key();
    assert_eq!(p.map_partitions(|it| it).partitioner(), None);
    let packed = p.map_partitions_preserving_partitioning(|it| it.map(|(k, v)| (k, v.len())));
    assert_eq!(packed.partitioner(), p.partitioner());
    // So a join with the source reads both sides in place, and finds every key.
    let joined = packed.join(&p);
    assert_eq!(
        kinds(&joined),
        vec![DependencyKind::OneToOne, DependencyKind::OneToOne]
    );
    let mut sizes: Vec<(i32, usize)> = joined
        .map(|(k, (n, v))| (k, n + v.len()))
        .collect()
        .unwrap();
    sizes.sort();
    let want: Vec<(i32, usize)> = (0..7).map(|k| (k, if k < 5 { 12 } else { 10 })).collect();
    assert_eq!(sizes, want);
}
