//! A streaming folder damaged, truncated, partly deleted or written by a newer build: a
//! restart fails with an error naming what is wrong, and never falls back silently to an
//! older commit or to starting over (which would repeat or lose output).

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};

use common::stream::WordCount;
use flintlock::streaming::{StreamingContext, Until};
use flintlock::{Error, Result};

/// A folder after 8 batches of the word count checkpointing its state every 3 batches:
/// state of batch 5 committed, plans 6 and 7 to replay.
fn stream_folder(dir: &Path) -> (PathBuf, PathBuf) {
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let ctx = common::ctx();
    let wc = WordCount::new(11, 20, 3);
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
    s.run(Until::Batches(8)).unwrap();
    (ckpt, out)
}

fn restart(ckpt: &Path, out: &Path) -> Result<u64> {
    let ctx = common::ctx();
    let wc = WordCount::new(11, 20, 3);
    let (mut s, rec) = StreamingContext::get_or_create(&ctx, ckpt, |c| wc.build(c, out))?;
    s.run(Until::Batches(1))?;
    Ok(rec.committed.expect("a recovered stream"))
}

fn newest(ckpt: &Path, ext: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = fs::read_dir(ckpt.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v.pop().expect("a log file")
}

fn state_folders(ckpt: &Path) -> Vec<PathBuf> {
    fs::read_dir(ckpt.join("state/counts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rdd-"))
        .collect()
}

/// Re-seals a metadata file's JSON body after `edit`, with a valid checksum.
fn reseal(path: &Path, key: &str, edit: impl Fn(&str) -> String) {
    let text = fs::read_to_string(path).unwrap();
    let prefix = format!("{{\"{key}\":");
    let body = &text[prefix.len()..text.rfind(",\"crc32c\"").unwrap()];
    let body = edit(body);
    let crc = crc32c::crc32c(body.as_bytes());
    fs::write(path, format!("{prefix}{body},\"crc32c\":\"{crc:08x}\"}}\n")).unwrap();
}

fn assert_corrupt(err: &Error, path: &Path, text: &str) {
    assert!(
        matches!(err, Error::CorruptCheckpoint { .. }),
        "expected a corrupt-checkpoint error, got {err}"
    );
    common::assert_names(err, path);
    assert!(err.to_string().contains(text), "{err}");
}

#[test]
fn the_undamaged_folder_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    assert_eq!(restart(&ckpt, &out).unwrap(), 7);
}

#[test]
fn a_flipped_byte_in_the_newest_commit_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let commit = newest(&ckpt, "commit");
    let mut bytes = fs::read(&commit).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(&commit, bytes).unwrap();
    let err = restart(&ckpt, &out).unwrap_err();
    assert_corrupt(&err, &commit, "");
}

#[test]
fn a_truncated_plan_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let plan = newest(&ckpt, "plan");
    let bytes = fs::read(&plan).unwrap();
    fs::write(&plan, &bytes[..bytes.len() / 2]).unwrap();
    assert_corrupt(&restart(&ckpt, &out).unwrap_err(), &plan, "");
}

#[test]
fn metadata_of_a_newer_format_version_is_unsupported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let commit = newest(&ckpt, "commit");
    reseal(&commit, "commit", |b| {
        b.replace("\"version\":1", "\"version\":2")
    });
    match restart(&ckpt, &out).unwrap_err() {
        Error::UnsupportedVersion { path, found, max } => {
            assert_eq!((path, found, max), (commit, 2, 1));
        }
        e => panic!("expected UnsupportedVersion, got {e}"),
    }
}

#[test]
fn a_file_of_another_kind_under_a_metadata_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let (plan, commit) = (newest(&ckpt, "plan"), newest(&ckpt, "commit"));
    // Same batch: copy the plan's bytes over the commit.
    assert_eq!(plan.file_stem(), commit.file_stem());
    fs::copy(&plan, &commit).unwrap();
    assert_corrupt(&restart(&ckpt, &out).unwrap_err(), &commit, "");
}

#[test]
fn a_damaged_stream_marker_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    fs::write(ckpt.join("STREAM"), b"{\"stream\":{}}").unwrap();
    assert_corrupt(&restart(&ckpt, &out).unwrap_err(), &ckpt.join("STREAM"), "");
}

#[test]
fn a_missing_graph_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    for e in fs::read_dir(ckpt.join("graph")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let err = restart(&ckpt, &out).unwrap_err();
    assert!(
        matches!(err, Error::CorruptCheckpoint { .. }),
        "expected a corrupt-checkpoint error, got {err}"
    );
    assert!(err.to_string().contains("graph"), "{err}");
}

#[test]
fn a_deleted_log_is_lost_progress_not_a_new_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    fs::remove_dir_all(ckpt.join("log")).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("log"),
        "missing",
    );
    // An emptied log too.
    fs::create_dir(ckpt.join("log")).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("log"),
        "empty",
    );
}

#[test]
fn deleted_commits_are_lost_progress_not_a_new_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    for e in fs::read_dir(ckpt.join("log")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "commit") {
            fs::remove_file(p).unwrap();
        }
    }
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("log"),
        "commits are missing",
    );
}

#[test]
fn a_deleted_plan_that_recovery_replays_is_an_error_naming_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    fs::remove_file(ckpt.join("log/00000000000000000006.plan")).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("log"),
        "the plan of batch 6 is missing",
    );
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    fs::remove_file(ckpt.join("log/00000000000000000007.plan")).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("log"),
        "the plan of batch 7 is missing",
    );
}

#[test]
fn a_deleted_state_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let folders = state_folders(&ckpt);
    assert_eq!(folders.len(), 1, "retention keeps the committed state only");
    fs::remove_dir_all(&folders[0]).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &folders[0],
        "state checkpoint of `counts` at batch 5",
    );
}

#[test]
fn a_damaged_state_part_fails_the_batch_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    let folder = &state_folders(&ckpt)[0];
    let part = folder.join("part-00000");
    let mut bytes = fs::read(&part).unwrap();
    let i = bytes.len() - 3;
    bytes[i] ^= 0x40;
    fs::write(&part, bytes).unwrap();
    let before = newest(&ckpt, "commit");
    let err = restart(&ckpt, &out).unwrap_err();
    common::assert_names(&err, &part);
    assert_eq!(newest(&ckpt, "commit"), before, "nothing committed");
}

#[test]
fn a_deleted_stream_marker_is_corrupt_not_a_foreign_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = stream_folder(dir.path());
    fs::remove_file(ckpt.join("STREAM")).unwrap();
    assert_corrupt(
        &restart(&ckpt, &out).unwrap_err(),
        &ckpt.join("STREAM"),
        "marker file is missing",
    );
}
