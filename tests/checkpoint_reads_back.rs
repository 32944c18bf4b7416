//! The writer accepts only what the reader reads back (DESIGN §4, issue 9 items 1, 2, 12).
//!
//! Serde attributes that postcard cannot read back, `deserialize_any` types and records
//! larger than a frame all fail the write before anything is committed: the action returns
//! `Error::UnreadableRecord` naming the type, the RDD stays Marked with its lineage, and
//! `cancel_checkpoint()` is the way out.

use crate::common;

use flintlock::{CheckpointState, Context, Error};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Sparse {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Loose {
    Number(u64),
    Text(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    A { x: u32 },
    B { y: String },
}

/// Asserts that checkpointing `data` fails with `UnreadableRecord` naming `type_part`, that
/// nothing was committed, and that the RDD is Marked with its lineage, computing the same
/// data after `cancel_checkpoint()`.
fn assert_refused<T>(data: Vec<T>, type_part: &str)
where
    T: flintlock::Data + Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(data.clone(), 2).map(|x| x);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    match &err {
        Error::UnreadableRecord { type_name, reason } => {
            assert!(type_name.contains(type_part), "{err}");
            assert!(reason.contains("partition"), "{err}");
        }
        other => panic!("expected UnreadableRecord, got {other}"),
    }
    assert!(err.to_string().contains("cancel_checkpoint"), "{err}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert!(rdd.checkpoint_path().is_none());
    assert_eq!(rdd.lineage_depth(), 1, "the lineage is intact");
    let app = dir.path().join(ctx.app_id());
    let committed: Vec<_> = common::files_below(&app)
        .into_iter()
        .filter(|p| p.ends_with("_manifest.json"))
        .collect();
    assert!(committed.is_empty(), "nothing committed: {committed:?}");
    // Every action retries the write until the mark is cancelled.
    assert!(rdd.take(1).is_err());
    rdd.cancel_checkpoint().unwrap();
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Initialized);
    assert_eq!(rdd.collect().unwrap(), data);
    // The attempt left no files behind.
    let leftovers: Vec<_> = common::files_below(&app)
        .into_iter()
        .filter(|p| !p.ends_with(".lock") && !p.ends_with(".flintlock-app"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn skip_serializing_if_fields_that_postcard_cannot_read_back_fail_the_write() {
    let data = (0..100)
        .map(|id| Sparse {
            id,
            note: (id % 3 == 0).then(|| format!("note {id}")),
        })
        .collect();
    assert_refused(data, "Sparse");
}

#[test]
fn untagged_enums_fail_the_write() {
    assert_refused(
        vec![
            Loose::Number(1),
            Loose::Text("two".into()),
            Loose::Number(3),
        ],
        "Loose",
    );
}

#[test]
fn internally_tagged_enums_fail_the_write() {
    assert_refused(
        vec![Tagged::A { x: 1 }, Tagged::B { y: "b".into() }],
        "Tagged",
    );
}

#[test]
fn serde_json_values_fail_the_write() {
    let data = vec![
        serde_json::json!({"a": 1}),
        serde_json::json!([1, "x", null]),
        serde_json::json!("s"),
    ];
    assert_refused(data, "serde_json::value::Value");
}

#[test]
fn a_skip_serializing_if_field_that_is_always_present_still_checkpoints() {
    // The check refuses only what does not read back: here every record round-trips.
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data: Vec<Sparse> = (0..50)
        .map(|id| Sparse {
            id,
            note: Some(format!("n{id}")),
        })
        .collect();
    let rdd = ctx.parallelize(data.clone(), 3);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 50);
    assert!(rdd.is_checkpointed());
    assert_eq!(rdd.collect().unwrap(), data);
}

#[test]
fn a_record_larger_than_a_frame_fails_the_write_before_any_commit() {
    let dir = common::backend::place();
    let limit = 256 * 1024;
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .checkpoint_frame_limit(limit)
        .build()
        .unwrap();
    // Partition 0 holds small records, partition 1 one record just over the limit.
    let rdd = ctx
        .parallelize(vec![0usize, 1, 2, limit as usize + 1], 2)
        .map(|n| vec![7u8; n]);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert!(
        matches!(&err, Error::UnreadableRecord { reason, .. }
            if reason.contains("partition 1") && reason.contains("frame")),
        "{err}"
    );
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    // Records that fit, even together larger than a frame, are written and read back.
    let ok = ctx
        .parallelize(vec![limit as usize - 16, 1000, limit as usize - 16], 1)
        .map(|n| vec![3u8; n]);
    ok.checkpoint().unwrap();
    assert_eq!(ok.count().unwrap(), 3);
    assert!(ok.is_checkpointed());
    let lens: Vec<usize> = ok.collect().unwrap().iter().map(Vec::len).collect();
    assert_eq!(lens, vec![limit as usize - 16, 1000, limit as usize - 16]);
}

#[test]
fn a_record_that_does_not_serialize_names_its_type_and_cancel_is_the_way_out() {
    #[derive(Clone, Debug, PartialEq, Deserialize)]
    struct Refuses(u8);
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value refuses to serialize"))
        }
    }
    assert_refused(vec![Refuses(1), Refuses(2)], "Refuses");
}

#[test]
fn with_verification_off_the_caller_takes_the_risk_it_documents() {
    // `checkpoint_verify(false)` exists for types known to round-trip; the reader still
    // refuses what it cannot decode, as a corrupt checkpoint rather than wrong data.
    let dir = common::backend::place();
    let ctx = Context::builder()
        .threads(1)
        .checkpoint_dir(dir.path())
        .checkpoint_verify(false)
        .build()
        .unwrap();
    let rdd = ctx.parallelize(vec![Loose::Number(1), Loose::Text("x".into())], 1);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    assert!(rdd.is_checkpointed());
    let err = rdd.collect().unwrap_err();
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
}

fn is_zero(x: &u8) -> bool {
    *x == 0
}

/// Leaves `a` out when it is zero: the bytes of the rest then happen to decode as another
/// value (`a: 2, s: "x"` for `a: 0, s: "\u{1}x"`), so decoding again cannot notice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Skippy {
    #[serde(skip_serializing_if = "is_zero", default)]
    a: u8,
    s: String,
}

#[test]
fn a_skipped_field_whose_bytes_happen_to_decode_is_refused_not_misread() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![Skippy {
        a: 0,
        s: "\u{1}x".into(),
    }];
    let rdd = ctx.parallelize(data.clone(), 1);
    rdd.checkpoint().unwrap();
    let err = rdd.collect().unwrap_err();
    assert!(
        matches!(&err, Error::UnreadableRecord { reason, .. } if reason.contains("field `a`")),
        "{err}"
    );
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    rdd.cancel_checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
}

#[test]
fn a_serialize_error_keeps_the_users_words() {
    #[derive(Clone, Debug, PartialEq, Deserialize)]
    struct Unlucky(u8);
    impl Serialize for Unlucky {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0 == 77 {
                return Err(serde::ser::Error::custom("77 is unlucky"));
            }
            s.serialize_u8(self.0)
        }
    }
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![Unlucky(1), Unlucky(77)], 1);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert!(err.to_string().contains("77 is unlucky"), "{err}");
    assert!(err.to_string().contains("record 1"), "{err}");
}

/// A tuple struct leaving a field out: serde calls no `skip_field` for tuples, so only the
/// field count tells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TupleSkip(#[serde(skip_serializing_if = "is_zero")] u8, String);

/// A field never written but read: no `skip_field` either.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NeverWritten {
    #[serde(skip_serializing, default)]
    a: u8,
    s: String,
}

/// A field written but never read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct NeverRead {
    #[serde(skip_deserializing)]
    a: u8,
    s: String,
}

#[test]
fn fields_left_out_without_skip_field_are_refused_by_their_count() {
    assert_refused(vec![TupleSkip(0, "\u{1}x".into())], "TupleSkip");
    assert_refused(
        vec![NeverWritten {
            a: 0,
            s: "\u{1}x".into(),
        }],
        "NeverWritten",
    );
    assert_refused(
        vec![NeverRead {
            a: 3,
            s: "x".into(),
        }],
        "NeverRead",
    );
    // Nested below a tuple and a Vec, as a shuffle or a grouped RDD holds them.
    assert_refused(vec![(7u64, vec![TupleSkip(0, "y".into())])], "TupleSkip");
}

#[test]
fn a_tuple_struct_that_always_writes_its_fields_still_checkpoints() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![TupleSkip(4, "\u{1}x".into()), TupleSkip(9, String::new())];
    let rdd = ctx.parallelize(data.clone(), 1);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// A hand-written `Serialize` whose `len` hint is wrong (postcard ignores it) writes every
/// field: it checkpoints, as it did before fields were counted.
#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Rgb(u8, u8, u8);

impl Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTupleStruct;
        let mut t = s.serialize_tuple_struct("Rgb", 0)?;
        t.serialize_field(&self.0)?;
        t.serialize_field(&self.1)?;
        t.serialize_field(&self.2)?;
        t.end()
    }
}

#[test]
fn a_wrong_length_hint_with_every_field_written_still_checkpoints() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![Rgb(1, 2, 3), Rgb(250, 0, 7)];
    let rdd = ctx.parallelize(data.clone(), 1);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// Enum variants leave fields out the same ways structs do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Event {
    Move {
        #[serde(skip_serializing, default)]
        t: u32,
        x: u32,
    },
    Turn(
        u32,
        #[serde(skip_serializing_if = "is_zero_u32", default)] u32,
    ),
    Stop,
}

fn is_zero_u32(x: &u32) -> bool {
    *x == 0
}

#[test]
fn fields_left_out_of_enum_variants_are_refused() {
    assert_refused(vec![Event::Move { t: 9, x: 5 }], "Event");
    assert_refused(vec![Event::Stop, Event::Turn(7, 0)], "Event");
}

#[test]
fn enum_variants_that_write_every_field_still_checkpoint() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![Event::Stop, Event::Turn(7, 3), Event::Stop];
    let rdd = ctx.parallelize(data.clone(), 2);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// A field skipped when serializing and another skipped when deserializing: the counts
/// agree and the bytes decode, so only the names tell (`b` is written where `a` is read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Cancelling {
    #[serde(skip_serializing, default)]
    a: u32,
    b: u32,
    #[serde(skip_deserializing)]
    c: u32,
}

/// The same pair of skips side by side, inside an enum's struct variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Shifted {
    Pair {
        keep: u32,
        #[serde(skip_serializing, default)]
        b: u32,
        #[serde(skip_deserializing)]
        c: u32,
    },
}

/// One name for each direction: the names cannot tell it from a pair of skips.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SplitName {
    #[serde(rename(serialize = "out", deserialize = "in"))]
    x: u32,
}

#[test]
fn a_field_skipped_each_way_in_one_struct_is_refused_by_name() {
    assert_refused(vec![Cancelling { a: 0, b: 1, c: 2 }], "Cancelling");
    assert_refused(
        vec![Shifted::Pair {
            keep: 1,
            b: 0,
            c: 3,
        }],
        "Shifted",
    );
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![Cancelling { a: 0, b: 1, c: 2 }], 1);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err().to_string();
    assert!(
        err.contains("field `b`") && err.contains("reads `a`"),
        "{err}"
    );
    assert!(err.contains("skip_serializing"), "{err}");
}

#[test]
fn a_field_renamed_differently_for_each_direction_is_refused() {
    assert_refused(vec![SplitName { x: 4 }], "SplitName");
}

/// Renames that are the same both ways, aliases and skips on both sides change nothing
/// postcard writes: they checkpoint and read back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Renamed")]
struct Harmless {
    #[serde(rename = "first")]
    a: u32,
    #[serde(alias = "old_name")]
    b: String,
    #[serde(skip)]
    c: u8,
    d: Vec<u16>,
}

#[test]
fn renames_aliases_and_two_way_skips_still_checkpoint() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![
        Harmless {
            a: 1,
            b: "x".into(),
            c: 0,
            d: vec![1, 2],
        },
        Harmless {
            a: 7,
            b: String::new(),
            c: 0,
            d: vec![],
        },
    ];
    let rdd = ctx.parallelize(data.clone(), 2);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// An alias makes the layout untraceable (its `Deserialize` declares names it never
/// reads), but the fields it reads are still counted, so a field left out is caught.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AliasedSkip {
    #[serde(alias = "old")]
    a: u32,
    #[serde(skip_serializing, default)]
    b: u32,
    s: String,
}

/// The same inside an enum's struct variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum AliasedEvent {
    Move {
        #[serde(alias = "when")]
        t: u32,
        #[serde(skip_deserializing)]
        note: u32,
        x: u32,
    },
}

#[test]
fn a_field_left_out_of_a_struct_with_an_alias_is_refused() {
    assert_refused(
        vec![AliasedSkip {
            a: 1,
            b: 0,
            s: "\u{1}x".into(),
        }],
        "AliasedSkip",
    );
    assert_refused(
        vec![AliasedEvent::Move {
            t: 1,
            note: 2,
            x: 3,
        }],
        "AliasedEvent",
    );
}

/// A variant skipped when deserializing shifts the indices of the variants after it:
/// postcard writes `B` as variant 1, which the `Deserialize` reads as `C`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum SkippedFirst {
    #[allow(dead_code)] // never built: serde refuses to write it
    #[serde(skip)]
    A,
    B(u8),
    C(u8),
}

/// A variant written but never read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum NeverReadVariant {
    A(u8),
    #[serde(skip_deserializing)]
    B(u8),
    C(u8),
}

/// A skipped variant after the others shifts nothing; an alias moves names, not indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum SkippedLast {
    #[serde(alias = "Older")]
    A(u8),
    B {
        x: u8,
    },
    #[allow(dead_code)] // never built: serde refuses to write it
    #[serde(skip)]
    C,
}

#[test]
fn a_variant_skipped_when_deserializing_is_refused_not_read_as_another() {
    assert_refused(vec![SkippedFirst::B(5)], "SkippedFirst");
    assert_refused(vec![NeverReadVariant::B(5)], "NeverReadVariant");
    // Nested, as a shuffle or a grouped RDD holds them.
    assert_refused(vec![(1u64, vec![SkippedFirst::C(2)])], "SkippedFirst");
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![SkippedFirst::B(5)], 1);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err().to_string();
    assert!(
        err.contains("SkippedFirst::B") && err.contains("variant 0"),
        "{err}"
    );
}

#[test]
fn skipped_last_variants_and_variant_aliases_still_checkpoint() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![
        SkippedLast::A(1),
        SkippedLast::B { x: 2 },
        SkippedLast::A(3),
    ];
    let rdd = ctx.parallelize(data.clone(), 2);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// A pair of opposite skips in a struct whose alias keeps its layout from being traced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CancelAlias {
    #[serde(alias = "zz")]
    a: u64,
    #[serde(skip_serializing, default)]
    b: u64,
    #[serde(skip_deserializing)]
    c: u64,
    d: u64,
}

#[test]
fn opposite_skips_in_a_struct_with_an_alias_are_refused() {
    assert_refused(
        vec![CancelAlias {
            a: 1,
            b: 0,
            c: 3,
            d: 4,
        }],
        "CancelAlias",
    );
}

mod first {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Inner {
        pub x: u64,
        pub y: u64,
    }
}

mod second {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Inner {
        pub p: u64,
        pub q: String,
    }
}

#[test]
fn two_structs_of_one_name_from_two_modules_still_checkpoint() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![(
        first::Inner { x: 1, y: 2 },
        second::Inner {
            p: 3,
            q: "q".into(),
        },
    )];
    let rdd = ctx.parallelize(data.clone(), 1);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// `flatten` writes the outer struct as a map of unknown length, which postcard cannot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Outer {
    id: u32,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Extra {
    note: String,
}

#[test]
fn a_flattened_struct_is_refused_naming_flatten() {
    let data = vec![Outer {
        id: 1,
        extra: Extra { note: "n".into() },
    }];
    assert_refused(data.clone(), "Outer");
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(data, 1);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err().to_string();
    assert!(
        err.contains("flatten") && err.contains("without its length"),
        "{err}"
    );
}

// Attributes that write one form and read another. Each of these passed the per-field
// checks and read back other values; the round trip (decode each record's bytes and
// encode the value read back) refuses them all.

/// Renamed differently for each direction, so the traced name is not the written one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename(serialize = "SplitOut", deserialize = "SplitIn"))]
struct ContainerRenamedPerDirection {
    a: u32,
    #[serde(skip_serializing)]
    b: u32,
    #[serde(skip_deserializing)]
    c: u32,
}

#[test]
fn opposite_skips_in_a_struct_renamed_per_direction_are_refused() {
    assert_refused(
        vec![ContainerRenamedPerDirection { a: 1, b: 0, c: 3 }],
        "ContainerRenamedPerDirection",
    );
}

/// Written through one proxy, read through another that swaps the fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "PairOut", from = "PairIn")]
struct Swapped {
    x: u32,
    y: u32,
}

#[derive(Serialize)]
struct PairOut(u32, u32);

#[derive(Deserialize)]
struct PairIn(u32, u32);

impl From<Swapped> for PairOut {
    fn from(s: Swapped) -> Self {
        PairOut(s.x, s.y)
    }
}

impl From<PairIn> for Swapped {
    fn from(p: PairIn) -> Self {
        Swapped { x: p.1, y: p.0 }
    }
}

#[test]
fn from_and_into_through_two_different_proxies_are_refused() {
    assert_refused(vec![Swapped { x: 1, y: 2 }], "Swapped");
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TupleSkips(
    u32,
    #[serde(skip_serializing)] u32,
    #[serde(skip_deserializing)] u32,
);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum VariantSkips {
    Both(
        u32,
        #[serde(skip_serializing)] u32,
        #[serde(skip_deserializing)] u32,
    ),
}

#[test]
fn opposite_skips_in_a_tuple_struct_or_tuple_variant_are_refused() {
    assert_refused(vec![TupleSkips(1, 0, 3)], "TupleSkips");
    assert_refused(vec![VariantSkips::Both(1, 0, 3)], "VariantSkips");
}

/// `serialize_with` writes the field as a `u32`; `Deserialize` reads an `i32` (zigzag), so
/// `-1` would read back as `i32::MIN`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OtherWidth {
    #[serde(serialize_with = "as_u32")]
    v: i32,
}

fn as_u32<S: serde::Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(*v as u32)
}

#[test]
fn a_serialize_with_that_writes_another_type_is_refused() {
    assert_refused(vec![OtherWidth { v: -1 }], "OtherWidth");
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![OtherWidth { v: -1 }], 1);
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err().to_string();
    assert!(
        err.contains("read back as another value") && err.contains("serialize_with"),
        "{err}"
    );
}

mod third {
    /// The same serde name as `first::Inner`, with a pair of opposite skips.
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Inner {
        pub a: u32,
        #[serde(skip_serializing)]
        pub b: u32,
        #[serde(skip_deserializing)]
        pub c: u32,
    }
}

#[test]
fn opposite_skips_in_one_of_two_same_named_structs_are_refused() {
    assert_refused(
        vec![(
            first::Inner { x: 1, y: 2 },
            third::Inner { a: 1, b: 0, c: 3 },
        )],
        "Inner",
    );
}

/// An alias equal to the name of a field skipped when deserializing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AliasOfSkipped {
    a: u32,
    #[serde(skip_deserializing)]
    b: u32,
    #[serde(alias = "b", skip_serializing)]
    c: u32,
}

#[test]
fn an_alias_equal_to_a_field_skipped_when_reading_is_refused() {
    assert_refused(vec![AliasOfSkipped { a: 1, b: 2, c: 0 }], "AliasOfSkipped");
}

/// Records holding hash-ordered collections read back in another order: the same value.
#[test]
fn hash_maps_and_sets_read_back_in_another_order_still_checkpoint() {
    use std::collections::{HashMap, HashSet};
    type Row = (u64, HashMap<String, Vec<u32>>, HashSet<(u8, i64)>);
    let data: Vec<Row> = (0..200u64)
        .map(|i| {
            let map = (0..i % 17)
                .map(|k| (format!("k{k}"), (0..k as u32).collect()))
                .collect();
            let set = (0..i % 23).map(|k| (k as u8, -(k as i64))).collect();
            (i, map, set)
        })
        .collect();
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(data.clone(), 3);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.count().unwrap(), 200);
    assert!(rdd.is_checkpointed());
    assert_eq!(rdd.collect().unwrap(), data);
}

/// `None` written as a unit (no bytes), read as an `Option<Option<_>>`: the next field's
/// byte becomes `Some(None)`, and the value read back encodes to the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct UnitForNone {
    #[serde(with = "none_as_unit")]
    a: Option<Option<u8>>,
    b: u8,
    c: Vec<u8>,
}

mod none_as_unit {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_unit(),
            Some(None) => s.serialize_none(),
            Some(Some(x)) => s.serialize_some(x),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u8>>, D::Error> {
        Option::<u8>::deserialize(d).map(Some)
    }
}

#[test]
fn a_value_written_as_no_bytes_and_read_as_another_is_refused() {
    assert_refused(
        vec![UnitForNone {
            a: None,
            b: 0,
            c: vec![0],
        }],
        "UnitForNone",
    );
}

mod geo {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Point {
        pub lat: f64,
        pub lon: f64,
    }
}

mod screen {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Point {
        pub x: i32,
        pub y: i32,
    }
}

/// Rejects strings without `@`, so the layout trace (whose sample string is empty) stops
/// at it, before it meets `screen::Point`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct Email(String);

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.contains('@') {
            Ok(Email(s))
        } else {
            Err(format!("{s:?} is not an e-mail address"))
        }
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[test]
fn same_named_structs_after_a_validated_field_still_checkpoint() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    let data = vec![(
        geo::Point {
            lat: 1.5,
            lon: -2.0,
        },
        Email("a@b".into()),
        screen::Point { x: 3, y: -4 },
    )];
    let rdd = ctx.parallelize(data.clone(), 1);
    rdd.checkpoint().unwrap();
    assert_eq!(rdd.collect().unwrap(), data);
    assert!(rdd.is_checkpointed());
}

/// A linked list: two levels of nesting per node (the struct's field, then the option).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    v: u8,
    next: Option<Box<Node>>,
}

fn list(len: usize) -> Node {
    let mut head = Node { v: 0, next: None };
    for i in 1..len {
        head = Node {
            v: i as u8,
            next: Some(Box::new(head)),
        };
    }
    head
}

impl Clone for Node {
    fn clone(&self) -> Self {
        let mut values = Vec::new();
        let mut at = Some(self);
        while let Some(n) = at {
            values.push(n.v);
            at = n.next.as_deref();
        }
        let mut head: Option<Box<Node>> = None;
        for v in values.into_iter().rev() {
            head = Some(Box::new(Node { v, next: head }));
        }
        *head.expect("a list has a node")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut n) = next {
            next = n.next.take();
        }
    }
}

#[test]
fn a_record_nested_too_deep_is_refused_with_an_error_not_a_stack_overflow() {
    let dir = common::backend::place();
    let ctx = common::ctx_with_dir(dir.path());
    // 1,000 nodes (2,000 levels) read back.
    let shallow = ctx.range(0..2, 2).map(|_| list(1_000));
    shallow.checkpoint().unwrap();
    assert_eq!(shallow.collect().unwrap(), vec![list(1_000), list(1_000)]);
    assert!(shallow.is_checkpointed());
    // 30,000 nodes overflowed a worker's stack (the process aborted); now refused.
    let deep = ctx.range(0..1, 1).map(|_| list(30_000));
    deep.checkpoint().unwrap();
    let err = deep.count().unwrap_err();
    assert!(matches!(err, Error::UnreadableRecord { .. }), "{err}");
    assert!(err.to_string().contains("levels deep"), "{err}");
    deep.cancel_checkpoint().unwrap();
    assert_eq!(deep.count().unwrap(), 1);
}
