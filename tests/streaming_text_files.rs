//! `text_file_stream` reads each new file of a folder once, in name order, and a replayed
//! batch reads exactly the bytes its plan recorded: a changed file is an error naming it,
//! bad input is refused before it is planned, and the files a restart still needs are
//! named so the rest can be moved away.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flintlock::streaming::{ManualClock, StreamingContext, Until};
use flintlock::{Context, Error, Result};

type Seen = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

/// A stream over `input` recording each batch's sorted lines, with a running word count
/// (checkpointed every `every` batches) whose state after each batch goes to `counts`.
fn build(
    ctx: &Context,
    input: &Path,
    every: u32,
    seen: &Seen,
    counts: &Arc<Mutex<BTreeMap<u64, BTreeMap<String, u64>>>>,
) -> Result<StreamingContext> {
    let mut ssc = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    let lines = ssc.text_file_stream("files", input);
    let seen = seen.clone();
    lines.foreach_rdd("lines", move |rdd, batch| {
        let mut v = rdd.collect()?;
        v.sort();
        seen.lock().unwrap().push((batch.id, v));
        Ok(())
    });
    let counts = counts.clone();
    lines
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
            Some(old.unwrap_or(0) + new.iter().sum::<u64>())
        })
        .checkpoint_every(every)
        .foreach_rdd("state", move |rdd, batch| {
            counts
                .lock()
                .unwrap()
                .insert(batch.id, rdd.collect()?.into_iter().collect());
            Ok(())
        });
    Ok(ssc)
}

struct Fixture {
    _dir: tempfile::TempDir,
    input: PathBuf,
    ckpt: PathBuf,
    ctx: Context,
    seen: Seen,
    counts: Arc<Mutex<BTreeMap<u64, BTreeMap<String, u64>>>>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in");
        fs::create_dir(&input).unwrap();
        Fixture {
            input,
            ckpt: dir.path().join("ckpt"),
            _dir: dir,
            ctx: common::ctx(),
            seen: Arc::default(),
            counts: Arc::default(),
        }
    }

    fn open(&self, every: u32) -> Result<(StreamingContext, flintlock::streaming::Recovery)> {
        StreamingContext::get_or_create(&self.ctx, &self.ckpt, |c| {
            build(c, &self.input, every, &self.seen, &self.counts)
        })
    }

    fn write(&self, name: &str, text: &str) {
        fs::write(self.input.join(name), text).unwrap();
    }

    fn lines_of(&self, batch: u64) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        let all: Vec<&Vec<String>> = seen
            .iter()
            .filter(|(b, _)| *b == batch)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(all.len(), 1, "batch {batch} output once");
        all[0].clone()
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn each_new_file_is_read_once_and_hidden_names_are_skipped() {
    let f = Fixture::new();
    let (mut s, _) = f.open(10).unwrap();
    f.write("a.txt", "x y\nz\n");
    f.write(".partial", "hidden\n");
    f.write("_tmp", "hidden\n");
    fs::create_dir(f.input.join("sub")).unwrap();
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(0), strings(&["x y", "z"]));
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(1), Vec::<String>::new(), "nothing new");
    f.write("b.txt", "x\n");
    f.write("c.txt", "w\n");
    // Written again under a name already read: not read again (documented).
    f.write("a.txt", "changed\n");
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(2), strings(&["w", "x"]));
    let counts = f.counts.lock().unwrap()[&2].clone();
    assert_eq!(counts.get("x"), Some(&2));
    assert_eq!(counts.get("hidden"), None);
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_a_file_is_read_as_the_file() {
    let f = Fixture::new();
    let outside = f._dir.path().join("outside.txt");
    fs::write(&outside, "linked line\n").unwrap();
    std::os::unix::fs::symlink(&outside, f.input.join("link.txt")).unwrap();
    let (mut s, _) = f.open(10).unwrap();
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(0), strings(&["linked line"]));
}

#[test]
fn a_restart_continues_the_counts_with_each_file_counted_once() {
    for every in [1u32, 2, 10] {
        let f = Fixture::new();
        let (mut s, _) = f.open(every).unwrap();
        for b in 0..5u64 {
            f.write(&format!("{b:03}.txt"), &format!("k{}\nk0\n", b % 2));
            s.run(Until::Batches(1)).unwrap();
            if b == 2 {
                drop(s);
                s = f.open(every).unwrap().0;
            }
        }
        let counts = f.counts.lock().unwrap()[&4].clone();
        let expect: BTreeMap<String, u64> = [("k0".to_string(), 8), ("k1".to_string(), 2)]
            .into_iter()
            .collect();
        assert_eq!(counts, expect, "every {every}");
    }
}

#[test]
fn a_file_changed_before_its_batch_is_replayed_is_an_error_naming_it() {
    let f = Fixture::new();
    let (mut s, _) = f.open(10).unwrap();
    f.write("a.txt", "one\n");
    s.run(Until::Batches(1)).unwrap();
    drop(s);
    // No state checkpoint yet: recovery replays batch 0 from a.txt, which changed.
    f.write("a.txt", "two\n");
    let err = f.open(10).unwrap_err();
    assert!(matches!(err, Error::DataMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("a.txt") && msg.contains("changed"), "{msg}");
    // Restoring the bytes lets the stream recover.
    f.write("a.txt", "one\n");
    let (_, rec) = f.open(10).unwrap();
    assert_eq!(rec.committed, Some(0));
}

#[test]
fn text_that_is_not_utf8_is_refused_before_it_is_planned() {
    let f = Fixture::new();
    let (mut s, _) = f.open(10).unwrap();
    fs::write(f.input.join("bad.txt"), b"fine\nbad \xff byte\n").unwrap();
    let err = s.run(Until::Batches(1)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Parse { line: 2, .. }), "{msg}");
    common::assert_names(&err, &f.input.join("bad.txt"));
    assert!(
        !common::stream::files(&f.ckpt)
            .iter()
            .any(|p| p.ends_with(".plan")),
        "nothing was planned"
    );
    fs::remove_file(f.input.join("bad.txt")).unwrap();
    f.write("good.txt", "ok\n");
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(0), strings(&["ok"]));
}

#[cfg(target_os = "linux")]
#[test]
fn a_file_name_that_is_not_utf8_is_an_error_naming_it() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(f.input.join(name), "x\n").unwrap();
    let (mut s, _) = f.open(10).unwrap();
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    fs::rename(f.input.join(name), f.input.join("renamed.txt")).unwrap();
    s.run(Until::Batches(1)).unwrap();
    assert_eq!(f.lines_of(0), strings(&["x"]));
}

#[test]
fn files_not_needed_for_recovery_can_be_moved_away() {
    let f = Fixture::new();
    let (mut s, _) = f.open(3).unwrap();
    for b in 0..7u64 {
        f.write(&format!("{b:03}.txt"), &format!("k\nb{b}\n"));
        s.run(Until::Batches(1)).unwrap();
    }
    // State checkpoints at batches 2 and 5: a restart replays batch 6 only.
    let needed = s.files_needed_for_recovery("files").unwrap();
    assert_eq!(needed, [f.input.join("006.txt")].into_iter().collect());
    let archive = f._dir.path().join("archive");
    fs::create_dir(&archive).unwrap();
    for b in 0..7u64 {
        let p = f.input.join(format!("{b:03}.txt"));
        if !needed.contains(&p) {
            fs::rename(&p, archive.join(p.file_name().unwrap())).unwrap();
        }
    }
    assert!(matches!(
        s.files_needed_for_recovery("nope"),
        Err(Error::InvalidArgument(_))
    ));
    drop(s);
    let (mut s, rec) = f.open(3).unwrap();
    assert_eq!((rec.committed, rec.replayed), (Some(6), 1));
    f.write("007.txt", "k\n");
    s.run(Until::Batches(1)).unwrap();
    let counts = f.counts.lock().unwrap()[&7].clone();
    assert_eq!(counts.get("k"), Some(&8));
    assert_eq!(counts.len(), 8);
}
