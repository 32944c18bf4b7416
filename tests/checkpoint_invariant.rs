//! The checkpoint promise as a property (DESIGN §4, issue 9 "Proof"):
//!
//! *If an action says it succeeded, the RDD is Checkpointed and `collect()` returns exactly
//! what the lineage computes; otherwise the action says why, the RDD is Marked with its
//! lineage, and the next action (or `cancel_checkpoint()`) still returns exactly that. No
//! committed checkpoint of an earlier run is ever deleted, and each still reads back.*
//!
//! Random element types (serde-attribute-heavy ones included, some of which postcard cannot
//! read back), RDD kinds, sizes, partition counts, actions, frame limits, compression, one
//! injected storage fault at a random operation (or from then on), and reruns of the same
//! program with the same app id in one checkpoint folder.
//!
//! `FLINTLOCK_LONG_TESTS=1` runs 512 cases instead of 48.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flintlock::checkpoint::{FaultyStorage, LocalFs};
use flintlock::{CheckpointState, Compression, Context, Data, Error, Rdd};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Plain {
    id: u32,
    name: String,
    tags: Vec<u8>,
    score: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect { w: u32, h: u32 },
}

/// Reads back only when `note` is present (postcard writes no field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sparse {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

/// Never reads back (needs `deserialize_any`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    N(u64),
    S(String),
}

/// Written through one proxy and read through another that swaps the fields: reads back as
/// another value whenever `x != y` (postcard writes neither names nor types).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "(u32, u32)", from = "Flipped")]
struct Swapped {
    x: u32,
    y: u32,
}

#[derive(Deserialize)]
struct Flipped(u32, u32);

impl From<Swapped> for (u32, u32) {
    fn from(s: Swapped) -> Self {
        (s.x, s.y)
    }
}

impl From<Flipped> for Swapped {
    fn from(f: Flipped) -> Self {
        Swapped { x: f.1, y: f.0 }
    }
}

#[derive(Clone, Debug)]
struct Params {
    kind: u8,
    len: u64,
    partitions: usize,
    action: u8,
    fault: Option<(usize, bool)>,
    compression: bool,
    frame_limit: Option<u32>,
    clean: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        0u8..7,
        prop_oneof![Just(0u64), 1u64..40, 40u64..400],
        1usize..6,
        0u8..4,
        proptest::option::weighted(0.6, (1usize..60, any::<bool>())),
        any::<bool>(),
        proptest::option::weighted(0.2, 1024u32..8192),
        proptest::bool::weighted(0.25),
    )
        .prop_map(
            |(kind, len, partitions, action, fault, compression, frame_limit, clean)| Params {
                kind,
                len,
                partitions,
                action,
                fault,
                compression,
                frame_limit,
                clean,
            },
        )
}

/// The lineage under test, built the same way in every context.
fn build<T: Data>(ctx: &Context, make: fn(u64) -> T, p: &Params) -> Rdd<T> {
    let source = ctx.parallelize((0..p.len).map(make).collect(), p.partitions);
    match p.kind {
        0 => source,
        1 => source.map(|x| x),
        2 => source.map_partitions_with_index(|i, it| {
            it.enumerate()
                .filter(move |(j, _)| (i + j) % 3 != 0)
                .map(|(_, x)| x)
                .collect::<Vec<_>>()
        }),
        3 => source.union(&source.map(|x| x)),
        4 => source.coalesce(2),
        5 => source.repartition(3),
        _ => source.zip_with_index().map(|(x, _)| x),
    }
}

fn context(root: &Path, storage: &Arc<FaultyStorage>, p: &Params) -> Context {
    let mut b = Context::builder()
        .app_id("invariant")
        .threads(2)
        .checkpoint_dir(root)
        .checkpoint_storage(storage.clone())
        .clean_checkpoints(p.clean)
        .checkpoint_compression(if p.compression {
            Compression::Lz4
        } else {
            Compression::None
        });
    if let Some(limit) = p.frame_limit {
        b = b.checkpoint_frame_limit(limit);
    }
    b.build().expect("context")
}

/// One run of the program: mark, act (under a fault), check the promise. Returns the
/// checkpoint it committed, if it is meant to outlive the run.
fn run<T>(
    root: &Path,
    make: fn(u64) -> T,
    p: &Params,
) -> Result<Option<(PathBuf, Vec<T>)>, TestCaseError>
where
    T: Data + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let expected = build(&Context::builder().threads(2).build().unwrap(), make, p)
        .collect()
        .unwrap();
    let storage = FaultyStorage::new(Arc::new(LocalFs));
    let ctx = context(root, &storage, p);
    let rdd = build(&ctx, make, p);
    rdd.checkpoint().unwrap();
    match p.fault {
        Some((n, true)) => storage.fail_from(n, std::io::ErrorKind::Other),
        Some((n, false)) => storage.fail_any(n, std::io::ErrorKind::Other),
        None => {}
    }
    let acted: Result<(), Error> = match p.action {
        0 => rdd.count().map(drop),
        1 => rdd.collect().map(|got| assert_eq!(got, expected)),
        2 => rdd
            .take(3)
            .map(|got| assert_eq!(got[..], expected[..got.len()])),
        _ => rdd.first().map(drop),
    };
    storage.clear();
    let state = rdd.checkpoint_state();
    // Success means committed. A committed checkpoint may still fail the action when a
    // later job of the same action (`take` scanning on) reads it under the injected fault.
    match (&acted, state) {
        (Ok(()), CheckpointState::Checkpointed) => {}
        (Err(Error::Io { .. }), CheckpointState::Checkpointed) if p.fault.is_some() => {}
        (Err(_), CheckpointState::Marked) => {}
        (outcome, state) => {
            return Err(TestCaseError::fail(format!(
                "the action's outcome and the state disagree: {:?} and {state:?}",
                outcome.as_ref().map_err(ToString::to_string)
            )))
        }
    }
    if state == CheckpointState::Checkpointed {
        prop_assert_eq!(
            rdd.collect().unwrap(),
            expected,
            "a checkpoint reads back exactly"
        );
    } else {
        prop_assert_eq!(state, CheckpointState::Marked);
        prop_assert!(rdd.checkpoint_path().is_none());
        // The next action retries; without a fault it commits, or it refuses the type
        // again. Either way the data is the lineage's.
        match rdd.collect() {
            Ok(got) => {
                prop_assert_eq!(&got, &expected);
                prop_assert!(rdd.is_checkpointed());
                prop_assert_eq!(rdd.collect().unwrap(), expected);
            }
            Err(Error::UnreadableRecord { .. }) => {
                rdd.cancel_checkpoint().unwrap();
                prop_assert_eq!(rdd.collect().unwrap(), expected);
            }
            Err(e) => return Err(TestCaseError::fail(format!("retry failed: {e}"))),
        }
    }
    let committed = rdd
        .checkpoint_path()
        .map(|path| (path, rdd.collect().unwrap()));
    Ok(committed.filter(|_| !p.clean))
}

/// Runs the program `reruns` times with the same app id in one folder; after every run,
/// every checkpoint an earlier run committed still opens and reads back exactly.
fn program<T>(make: fn(u64) -> T, runs: &[Params]) -> Result<(), TestCaseError>
where
    T: Data + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let root = tempfile::tempdir().unwrap();
    let mut kept: Vec<(PathBuf, Vec<T>)> = Vec::new();
    for p in runs {
        if let Some(c) = run(root.path(), make, p)? {
            kept.push(c);
        }
        let reader = Context::builder().threads(1).build().unwrap();
        for (path, data) in &kept {
            prop_assert!(
                path.join("_manifest.json").exists(),
                "{} was deleted",
                path.display()
            );
            let back = reader
                .open_checkpoint::<T>(path)
                .unwrap()
                .collect()
                .unwrap();
            prop_assert_eq!(&back, data);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    if std::env::var("FLINTLOCK_LONG_TESTS").is_ok() {
        512
    } else {
        48
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn a_checkpointed_rdd_always_reads_back_its_lineage_and_no_committed_run_is_lost(
        element in 0u8..10,
        runs in proptest::collection::vec(params(), 1..4),
    ) {
        match element {
            0 => program(|i| i, &runs)?,
            1 => program(|i| (i, format!("v{i}")), &runs)?,
            2 => program(
                |i| Plain {
                    id: i as u32,
                    name: "n".repeat(i as usize % 7),
                    tags: vec![i as u8; i as usize % 5],
                    score: (i % 2 == 0).then_some(-(i as i64)),
                },
                &runs,
            )?,
            3 => program(
                |i| match i % 3 {
                    0 => Shape::Empty,
                    1 => Shape::Circle(i as f64 / 3.0),
                    _ => Shape::Rect { w: i as u32, h: 7 },
                },
                &runs,
            )?,
            4 => program(
                |i| Sparse {
                    id: i,
                    note: (i % 4 != 1).then(|| format!("note {i}")),
                },
                &runs,
            )?,
            5 => program(
                |i| if i % 2 == 0 { Loose::N(i) } else { Loose::S(i.to_string()) },
                &runs,
            )?,
            6 => program(|i| serde_json::json!({"i": i, "even": i % 2 == 0}), &runs)?,
            7 => program(|i| Swapped { x: i as u32, y: i as u32 % 3 }, &runs)?,
            // Hash-ordered collections read back in another order, as the same value.
            8 => program(
                |i| {
                    let map: std::collections::HashMap<u64, String> =
                        (0..i % 9).map(|k| (k * i, k.to_string())).collect();
                    (i, map)
                },
                &runs,
            )?,
            // Records around the frame limits: some frames hold one large record.
            _ => program(|i| vec![i as u8; (i as usize * 37) % 9000], &runs)?,
        }
    }
}
