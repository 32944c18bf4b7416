//! Sources: parallelize, range, and text files split on line boundaries.

use crate::common;

use common::ctx;
use flintlock::Error;

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(String::from).collect()
}

#[test]
fn text_file_reads_every_line_exactly_once_for_any_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let mut text = String::new();
    for i in 0..300 {
        text.push_str(&"x".repeat(i % 17));
        text.push_str(&format!(" line {i}\n"));
    }
    text.push_str("\n\nlast line without newline");
    std::fs::write(&path, &text).unwrap();
    let ctx = ctx();
    for n in [1, 2, 3, 7, 16, 64, 500] {
        let rdd = ctx.text_file(&path, n);
        assert!(rdd.num_partitions() >= n);
        assert_eq!(
            rdd.collect().unwrap(),
            lines_of(&text),
            "min_partitions {n}"
        );
    }
}

#[test]
fn text_file_strips_crlf_and_handles_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let crlf = dir.path().join("crlf.txt");
    std::fs::write(&crlf, "a\r\nb\r\n").unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let ctx = ctx();
    assert_eq!(ctx.text_file(&crlf, 2).collect().unwrap(), vec!["a", "b"]);
    assert_eq!(ctx.text_file(&empty, 3).count().unwrap(), 0);
}

#[test]
fn a_missing_file_is_an_error_naming_the_path() {
    let ctx = ctx();
    let rdd = ctx.text_file("/no/such/flintlock-input.txt", 2);
    let err = rdd.count().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains("/no/such/flintlock-input.txt"),
        "{err}"
    );
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
}

#[test]
fn a_folder_or_a_glob_reads_its_visible_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    // An empty folder is an empty RDD.
    assert_eq!(ctx.text_file(dir.path(), 3).count().unwrap(), 0);
    std::fs::write(dir.path().join("b.txt"), "b1\nb2\n").unwrap();
    std::fs::write(dir.path().join("a.txt"), "a1\na2\na3").unwrap();
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    std::fs::write(dir.path().join(".hidden"), "h\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub").join("c.txt"), "c\n").unwrap();
    for parts in [1, 2, 5] {
        assert_eq!(
            ctx.text_file(dir.path(), parts).collect().unwrap(),
            vec!["a1", "a2", "a3", "b1", "b2"],
            "{parts} partitions"
        );
    }
    assert_eq!(
        ctx.text_file(dir.path().join("b*"), 1).collect().unwrap(),
        vec!["b1", "b2"]
    );
    let err = ctx
        .text_file(dir.path().join("z*"), 1)
        .count()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("matches no file") && err.contains("z*"),
        "{err}"
    );
    let whole = ctx.whole_text_files(dir.path(), 4).collect().unwrap();
    let names: Vec<&str> = whole.iter().map(|(p, _)| &p[p.len() - 5..]).collect();
    assert_eq!(names, vec!["a.txt", "b.txt"]);
    assert_eq!(whole[0].1, "a1\na2\na3");
}

#[test]
fn lines_appended_after_the_rdd_was_built_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.txt");
    std::fs::write(&path, "1\n2\n3\n4\n").unwrap();
    let ctx = ctx();
    let lines = ctx.text_file(&path, 2);
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"5\n6\n").unwrap();
    drop(f);
    assert_eq!(lines.collect().unwrap(), vec!["1", "2", "3", "4", "5", "6"]);
}

#[test]
fn invalid_utf8_is_an_error_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, b"ok\n\xff\xfe\n").unwrap();
    let err = ctx().text_file(&path, 1).collect().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.txt") && msg.contains("offset 3"), "{msg}");
}

#[test]
fn range_splits_like_parallelize() {
    let ctx = ctx();
    assert_eq!(
        ctx.range(5..12, 3).glom().collect().unwrap(),
        vec![vec![5, 6], vec![7, 8], vec![9, 10, 11]]
    );
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..3;
    assert!(
        ctx.range(backwards, 2).count().is_err(),
        "a reversed range is an error, not silently empty"
    );
    assert_eq!(
        ctx.range(3..3, 2).count().unwrap(),
        0,
        "an empty range is empty"
    );
    let v: Vec<u64> = (5..12).collect();
    assert_eq!(
        ctx.parallelize(v, 3).glom().collect().unwrap(),
        vec![vec![5, 6], vec![7, 8], vec![9, 10, 11]]
    );
}
