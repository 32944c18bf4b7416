//! A partitioner read back from a manifest is verified before it is relied on (DESIGN §4,
//! issue 9 items 6 and 9).
//!
//! Hash placement depends on the key type's `Hash` impl and the hash function, which may
//! differ in the build that reopens a checkpoint; a range partitioner keeps its bounds only
//! as bytes. Either way: never a wrong join, never a panic.

mod common;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use flintlock::{Error, Event, Partitioner};
use serde::{Deserialize, Serialize};

/// Stands for "another build": the salt changes how this key hashes.
static SALT: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct SaltedKey(u64);

impl Hash for SaltedKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.0 ^ SALT.load(Ordering::SeqCst)).hash(h);
    }
}

#[test]
fn a_changed_hash_placement_drops_the_partitioner_and_the_join_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let n = 1000u64;
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..n).map(|k| (SaltedKey(k), k * 10)).collect(), 4)
            .partition_by(Partitioner::hash(8));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    SALT.store(0x5A17_5A17, Ordering::SeqCst); // the "later build"
    let ctx = common::ctx();
    let events = common::Recorder::attach(&ctx);
    let reopened = ctx.open_checkpoint::<(SaltedKey, u64)>(&path).unwrap();
    assert_eq!(reopened.partitioner(), Some(Partitioner::hash(8)));
    let other = ctx
        .parallelize((0..n).map(|k| (SaltedKey(k), k)).collect(), 3)
        .partition_by(Partitioner::hash(8));
    let joined = reopened.join(&other);
    assert_eq!(joined.count().unwrap(), n, "no row lost to a narrow join");
    let dropped: Vec<String> = events
        .take()
        .into_iter()
        .filter_map(|e| match e {
            Event::PartitionerDropped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), 1, "one event says why: {dropped:?}");
    assert!(dropped[0].contains("placed in partition"), "{}", dropped[0]);
    assert_eq!(reopened.partitioner(), None);
    // lookup scans every partition instead of asking the untrusted partitioner.
    assert_eq!(reopened.lookup(&SaltedKey(123)).unwrap(), vec![1230]);
    // A filtered child shares the verdict.
    assert_eq!(reopened.filter(|_| true).partitioner(), None);
    assert_eq!(reopened.reduce_by_key(|a, b| a + b).count().unwrap(), n);
    SALT.store(0, Ordering::SeqCst);
}

#[test]
fn an_unchanged_placement_is_verified_once_and_joins_without_a_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..500u64).map(|k| (k, k)).collect(), 3)
            .partition_by(Partitioner::hash(4));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    let ctx = common::ctx();
    let events = common::Recorder::attach(&ctx);
    let reopened = ctx.open_checkpoint::<(u64, u64)>(&path).unwrap();
    let other = ctx
        .parallelize((0..500u64).map(|k| (k, 1u8)).collect(), 2)
        .partition_by(Partitioner::hash(4))
        .cache();
    other.count().unwrap();
    events.take();
    let joined = reopened.join(&other);
    assert!(
        joined.dependencies().iter().all(|d| !d.is_shuffle()),
        "both sides are partitioned alike: no shuffle"
    );
    assert_eq!(joined.count().unwrap(), 500);
    assert_eq!(reopened.partitioner(), Some(Partitioner::hash(4)));
    // map_values keeps the verified partitioner.
    assert_eq!(
        reopened.map_values(|v| v + 1).partitioner(),
        Some(Partitioner::hash(4))
    );
    assert!(!events
        .take()
        .iter()
        .any(|e| matches!(e, Event::PartitionerDropped { .. })));
    assert_eq!(reopened.lookup(&42).unwrap(), vec![42]);
}

fn sorted_checkpoint(dir: &std::path::Path) -> std::path::PathBuf {
    let ctx = common::ctx_with_dir(dir);
    let rdd = ctx
        .parallelize((0..200u32).rev().map(|k| (k, k * 2)).collect(), 4)
        .sort_by_key(true);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.checkpoint_path().unwrap()
}

#[test]
fn a_reopened_range_partitioner_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = sorted_checkpoint(dir.path());
    let ctx = common::ctx();
    let reopened = ctx.open_checkpoint::<(u32, u32)>(&path).unwrap();
    assert!(matches!(
        reopened.partitioner(),
        Some(Partitioner::Range(_))
    ));
    // Order is kept.
    assert_eq!(
        reopened.keys().collect().unwrap(),
        (0..200u32).collect::<Vec<_>>()
    );
    assert_eq!(reopened.lookup(&17).unwrap(), vec![34]);
    let other = ctx.parallelize((0..200u32).map(|k| (k, ())).collect(), 3);
    assert_eq!(reopened.join(&other).count().unwrap(), 200);
    assert_eq!(other.join(&reopened).count().unwrap(), 200);
    assert_eq!(reopened.cogroup(&other).count().unwrap(), 200);
    assert_eq!(reopened.reduce_by_key(|a, b| a + b).count().unwrap(), 200);
    // Partitioning new data by bounds it cannot decode is an error of the action.
    let p = reopened.partitioner().unwrap();
    let err = other.partition_by(p.clone()).count().unwrap_err();
    assert!(
        err.to_string()
            .contains("rebuild it with Partitioner::range"),
        "{err}"
    );
    assert!(p.try_partition_of(&3u32).is_err());
}

#[test]
fn range_partitioners_whose_bounds_cannot_be_encoded_are_equal_only_to_themselves() {
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct NoEncode(u8);
    impl Serialize for NoEncode {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no"))
        }
    }
    let a = Partitioner::range(vec![NoEncode(1)], true);
    let b = Partitioner::range(vec![NoEncode(2)], true);
    assert_ne!(a, b);
    assert_eq!(a, a.clone());
    assert_eq!(a.try_partition_of(&NoEncode(0)).unwrap(), 0);
    assert_eq!(b.try_partition_of(&NoEncode(5)).unwrap(), 1);
}

#[test]
fn a_range_partitioner_used_with_another_key_type_is_an_error_not_a_panic() {
    let p = Partitioner::range(vec![10u32], true);
    let err = p.try_partition_of(&"ten").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let ctx = common::ctx();
    let err = ctx
        .parallelize(vec![("a", 1)], 1)
        .partition_by(p)
        .collect()
        .unwrap_err();
    assert!(err.to_string().contains("used with keys"), "{err}");
}
