//! A stream restarted with different code: each kind of edit is either refused with
//! [`Error::GraphChanged`] naming the difference, before anything runs, or accepted and
//! reported in `Recovery::changes`, as `GraphPolicy` says; and a streaming folder written
//! by format version 1 (golden files under `tests/data/stream-v1/`) keeps recovering.
//!
//! Regenerate the golden folder (only when adding a format version):
//! `FLINTLOCK_REGENERATE_GOLDEN=1 cargo test --test streaming -- --ignored streaming_graph_changes::`.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::stream::{assert_sink_is_model, batch_words, update};
use flintlock::streaming::{
    FileSink, GraphPolicy, ManualClock, RddQueue, StreamingContext, Until, STREAM_FORMAT_VERSION,
};
use flintlock::{Context, Error, Result};

/// One way of changing the word count's code between two runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Edit {
    None,
    RenameState,
    RenameSource,
    StateType,
    Partitions,
    CheckpointEvery,
    Interval,
    NewSink,
    RemovedOutput,
    ExtraStatelessStep,
    ReorderedStatelessSteps,
}

impl Edit {
    const ALL: [Edit; 11] = [
        Edit::None,
        Edit::RenameState,
        Edit::RenameSource,
        Edit::StateType,
        Edit::Partitions,
        Edit::CheckpointEvery,
        Edit::Interval,
        Edit::NewSink,
        Edit::RemovedOutput,
        Edit::ExtraStatelessStep,
        Edit::ReorderedStatelessSteps,
    ];
}

const SEED: u64 = 3;
const BATCHES: u64 = 12;

/// The word count of `common::stream`, spelled out so each edit can change one thing.
fn build(ctx: &Context, out: &Path, edit: Edit, policy: GraphPolicy) -> Result<StreamingContext> {
    let queue = RddQueue::from_rdds((0..BATCHES).map(|b| ctx.parallelize(batch_words(SEED, b), 2)));
    let interval = Duration::from_secs(if edit == Edit::Interval { 2 } else { 1 });
    let mut ssc = StreamingContext::new(ctx, interval)
        .clock(ManualClock::auto())
        .graph_policy(policy);
    let source = if edit == Edit::RenameSource {
        "input"
    } else {
        "words"
    };
    let words = ssc.queue_stream(source, queue);
    // Closures are not compared (only the steps' kinds, order and types are), so the
    // reordering swaps a `filter` and a `map`.
    let words = match edit {
        Edit::ExtraStatelessStep => words
            .filter(|w| !w.is_empty())
            .map(|w| w.to_lowercase())
            .filter(|_| true),
        Edit::ReorderedStatelessSteps => words.map(|w| w.to_lowercase()).filter(|w| !w.is_empty()),
        _ => words.filter(|w| !w.is_empty()).map(|w| w.to_lowercase()),
    };
    let name = if edit == Edit::RenameState {
        "tally"
    } else {
        "counts"
    };
    let every = if edit == Edit::CheckpointEvery { 2 } else { 3 };
    let partitions = if edit == Edit::Partitions { 3 } else { 2 };
    let lines = if edit == Edit::StateType {
        words
            .map(|w| (w.to_lowercase(), 1u32))
            .update_state_by_key(name, |_, new: Vec<u32>, old: Option<u32>| {
                Some(old.unwrap_or(0) + new.iter().sum::<u32>())
            })
            .checkpoint_every(every)
            .partitions(partitions)
            .map(|(w, n)| format!("{w} {n}"))
    } else {
        words
            .map(|w| (w.to_lowercase(), 1u64))
            .update_state_by_key(name, |_, new: Vec<u64>, old: Option<u64>| update(&new, old))
            .checkpoint_every(every)
            .partitions(partitions)
            .map(|(w, n)| format!("{w} {n}"))
    };
    lines.sink("out", FileSink::new(out));
    if edit != Edit::RemovedOutput {
        lines.count().foreach_rdd("log", |_, _| Ok(()));
    }
    if edit == Edit::NewSink {
        lines.sink("audit", FileSink::new(out.with_extension("audit")));
    }
    Ok(ssc)
}

/// What a restart with `edit` under `policy` does: `Err(text)` refused with a difference
/// containing `text`; `Ok(text)` accepted with a reported change containing `text` (empty:
/// no change reported).
fn expected(edit: Edit, policy: GraphPolicy) -> std::result::Result<&'static str, &'static str> {
    let strict = policy == GraphPolicy::Strict;
    match edit {
        Edit::None => Ok(""),
        Edit::RenameState => Err("stateful `counts` is gone"),
        Edit::RenameSource => Err("is gone"),
        Edit::StateType => Err("state type u64 → u32"),
        Edit::Partitions => Ok("partitions 2 → 3"),
        Edit::CheckpointEvery => Ok("checkpoint every 3 → 2"),
        Edit::Interval => Err("batch interval: 1s → 2s"),
        Edit::NewSink if strict => Err("`audit` is new"),
        Edit::NewSink => Ok("`audit` is new"),
        Edit::RemovedOutput if strict => Err("`log` is gone"),
        Edit::RemovedOutput => Ok("`log` is gone"),
        Edit::ExtraStatelessStep | Edit::ReorderedStatelessSteps if strict => {
            Err("its input changed")
        }
        Edit::ExtraStatelessStep | Edit::ReorderedStatelessSteps => Ok("its input changed"),
    }
}

#[test]
fn each_edit_is_refused_or_accepted_as_the_policy_says() {
    for policy in [GraphPolicy::Strict, GraphPolicy::AllowStatelessChanges] {
        for edit in Edit::ALL {
            let dir = tempfile::tempdir().unwrap();
            let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
            let ctx = common::ctx();
            let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| {
                build(c, &out, Edit::None, policy)
            })
            .unwrap();
            s.run(Until::Batches(5)).unwrap();
            drop(s);
            let before = common::stream::files(&ckpt);
            let case = format!("{edit:?} under {policy:?}");
            match (
                StreamingContext::get_or_create(&ctx, &ckpt, |c| build(c, &out, edit, policy)),
                expected(edit, policy),
            ) {
                (Err(Error::GraphChanged { dir, differences }), Err(text)) => {
                    assert_eq!(dir, ckpt, "{case}");
                    assert!(
                        differences.iter().any(|d| d.contains(text)),
                        "{case}: {differences:?}"
                    );
                    // Refused before anything ran or was written.
                    assert_eq!(common::stream::files(&ckpt), before, "{case}");
                    // The old code still recovers.
                    let (_, rec) = StreamingContext::get_or_create(&ctx, &ckpt, |c| {
                        build(c, &out, Edit::None, policy)
                    })
                    .unwrap();
                    assert_eq!(rec.committed, Some(4), "{case}");
                }
                (Ok((mut s, rec)), Ok(text)) => {
                    if text.is_empty() {
                        assert!(rec.changes.is_empty(), "{case}: {:?}", rec.changes);
                    } else {
                        assert!(
                            rec.changes.iter().any(|c| c.contains(text)),
                            "{case}: {:?}",
                            rec.changes
                        );
                    }
                    s.run(Until::Committed(BATCHES - 1)).unwrap();
                    // None of the accepted edits changes the counts.
                    assert_sink_is_model(&out, SEED, 0..BATCHES, &case);
                }
                (Err(e), want) => panic!("{case}: refused with {e}, expected {want:?}"),
                (Ok((_, rec)), want) => {
                    panic!("{case}: accepted ({:?}), expected {want:?}", rec.changes)
                }
            }
        }
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/stream-v{STREAM_FORMAT_VERSION}"))
}

/// The golden stream: the word count, with an output that fails batch 5 when `fail`, so
/// the folder holds a state checkpoint (batch 2), plans to replay (3, 4) and a pending
/// plan (5).
fn golden_build(ctx: &Context, out: &Path, fail: bool) -> Result<StreamingContext> {
    let mut ssc = build(ctx, out, Edit::None, GraphPolicy::Strict)?;
    let tick = RddQueue::<u8>::new();
    ssc.queue_stream("ticks", tick)
        .foreach_rdd("failer", move |_, batch| {
            if fail && batch.id == 5 {
                return Err(Error::InvalidArgument("the golden run stops here".into()));
            }
            Ok(())
        });
    Ok(ssc)
}

#[test]
#[ignore = "writes the golden files: FLINTLOCK_REGENERATE_GOLDEN=1 cargo test --test streaming -- --ignored streaming_graph_changes::"]
fn regenerate_the_golden_stream_folder_when_asked() {
    assert!(
        std::env::var("FLINTLOCK_REGENERATE_GOLDEN").is_ok(),
        "set FLINTLOCK_REGENERATE_GOLDEN=1 to overwrite {}",
        golden_dir().display()
    );
    let scratch = tempfile::tempdir().unwrap();
    let ckpt = scratch.path().join("ckpt");
    let ctx = Context::builder().threads(1).build().unwrap();
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| {
        golden_build(c, &scratch.path().join("out"), true)
    })
    .unwrap();
    assert!(s.run(Until::Batches(100)).is_err());
    assert_eq!(s.last_committed(), Some(4));
    drop(s);
    let golden = golden_dir();
    let _ = std::fs::remove_dir_all(&golden);
    for rel in common::files_below(&ckpt) {
        let name = rel.file_name().unwrap().to_string_lossy();
        if name == ".lock" || name.starts_with(".visit") {
            continue;
        }
        let to = golden.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(ckpt.join(&rel), to).unwrap();
    }
}

#[test]
fn a_version_1_stream_folder_recovers_and_continues_exactly() {
    let scratch = tempfile::tempdir().unwrap();
    let ckpt = scratch.path().join("ckpt");
    for rel in common::files_below(&golden_dir()) {
        let to = ckpt.join(&rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(golden_dir().join(&rel), to).unwrap();
    }
    let out = scratch.path().join("out");
    let ctx = common::ctx();
    let (mut s, rec) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| golden_build(c, &out, false)).unwrap();
    assert_eq!(
        (rec.committed, rec.rerun, rec.replayed),
        (Some(4), Some(5), 2),
        "{rec}"
    );
    s.run(Until::Committed(BATCHES - 1)).unwrap();
    assert_sink_is_model(&out, SEED, 5..BATCHES, "golden v1");
}

/// An accepted change while a batch was planned but not committed: the re-run batch
/// commits under the new graph, so the graph file the next restart needs is kept.
#[test]
fn an_accepted_change_with_a_pending_batch_keeps_the_stream_restartable() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let with_failer = |c: &Context, edit: Edit, fail: bool| {
        let mut s = build(c, &out, edit, GraphPolicy::Strict)?;
        s.queue_stream("ticks", RddQueue::<u8>::new())
            .foreach_rdd("failer", move |_, batch| {
                if fail && batch.id == 4 {
                    return Err(Error::InvalidArgument("batch 4 fails".into()));
                }
                Ok(())
            });
        Ok(s)
    };
    let (mut s, _) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| with_failer(c, Edit::None, true)).unwrap();
    assert!(s.run(Until::Batches(10)).is_err());
    drop(s);
    let (mut s, rec) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| with_failer(c, Edit::Partitions, false))
            .unwrap();
    assert_eq!((rec.committed, rec.rerun), (Some(3), Some(4)));
    s.run(Until::Committed(6)).unwrap();
    drop(s);
    let (mut s, rec) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| with_failer(c, Edit::Partitions, false))
            .unwrap();
    assert_eq!(rec.committed, Some(6));
    s.run(Until::Committed(BATCHES - 1)).unwrap();
    assert_sink_is_model(&out, SEED, 0..BATCHES, "pending batch with a change");
}

/// A text file stream's progress names files of its folder: reading another folder after a
/// restart would silently skip its files with the same names.
#[test]
fn a_text_file_stream_pointed_at_another_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let (a, b) = (dir.path().join("host-a"), dir.path().join("host-b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let ctx = common::ctx();
    let open = |folder: &Path| {
        StreamingContext::get_or_create(&ctx, &ckpt, |c| {
            let mut s = StreamingContext::new(c, Duration::from_secs(1)).clock(ManualClock::auto());
            s.text_file_stream("files", folder)
                .foreach_rdd("out", |_, _| Ok(()));
            Ok(s)
        })
    };
    let (mut s, _) = open(&a).unwrap();
    s.run(Until::Batches(2)).unwrap();
    drop(s);
    match open(&b) {
        Err(Error::GraphChanged { differences, .. }) => {
            assert!(
                differences
                    .iter()
                    .any(|d| d.contains("source `files`: reads") && d.contains("host-b")),
                "{differences:?}"
            );
        }
        Err(e) => panic!("expected GraphChanged, got {e}"),
        Ok(_) => panic!("a restart on another folder was accepted"),
    }
    assert!(open(&a).is_ok(), "the same folder still recovers");
}
