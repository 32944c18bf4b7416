//! Sources: parallelize, range, and text files split on line boundaries.

mod common;

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
fn a_folder_instead_of_a_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx();
    let err = ctx.text_file(dir.path(), 1).count().unwrap_err();
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
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
    assert_eq!(
        ctx.range(backwards, 2).count().unwrap(),
        0,
        "an empty range is empty"
    );
    let v: Vec<u64> = (5..12).collect();
    assert_eq!(
        ctx.parallelize(v, 3).glom().collect().unwrap(),
        vec![vec![5, 6], vec![7, 8], vec![9, 10, 11]]
    );
}
