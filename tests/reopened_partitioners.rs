//! A partitioner read back from a manifest is verified before it is relied on (DESIGN §4,
//! issue 9 items 6 and 9).
//!
//! Hash placement depends on the key type's `Hash` impl and the hash function, which may
//! differ in the build that reopens a checkpoint; a range partitioner keeps its bounds only
//! as bytes. Either way: never a wrong join, never a panic.

use crate::common;

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
    let dir = common::backend::place();
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
    let dropped: Vec<String> = events.take_matching(|e| match e {
        Event::PartitionerDropped { reason, .. } => Some(reason),
        _ => None,
    });
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
    let dir = common::backend::place();
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
    let dir = common::backend::place();
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

/// "Another build" where only some keys hash differently.
static FLIP_SOME: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct PartlyFlipped(u64);

impl Hash for PartlyFlipped {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if FLIP_SOME.load(Ordering::SeqCst) == 1 && self.0 >= 1000 {
            self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15).hash(h)
        } else {
            self.0.hash(h)
        }
    }
}

#[test]
fn a_placement_changed_for_some_keys_only_is_caught_by_checking_every_key() {
    // Each part starts with keys whose placement did not change: a sample of the first keys
    // would pass. Every key is checked.
    let dir = common::backend::place();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let data: Vec<(PartlyFlipped, u64)> = (0..2000u64).map(|i| (PartlyFlipped(i), i)).collect();
        let part = ctx.parallelize(data, 1).partition_by(Partitioner::hash(4));
        part.checkpoint().unwrap();
        part.count().unwrap();
        part.checkpoint_path().unwrap()
    };
    FLIP_SOME.store(1, Ordering::SeqCst);
    let ctx = common::ctx();
    let reopened = ctx.open_checkpoint::<(PartlyFlipped, u64)>(&path).unwrap();
    let other = ctx
        .parallelize(
            (1000..2000u64)
                .map(|i| (PartlyFlipped(i), i * 10))
                .collect(),
            3,
        )
        .partition_by(Partitioner::hash(4));
    assert_eq!(reopened.join(&other).count().unwrap(), 1000);
    assert_eq!(reopened.cogroup(&other).count().unwrap(), 2000);
    assert_eq!(reopened.lookup(&PartlyFlipped(1500)).unwrap(), vec![1500]);
    assert_eq!(reopened.partitioner(), None);
}

/// A key whose `Hash` panics for one value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HashBomb(u64);

impl Hash for HashBomb {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if self.0 == 13 {
            panic!("hash of 13");
        }
        self.0.hash(h)
    }
}

#[test]
fn a_panicking_hash_on_the_driver_is_an_error_not_a_panic() {
    let ctx = common::ctx();
    let p = ctx
        .parallelize((0..10u64).map(|i| (HashBomb(i), i)).collect(), 2)
        .partition_by(Partitioner::hash(3));
    let err = p.lookup(&HashBomb(13)).unwrap_err();
    assert!(err.to_string().contains("hash of 13"), "{err}");
    assert_eq!(p.lookup(&HashBomb(3)).unwrap(), vec![3]);
}

/// "Another build" whose `Hash` panics for one key.
static BOOM: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Boomy(u64);

impl Hash for Boomy {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if BOOM.load(Ordering::SeqCst) == 1 && self.0 == 3 {
            panic!("hash of Boomy(3) panics in this build");
        }
        self.0.hash(h)
    }
}

#[test]
fn a_panicking_hash_during_the_placement_check_drops_the_partitioner_without_a_panic() {
    let dir = common::backend::place();
    let path = {
        let ctx = common::ctx_with_dir(dir.path());
        let rdd = ctx
            .parallelize((0..10u64).map(|i| (Boomy(i), i)).collect(), 2)
            .partition_by(Partitioner::hash(3));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        rdd.checkpoint_path().unwrap()
    };
    BOOM.store(1, Ordering::SeqCst);
    let ctx = common::ctx();
    let events = common::Recorder::attach(&ctx);
    let reopened = ctx.open_checkpoint::<(Boomy, u64)>(&path).unwrap();
    let other = ctx.parallelize(vec![(Boomy(5), 'x')], 1);
    let joined = reopened.join(&other); // must not panic
    let reasons: Vec<String> = events.take_matching(|e| match e {
        Event::PartitionerDropped { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("Hash panicked"), "{}", reasons[0]);
    // The shuffle that replaces the narrow join hashes key 3 in a task: an error.
    let err = joined.count().unwrap_err();
    assert!(err.to_string().contains("panics in this build"), "{err}");
}
