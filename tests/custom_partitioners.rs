//! Custom partitioners (issue 16): a user's `Partition` impl places keys, equal schemes skip
//! the shuffle, a checkpoint records the scheme by name and reopens only where it is
//! registered, and a changed or misbehaving implementation is caught, never a wrong join.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};

use flintlock::{DependencyKind, Error, Partition, Partitioner};
use proptest::prelude::*;

/// Keys modulo `m`, in `m` partitions; `m` is the parameter.
struct Modulo {
    m: u64,
}

impl Partition<u64> for Modulo {
    fn name(&self) -> &str {
        "modulo"
    }
    fn num_partitions(&self) -> usize {
        self.m as usize
    }
    fn partition(&self, key: &u64) -> usize {
        (key % self.m) as usize
    }
    fn params(&self) -> Vec<u8> {
        self.m.to_le_bytes().to_vec()
    }
}

/// "Another build": the same identity, but placement shifted by `OFFSET`.
static OFFSET: AtomicUsize = AtomicUsize::new(0);
struct Shifted;
impl Partition<u64> for Shifted {
    fn name(&self) -> &str {
        "shifted"
    }
    fn num_partitions(&self) -> usize {
        4
    }
    fn partition(&self, key: &u64) -> usize {
        (*key as usize + OFFSET.load(Ordering::SeqCst)) % 4
    }
    fn params(&self) -> Vec<u8> {
        Vec::new()
    }
}

#[test]
fn keys_land_where_the_user_says_and_equal_schemes_do_not_shuffle() {
    let ctx = common::ctx();
    let pairs = ctx.parallelize((0..100u64).map(|k| (k, 1u32)).collect(), 3);
    let placed = pairs.partition_by(Partitioner::custom(Modulo { m: 5 }));
    for (p, part) in placed.glom().collect().unwrap().into_iter().enumerate() {
        assert!(part.iter().all(|(k, _)| k % 5 == p as u64), "partition {p}");
    }
    assert_eq!(
        placed.partitioner(),
        Some(Partitioner::custom(Modulo { m: 5 }))
    );
    assert_ne!(
        Partitioner::custom(Modulo { m: 5 }),
        Partitioner::custom(Modulo { m: 6 })
    );
    assert_ne!(Partitioner::custom(Modulo { m: 4 }), Partitioner::hash(4));
    let summed = placed.reduce_by_key(|a, b| a + b);
    assert_eq!(summed.dependencies()[0].kind(), DependencyKind::OneToOne);
    let other = ctx
        .parallelize((0..100u64).map(|k| (k, k)).collect(), 2)
        .partition_by(Partitioner::custom(Modulo { m: 5 }));
    let joined = summed.join(&other);
    assert!(joined
        .dependencies()
        .iter()
        .all(|d| d.kind() != DependencyKind::Shuffle));
    assert_eq!(joined.count().unwrap(), 100);
}

/// Returns a partition past its count.
struct OutOfRange;
impl Partition<u64> for OutOfRange {
    fn name(&self) -> &str {
        "broken"
    }
    fn num_partitions(&self) -> usize {
        2
    }
    fn partition(&self, key: &u64) -> usize {
        *key as usize
    }
    fn params(&self) -> Vec<u8> {
        Vec::new()
    }
}

#[test]
fn a_partition_index_out_of_range_fails_the_task_naming_the_partitioner() {
    let ctx = common::ctx();
    let err = ctx
        .parallelize((0..10u64).map(|k| (k, ())).collect(), 2)
        .partition_by(Partitioner::custom(OutOfRange))
        .count()
        .unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("\"broken\" returned partition"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_reopens_only_where_the_scheme_is_registered() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..500u64).map(|k| (k, k * 2)).collect(), 4)
            .partition_by(Partitioner::custom(Modulo { m: 7 }));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    // Another build without the scheme: refused, naming it.
    let bare = common::ctx();
    let err = bare.open_checkpoint::<(u64, u64)>(&path).unwrap_err();
    match &err {
        Error::UnknownPartitioner {
            name, partitions, ..
        } => {
            assert_eq!(name, "modulo");
            assert_eq!(*partitions, 7);
        }
        other => panic!("expected UnknownPartitioner, got {other}"),
    }
    // Registered with other parameters: still another identity.
    bare.register_partitioner(Modulo { m: 8 });
    assert!(matches!(
        bare.open_checkpoint::<(u64, u64)>(&path),
        Err(Error::UnknownPartitioner { .. })
    ));
    // Registered: reopened, verified, relied on.
    bare.register_partitioner(Modulo { m: 7 });
    let back = bare.open_checkpoint::<(u64, u64)>(&path).unwrap();
    assert_eq!(
        back.partitioner(),
        Some(Partitioner::custom(Modulo { m: 7 }))
    );
    let other = bare
        .parallelize((0..500u64).map(|k| (k, 1u8)).collect(), 3)
        .partition_by(Partitioner::custom(Modulo { m: 7 }));
    let joined = back.join(&other);
    assert!(joined
        .dependencies()
        .iter()
        .all(|d| d.kind() != DependencyKind::Shuffle));
    assert_eq!(joined.count().unwrap(), 500);
}

#[test]
fn a_registered_scheme_that_places_differently_is_dropped_and_the_join_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..400u64).map(|k| (k, k)).collect(), 4)
            .partition_by(Partitioner::custom(Shifted));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    OFFSET.store(1, Ordering::SeqCst); // the "later build" changed the code, not the name
    let ctx = common::ctx();
    ctx.register_partitioner(Shifted);
    let back = ctx.open_checkpoint::<(u64, u64)>(&path).unwrap();
    let other = ctx
        .parallelize((0..400u64).map(|k| (k, 1u8)).collect(), 3)
        .partition_by(Partitioner::custom(Shifted));
    assert_eq!(back.join(&other).count().unwrap(), 400, "no row lost");
    assert_eq!(back.partitioner(), None, "the placement check dropped it");
    OFFSET.store(0, Ordering::SeqCst);
}

/// Shares `Modulo`'s name and parameters but places keys elsewhere.
struct Impostor;
impl Partition<u64> for Impostor {
    fn name(&self) -> &str {
        "modulo"
    }
    fn num_partitions(&self) -> usize {
        5
    }
    fn partition(&self, key: &u64) -> usize {
        ((key / 5) % 5) as usize
    }
    fn params(&self) -> Vec<u8> {
        5u64.to_le_bytes().to_vec()
    }
}

#[test]
fn two_types_sharing_a_name_are_not_equal_and_their_join_shuffles() {
    let ctx = common::ctx();
    assert_ne!(
        Partitioner::custom(Modulo { m: 5 }),
        Partitioner::custom(Impostor)
    );
    let a = ctx
        .parallelize((0..200u64).map(|k| (k, k)).collect(), 3)
        .partition_by(Partitioner::custom(Modulo { m: 5 }));
    let b = ctx
        .parallelize((0..200u64).map(|k| (k, 1u8)).collect(), 3)
        .partition_by(Partitioner::custom(Impostor));
    assert_eq!(a.join(&b).count().unwrap(), 200);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Partitioning by a custom scheme and reducing gives what a `HashMap` model gives.
    #[test]
    fn reduce_by_key_under_a_custom_partitioner_matches_a_model(
        data in prop::collection::vec((0u64..50, 0u64..1000), 0..300),
        m in 1u64..9,
        parts in 1usize..5,
    ) {
        let ctx = common::ctx();
        let mut got = ctx
            .parallelize(data.clone(), parts)
            .reduce_by_key_with(Partitioner::custom(Modulo { m }), |a, b| a + b)
            .collect()
            .unwrap();
        got.sort();
        let mut model = std::collections::BTreeMap::new();
        for (k, v) in data {
            *model.entry(k).or_insert(0) += v;
        }
        prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn the_refusal_names_what_is_registered_under_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..50u64).map(|k| (k, k)).collect(), 2)
            .partition_by(Partitioner::custom(Modulo { m: 3 }));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    let ctx = common::ctx();
    ctx.register_partitioner(Modulo { m: 4 });
    let err = ctx.open_checkpoint::<(u64, u64)>(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("registered under that name with other settings"),
        "{text}"
    );
    assert!(text.contains("4 partitions"), "{text}");
}

#[test]
fn an_object_file_placed_by_an_unknown_scheme_reads_without_its_partitioner() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("placed");
    let data: Vec<(u64, u64)> = (0..60u64).map(|k| (k, k * k)).collect();
    common::ctx()
        .parallelize(data.clone(), 2)
        .partition_by(Partitioner::custom(Modulo { m: 3 }))
        .save_as_object_file(&out)
        .unwrap();
    let ctx = common::ctx();
    let events = common::Recorder::attach(&ctx);
    let back = ctx.object_file::<(u64, u64)>(&out).unwrap();
    assert_eq!(back.partitioner(), None);
    let mut got = back.collect().unwrap();
    got.sort();
    assert_eq!(got, data);
    let dropped: Vec<String> = events.take_matching(|e| match e {
        flintlock::Event::PartitionerDropped { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0].contains("modulo"), "{}", dropped[0]);
}
