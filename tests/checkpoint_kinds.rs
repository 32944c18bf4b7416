//! Every RDD kind under reliable and local checkpointing (Spark's CheckpointSuite): the
//! dependencies are replaced, the partition count and partitioner kept, the results equal
//! before and after, the parents freed, and a reliable checkpoint reopens with its
//! partitioner.

use crate::common;

use std::fmt::Debug;
use std::sync::{Arc, Weak};

use common::ctx_with_dir;
use flintlock::{Context, Data, DependencyKind, Partitioner, Rdd, RddBase};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Reliable,
    Local,
}

/// Builds the RDD with `make` (whose intermediate RDDs only the lineage holds), checkpoints
/// it, and checks everything a checkpoint promises.
fn check_kind<T, F>(make: F)
where
    T: Data + Serialize + DeserializeOwned + PartialEq + Debug,
    F: Fn(&Context) -> Rdd<T>,
{
    for mode in [Mode::Reliable, Mode::Local] {
        let dir = common::backend::place();
        let ctx = ctx_with_dir(dir.path());
        let expected = make(&ctx).collect().unwrap();
        let rdd = make(&ctx);
        let partitions = rdd.num_partitions();
        let partitioner = rdd.partitioner();
        let parents: Vec<Weak<dyn RddBase>> = rdd
            .dependencies()
            .iter()
            .map(|d| Arc::downgrade(&d.parent()))
            .collect();
        match mode {
            Mode::Reliable => rdd.checkpoint().unwrap(),
            Mode::Local => rdd.local_checkpoint().unwrap(),
        }
        assert_eq!(
            rdd.collect().unwrap(),
            expected,
            "{mode:?}: results during the checkpointing job"
        );
        assert!(rdd.is_checkpointed(), "{mode:?}");
        let deps = rdd.dependencies();
        assert_eq!(deps.len(), 1, "{mode:?}");
        assert_eq!(deps[0].kind(), DependencyKind::OneToOne);
        let expected_kind = match mode {
            Mode::Reliable => "ReliableCheckpointRdd",
            Mode::Local => "LocalCheckpointRdd",
        };
        assert_eq!(deps[0].parent().kind(), expected_kind);
        assert_eq!(rdd.num_partitions(), partitions);
        assert_eq!(rdd.partitioner(), partitioner);
        assert_eq!(rdd.collect().unwrap(), expected, "{mode:?}: results after");
        drop(deps);
        for (i, p) in parents.iter().enumerate() {
            assert!(
                p.upgrade().is_none(),
                "{mode:?}: parent {i} still alive after the checkpoint"
            );
        }
        if let Mode::Reliable = mode {
            let reopened = ctx
                .open_checkpoint::<T>(rdd.checkpoint_path().unwrap())
                .unwrap();
            assert_eq!(reopened.collect().unwrap(), expected);
            assert_eq!(reopened.partitioner(), partitioner);
            assert_eq!(reopened.num_partitions(), partitions);
        }
    }
}

#[test]
fn parallel_collection_checkpoints() {
    check_kind(|ctx| ctx.parallelize((0..50).map(|i| format!("s{i}")).collect(), 3));
}

#[test]
fn text_file_checkpoints() {
    // The input is a local file on either backend.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    std::fs::write(
        &path,
        (0..100).map(|i| format!("line {i}\n")).collect::<String>(),
    )
    .unwrap();
    check_kind(move |ctx| ctx.text_file(&path, 3));
}

#[test]
fn map_flat_map_filter_sample_glom_map_partitions_checkpoint() {
    check_kind(|ctx| ctx.range(0..100, 4).map(|x| x * 2));
    check_kind(|ctx| ctx.range(0..30, 3).flat_map(|x| vec![x; (x % 3) as usize]));
    check_kind(|ctx| ctx.range(0..100, 4).filter(|x| x % 3 == 0));
    check_kind(|ctx| ctx.range(0..1000, 4).sample(false, 0.3, 11));
    check_kind(|ctx| ctx.range(0..10, 3).glom());
    check_kind(|ctx| {
        ctx.range(0..10, 3)
            .map_partitions(|it| std::iter::once(it.sum::<u64>()))
    });
}

#[test]
fn reduce_by_key_with_map_values_and_flat_map_values_checkpoint() {
    check_kind(|ctx| {
        ctx.range(0..100, 4)
            .map(|x| (x % 10, x))
            .reduce_by_key(|a, b| a + b)
            .map_values(|v| v + 1)
    });
    check_kind(|ctx| {
        ctx.range(0..20, 2)
            .map(|x| (x % 4, x))
            .reduce_by_key(|a, b| a + b)
            .flat_map_values(|v| vec![v, v + 1])
    });
}

#[test]
fn shuffled_rdd_checkpoints_with_its_partitioner() {
    check_kind(|ctx| {
        ctx.range(0..100, 4)
            .map(|x| (x, x * x))
            .partition_by(Partitioner::hash(3))
    });
    check_kind(|ctx| ctx.range(0..100, 4).map(|x| (x % 17, x)).sort_by_key(true));
}

#[test]
fn union_cartesian_coalesce_cogroup_zip_checkpoint() {
    check_kind(|ctx| ctx.range(0..10, 2).union(&ctx.range(20..30, 3)));
    check_kind(|ctx| ctx.range(0..5, 2).cartesian(&ctx.range(0..3, 2)));
    check_kind(|ctx| ctx.range(0..50, 5).coalesce(2));
    check_kind(|ctx| {
        let a = ctx.range(0..20, 2).map(|x| (x % 5, x));
        let b = ctx.range(0..10, 3).map(|x| (x % 4, x * 10));
        a.cogroup(&b).map_values(|(mut v, mut w)| {
            v.sort();
            w.sort();
            (v, w)
        })
    });
    check_kind(|ctx| {
        let a = ctx.range(0..20, 4);
        a.zip(&a.map(|x| x * 2))
    });
}

#[test]
fn the_spark_api_kinds_checkpoint() {
    // PartitionerAwareUnionRdd keeps its partitioner through the checkpoint.
    check_kind(|ctx| {
        let a = ctx
            .range(0..40, 3)
            .map(|x| (x % 7, x))
            .reduce_by_key(|a, b| a + b);
        let b = ctx
            .range(0..30, 2)
            .map(|x| (x % 5, x))
            .reduce_by_key(|a, b| a + b);
        ctx.union(&[a, b.partition_by(Partitioner::hash(3))])
    });
    check_kind(|ctx| ctx.range_step(100, -3, -7, 3).unwrap());
    #[cfg(unix)]
    check_kind(|ctx| ctx.range(0..40, 3).pipe(["cat"]));
    check_kind(|ctx| ctx.range(0..60, 3).subtract(&ctx.range(10..20, 2)));
    check_kind(|ctx| ctx.range(0..60, 3).intersection(&ctx.range(10..80, 2)));
    check_kind(|ctx| {
        let a = ctx.range(0..30, 3).map(|x| (x % 9, x));
        a.subtract_by_key(&ctx.range(0..4, 1).map(|x| (x, ())))
    });
    check_kind(|ctx| {
        let a = ctx.range(0..20, 2).map(|x| (x % 5, x));
        let b = ctx.range(0..10, 3).map(|x| (x % 4, x * 10));
        let c = ctx.range(0..6, 1).map(|x| (x, format!("c{x}")));
        let d = ctx.range(0..3, 1).map(|x| (x + 2, x as f64));
        a.cogroup4(&b, &c, &d)
            .map_values(|(mut v, mut w, mut x, d)| {
                v.sort();
                w.sort();
                x.sort();
                (v, w, x, d)
            })
    });
    check_kind(|ctx| {
        ctx.range(0..30, 3).group_by(|x| x % 4).map_values(|mut v| {
            v.sort();
            v
        })
    });
    check_kind(|ctx| ctx.range(0..50, 3).sort_by(|x| (x * 37) % 50, false));
    check_kind(|ctx| ctx.range(0..50, 2).repartition(5));
    check_kind(|ctx| ctx.range(0..50, 5).coalesce_with(3, true));
    check_kind(|ctx| ctx.range(0..100, 4).random_split(&[1.0, 2.0], 5).remove(1));
}

#[test]
fn a_checkpointed_hash_partitioned_rdd_joins_without_a_shuffle_here_and_after_reopening() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let p = Partitioner::hash(4);
    let ranks = ctx
        .range(0..100, 3)
        .map(|x| (x, x as f64))
        .reduce_by_key_with(p.clone(), |a, b| a + b);
    ranks.checkpoint().unwrap();
    ranks.count().unwrap();
    let links = ctx
        .range(0..100, 2)
        .map(|x| (x, x + 1))
        .partition_by(p.clone());
    let joined = links.join(&ranks);
    let kinds: Vec<_> = joined.dependencies().iter().map(|d| d.kind()).collect();
    assert_eq!(
        kinds,
        vec![DependencyKind::OneToOne, DependencyKind::OneToOne]
    );
    assert_eq!(joined.count().unwrap(), 100);
    let reopened = ctx
        .open_checkpoint::<(u64, f64)>(ranks.checkpoint_path().unwrap())
        .unwrap();
    assert_eq!(reopened.partitioner(), Some(p));
    let kinds: Vec<_> = links
        .join(&reopened)
        .dependencies()
        .iter()
        .map(|d| d.kind())
        .collect();
    assert_eq!(
        kinds,
        vec![DependencyKind::OneToOne, DependencyKind::OneToOne]
    );
}

#[test]
fn compressed_checkpoints_round_trip() {
    let dir = common::backend::place();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_compression(flintlock::Compression::Lz4)
        .build()
        .unwrap();
    let rdd = ctx
        .range(0..10_000, 3)
        .map(|x| (x % 10, format!("value {x}")));
    rdd.checkpoint().unwrap();
    let expected = rdd.collect().unwrap();
    let reopened = ctx
        .open_checkpoint::<(u64, String)>(rdd.checkpoint_path().unwrap())
        .unwrap();
    assert_eq!(reopened.collect().unwrap(), expected);
}
