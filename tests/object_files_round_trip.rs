//! `save_as_object_file` / `object_file`: what was saved is exactly what reads back, a
//! failed or refused save leaves nothing behind, and a damaged, incomplete or foreign
//! folder is a precise error.

use std::path::Path;

use flintlock::{Context, Error, Partitioner};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Point),
        (-1e9f64..1e9).prop_map(|r| Shape::Circle { r }),
        prop::collection::vec((any::<i32>(), any::<i32>()), 0..5).prop_map(Shape::Poly),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any elements, any partitioning (empty partitions and an empty RDD included): the
    /// folder reads back the same elements in the same partitions.
    #[test]
    fn what_is_saved_reads_back_exactly(
        data in prop::collection::vec((any::<u64>(), ".{0,12}", proptest::option::of(shape())), 0..200),
        parts in 1usize..9,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx();
        let rdd = ctx.parallelize(data.clone(), parts);
        let out = dir.path().join("saved");
        rdd.save_as_object_file(&out).unwrap();
        let back = ctx.object_file::<(u64, String, Option<Shape>)>(&out).unwrap();
        prop_assert_eq!(back.num_partitions(), parts);
        prop_assert_eq!(back.glom().collect().unwrap(), rdd.glom().collect().unwrap());
        // Another context (as another process would) reads the same.
        let other = Context::new();
        prop_assert_eq!(other.object_file::<(u64, String, Option<Shape>)>(&out).unwrap().collect().unwrap(), data);
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn an_existing_path_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("precious.txt"), "keep me").unwrap();
    let err = ctx().range(0..10, 2).save_as_object_file(&out).unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert!(err.to_string().contains("taken"), "{err}");
    assert_eq!(files_under(&out), vec!["precious.txt"]);
}

#[test]
fn a_failed_save_removes_what_it_wrote_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let out = dir.path().join("out");
    let failing = ctx.range(0..1000, 4).map(|x| {
        assert!(x != 900, "bad record");
        x
    });
    let err = failing.save_as_object_file(&out).unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    assert!(!out.exists(), "left {:?}", files_under(&out));
    ctx.range(0..1000, 4).save_as_object_file(&out).unwrap();
    assert_eq!(
        ctx.object_file::<u64>(&out).unwrap().collect().unwrap(),
        (0..1000).collect::<Vec<u64>>()
    );
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Sparse {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    note: Option<String>,
}

#[test]
fn records_that_would_not_read_back_fail_the_save_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sparse");
    let rdd = ctx().parallelize(
        vec![
            Sparse {
                id: 1,
                note: Some("x".into()),
            },
            Sparse { id: 2, note: None },
        ],
        1,
    );
    let err = rdd.save_as_object_file(&out).unwrap_err();
    assert!(matches!(err, Error::UnreadableRecord { .. }), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_save_that_never_committed_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed");
    let ctx = ctx();
    ctx.range(0..100, 3).save_as_object_file(&out).unwrap();
    // As a save killed before its manifest leaves it.
    std::fs::remove_file(out.join("_manifest.json")).unwrap();
    let err = ctx.object_file::<u64>(&out).unwrap_err();
    assert!(matches!(err, Error::NotCommitted { .. }), "{err}");
}

#[test]
fn a_damaged_part_fails_the_read_that_meets_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("damaged");
    let ctx = ctx();
    ctx.range(0..10_000, 2).save_as_object_file(&out).unwrap();
    let part = out.join("part-00001");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&part, bytes).unwrap();
    let rdd = ctx.object_file::<u64>(&out).unwrap();
    let err = rdd.count().unwrap_err();
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("part-00001"), "{err}");
}

#[test]
fn the_wrong_element_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("typed");
    let ctx = ctx();
    ctx.parallelize(vec![(1u32, 2.5f64)], 1)
        .save_as_object_file(&out)
        .unwrap();
    assert!(matches!(
        ctx.object_file::<(u32, u64)>(&out),
        Err(Error::TypeMismatch { .. })
    ));
    assert_eq!(
        ctx.object_file::<(u32, f64)>(&out)
            .unwrap()
            .collect()
            .unwrap(),
        vec![(1, 2.5)]
    );
}

#[test]
fn a_saved_pair_rdd_keeps_its_partitioner_after_the_placement_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counts");
    let ctx = ctx();
    let counts = ctx
        .range(0..1000, 4)
        .map(|x| (x % 17, 1u64))
        .reduce_by_key_with(Partitioner::hash(5), |a, b| a + b);
    counts.save_as_object_file(&out).unwrap();
    let back = ctx.object_file::<(u64, u64)>(&out).unwrap();
    assert_eq!(back.num_partitions(), 5);
    let mut sums = back.reduce_by_key(|a, b| a + b).collect().unwrap();
    sums.sort();
    let mut expected = counts.collect().unwrap();
    expected.sort();
    assert_eq!(sums, expected);
}

#[test]
fn a_relative_path_works() {
    let dir = tempfile::tempdir().unwrap();
    let here = std::env::current_dir().unwrap();
    let rel = dir
        .path()
        .join("rel")
        .strip_prefix(&here)
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|_| dir.path().join("rel"));
    let ctx = ctx();
    ctx.range(0..5, 1).save_as_object_file(&rel).unwrap();
    assert_eq!(
        ctx.object_file::<u64>(&rel).unwrap().collect().unwrap(),
        vec![0, 1, 2, 3, 4]
    );
}

#[test]
fn a_path_that_names_no_new_folder_is_refused_without_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let up = dir.path().join("newdir").join("..");
    let err = ctx.range(0..3, 1).save_as_object_file(&up).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(!dir.path().join("newdir").exists());
    let err = ctx.range(0..3, 1).save_as_text_file(&up).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(!dir.path().join("newdir").exists());
}

#[test]
fn a_failed_save_removes_the_parent_folders_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let failing = ctx.range(0..100, 2).map(|x| {
        assert!(x != 70, "bad record");
        x
    });
    let deep = dir.path().join("a").join("b").join("out");
    assert!(failing.save_as_object_file(&deep).is_err());
    assert!(
        !dir.path().join("a").exists(),
        "{:?}",
        files_under(dir.path())
    );
    let deep_text = dir.path().join("c").join("d").join("out");
    assert!(failing.save_as_text_file(&deep_text).is_err());
    assert!(
        !dir.path().join("c").exists(),
        "{:?}",
        files_under(dir.path())
    );
}
