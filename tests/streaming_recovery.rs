//! A stream restarted from its checkpoint folder continues exactly where it stopped: every
//! batch reaches the sink once with the model's content, a planned-but-uncommitted batch
//! runs again with its recorded input, the folder stays bounded (S16), and the state's
//! lineage and memory stay flat however long the stream runs (S5).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::stream::{lines_of, model, sink_lines, WordCount};
use flintlock::streaming::{Batch, FileSink, ManualClock, Sink, StreamingContext, Until};
use flintlock::{Context, Error, Rdd, Result};

fn check_sink_against_model(out: &Path, seed: u64, batches: u64) {
    common::stream::assert_sink_is_model(out, seed, 0..batches, "");
}

#[test]
fn a_restart_after_any_batch_continues_as_if_uninterrupted() {
    for every in [1u32, 3, 10] {
        for stop_after in [1u64, 2, 4, 7, 10, 11, 13] {
            let dir = tempfile::tempdir().unwrap();
            let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
            let ctx = common::ctx();
            let wc = WordCount::new(42, 16, every);
            let (mut s, rec) =
                StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
            assert_eq!(rec.committed, None);
            s.run(Until::Batches(stop_after)).unwrap();
            drop(s);
            let (mut s, rec) =
                StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
            assert_eq!(rec.committed, Some(stop_after - 1), "every {every}");
            assert_eq!(rec.rerun, None);
            // The batches after the newest state checkpoint are rebuilt: at most k.
            let newest_state = (stop_after / u64::from(every)) * u64::from(every);
            assert_eq!(
                rec.replayed,
                stop_after - newest_state,
                "every {every}, stopped after {stop_after}"
            );
            assert!(rec.replayed <= u64::from(every));
            assert!(rec
                .to_string()
                .contains(&format!("recovered at batch {}", stop_after - 1)));
            s.run(Until::Committed(15)).unwrap();
            check_sink_against_model(&out, 42, 16);
        }
    }
}

/// A sink that counts its writes per batch and delegates to a `FileSink`.
struct Counting {
    inner: FileSink,
    writes: Arc<Mutex<BTreeMap<u64, u32>>>,
}

impl Sink<String> for Counting {
    fn last_committed(&self) -> Result<Option<u64>> {
        Sink::<String>::last_committed(&self.inner)
    }
    fn write(&self, batch: Batch, rdd: &Rdd<String>) -> Result<()> {
        *self.writes.lock().unwrap().entry(batch.id).or_default() += 1;
        self.inner.write(batch, rdd)
    }
}

/// The word count with a counting sink and, after it, an output that fails batch
/// `fail_at` while `failing` is set.
fn build_failing(
    ctx: &Context,
    out: &Path,
    writes: Arc<Mutex<BTreeMap<u64, u32>>>,
    failing: Arc<AtomicBool>,
    fail_at: u64,
) -> Result<StreamingContext> {
    let wc = WordCount::new(7, 12, 4);
    let queue = flintlock::streaming::RddQueue::from_rdds(
        (0..12).map(|b| ctx.parallelize(common::stream::batch_words(7, b), 2)),
    );
    let mut s = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    let lines = s
        .queue_stream("words", queue)
        .map(|w| (w, 1u64))
        .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
            common::stream::update(&new, old)
        })
        .checkpoint_every(wc.every)
        .partitions(2)
        .map(|(w, n)| format!("{w} {n}"));
    lines.sink(
        "out",
        Counting {
            inner: FileSink::new(out),
            writes,
        },
    );
    lines.foreach_rdd("flaky", move |_, batch| {
        if batch.id == fail_at && failing.load(Ordering::SeqCst) {
            return Err(Error::InvalidArgument("flaky output".into()));
        }
        Ok(())
    });
    Ok(s)
}

#[test]
fn a_planned_batch_runs_again_with_its_input_and_reaches_the_sink_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let writes = Arc::new(Mutex::new(BTreeMap::new()));
    let failing = Arc::new(AtomicBool::new(true));
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| {
        build_failing(c, &out, writes.clone(), failing.clone(), 5)
    })
    .unwrap();
    let err = s.run(Until::Committed(11)).unwrap_err();
    assert!(err.to_string().contains("flaky output"));
    assert_eq!(s.last_committed(), Some(4));
    // The sink wrote batch 5 before the failing output: the crash comes after it.
    assert!(sink_lines(&out, 5).is_some());
    drop(s);
    failing.store(false, Ordering::SeqCst);
    let (mut s, rec) = StreamingContext::get_or_create(&ctx, &ckpt, |c| {
        build_failing(c, &out, writes.clone(), failing.clone(), 5)
    })
    .unwrap();
    assert_eq!((rec.committed, rec.rerun), (Some(4), Some(5)));
    s.run(Until::Committed(11)).unwrap();
    check_sink_against_model(&out, 7, 12);
    let writes = writes.lock().unwrap().clone();
    assert!(writes.values().all(|&n| n == 1), "exactly once: {writes:?}");
    assert_eq!(writes.len(), 12);
}

#[test]
fn a_second_stream_on_the_same_folder_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let wc = WordCount::new(1, 4, 2);
    let out = dir.path().join("out");
    let (_s, _) =
        StreamingContext::get_or_create(&ctx, dir.path().join("ckpt"), |c| wc.build(c, &out))
            .unwrap();
    let err = StreamingContext::get_or_create(&ctx, dir.path().join("ckpt"), |c| {
        wc.build(c, &dir.path().join("out2"))
    })
    .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
}

#[test]
fn a_folder_of_something_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let ctx = common::ctx();
    let wc = WordCount::new(1, 4, 2);
    let err =
        StreamingContext::get_or_create(&ctx, dir.path(), |c| wc.build(c, &dir.path().join("out")))
            .unwrap_err();
    assert!(
        err.to_string().contains("not a flintlock streaming folder"),
        "{err}"
    );
    assert!(dir.path().join("notes.txt").exists());
}

/// Counts what the checkpoint folder holds: (plans, commits, state folders, graphs).
fn census(ckpt: &Path) -> (usize, usize, usize, usize) {
    let files = common::stream::files(ckpt);
    let count = |f: &dyn Fn(&str) -> bool| files.iter().filter(|p| f(p)).count();
    let state_dirs: std::collections::BTreeSet<String> = files
        .iter()
        .filter(|p| p.starts_with("state/counts/rdd-"))
        .map(|p| p.split('/').take(3).collect::<Vec<_>>().join("/"))
        .collect();
    (
        count(&|p| p.starts_with("log/") && p.ends_with(".plan")),
        count(&|p| p.starts_with("log/") && p.ends_with(".commit")),
        state_dirs.len(),
        count(&|p| p.starts_with("graph/")),
    )
}

#[test]
fn the_folder_stays_bounded_over_two_thousand_batches_with_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let k = 10u64;
    let batches = 2_000u64;
    let wc = WordCount::new(3, batches, k as u32);
    let mut s = None;
    for b in 0..batches {
        if b % 300 == 0 {
            drop(s.take()); // a restart every 300 batches
            let (restarted, rec) =
                StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
            assert_eq!(rec.committed, b.checked_sub(1));
            s = Some(restarted);
        }
        s.as_mut().unwrap().run(Until::Batches(1)).unwrap();
        flintlock::checkpoint::wait_for_removals(); // removals run in the background
        let (plans, commits, states, graphs) = census(&ckpt);
        assert!(plans <= k as usize + 1, "batch {b}: {plans} plans");
        assert!(commits <= 2, "batch {b}: {commits} commits (retain 1)");
        assert!(
            states <= 1,
            "batch {b}: {states} state folders after the commit"
        );
        assert_eq!(graphs, 1, "batch {b}");
    }
    assert_eq!(
        sink_lines(&out, batches - 1),
        Some(lines_of(&model(3, batches)[(batches - 1) as usize]))
    );
}

#[test]
fn state_lineage_and_memory_stay_flat_over_ten_thousand_batches() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let ctx = common::ctx();
    let k = 10u32;
    let build = |ctx: &Context| -> Result<StreamingContext> {
        let queue = flintlock::streaming::RddQueue::from_rdds(
            (0..10_000u64).map(|b| ctx.parallelize(vec![(b % 97, 1u64), (b % 13, 2)], 1)),
        );
        let mut s = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
        let state = s
            .queue_stream("in", queue)
            .update_state_by_key("sums", |_, new: Vec<u64>, old: Option<u64>| {
                Some(old.unwrap_or(0) + new.iter().sum::<u64>())
            })
            .checkpoint_every(k)
            .partitions(2);
        state.foreach_rdd("noop", |_, _| Ok(()));
        Ok(s)
    };
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, build).unwrap();
    let mut at_10 = None;
    for b in 0..10_000u64 {
        s.run(Until::Batches(1)).unwrap();
        let depth = s.state_lineage_depth("sums").unwrap();
        assert!(depth <= 3, "batch {b}: state lineage depth {depth}");
        let stats = ctx.memory_stats();
        if b == 10 {
            at_10 = Some(stats);
        }
        if b >= 10 {
            let first = at_10.unwrap();
            assert!(
                stats.cached_partitions <= first.cached_partitions
                    && stats.shuffles <= first.shuffles,
                "batch {b}: {stats:?} grew from {first:?} at batch 10"
            );
        }
        if b == 5_004 {
            // A restart between two state checkpoints (5,000 was the newest, batch 4,999).
            drop(s);
            let (restarted, rec) = StreamingContext::get_or_create(&ctx, &ckpt, build).unwrap();
            assert_eq!(rec.committed, Some(5_004));
            assert_eq!(rec.replayed, 5);
            let depth = restarted.state_lineage_depth("sums").unwrap();
            assert!(depth <= 3 * k as usize, "after the restart: depth {depth}");
            s = restarted;
        }
    }
}

/// Batch ids skipped while the stream was down were never planned: later recoveries follow
/// the plans' links across the gap instead of asking for the skipped ids.
#[test]
fn recovery_after_a_downtime_gap_replays_only_the_batches_that_ran() {
    for every in [3u32, 10] {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
        let ctx = common::ctx();
        let clock = ManualClock::auto();
        let mut wc = WordCount::new(5, 12, every);
        wc.clock = Some(clock.clone());
        let (mut s, _) =
            StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
        s.run(Until::Batches(5)).unwrap();
        drop(s);
        // Down for a while: the next batch due is batch 100.
        clock.set(Duration::from_secs(100));
        let (mut s, rec) =
            StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
        assert_eq!(rec.committed, Some(4));
        s.run(Until::Batches(3)).unwrap();
        assert_eq!(s.last_committed(), Some(102));
        drop(s);
        let (mut s, rec) =
            StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
        assert_eq!(rec.committed, Some(102), "every {every}");
        s.run(Until::Batches(1)).unwrap();
        // The queue is read in batch order: batch 100 reads the sixth input.
        let m = model(5, 9);
        for (batch, input) in [
            (0u64, 0usize),
            (4, 4),
            (100, 5),
            (101, 6),
            (102, 7),
            (103, 8),
        ] {
            assert_eq!(
                sink_lines(&out, batch),
                Some(lines_of(&m[input])),
                "batch {batch}"
            );
        }
        for skipped in [5u64, 50, 99] {
            assert_eq!(sink_lines(&out, skipped), None);
        }
    }
}

/// An output that panics: the panic reaches the caller, nothing of the batch commits, and
/// the same plan runs again, in this process or after a restart, with the sink written once.
#[test]
fn a_panicking_output_leaves_its_batch_planned_to_run_again() {
    for restart in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
        let ctx = common::ctx();
        let wc = WordCount::new(8, 8, 3);
        let armed = Arc::new(AtomicBool::new(true));
        let build = |c: &Context| {
            let mut s = wc.build(c, &out)?;
            let armed = armed.clone();
            let queue = flintlock::streaming::RddQueue::<u8>::new();
            s.queue_stream("ticks", queue)
                .foreach_rdd("panics", move |_, batch| {
                    if batch.id == 3 && armed.swap(false, Ordering::SeqCst) {
                        panic!("an output panicked at batch 3");
                    }
                    Ok(())
                });
            Ok(s)
        };
        let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, build).unwrap();
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.run(Until::Batches(8))));
        assert!(caught.is_err(), "the panic reaches the caller");
        assert_eq!(s.last_committed(), Some(2));
        if restart {
            drop(s);
            let (s2, rec) = StreamingContext::get_or_create(&ctx, &ckpt, build).unwrap();
            assert_eq!((rec.committed, rec.rerun), (Some(2), Some(3)));
            s = s2;
        }
        s.run(Until::Committed(7)).unwrap();
        check_sink_against_model(&out, 8, 8);
    }
}

#[test]
fn a_stop_asked_before_run_is_honoured_once() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let wc = WordCount::new(1, 6, 2);
    let mut s = wc.build(&ctx, &dir.path().join("out")).unwrap();
    s.checkpoint(dir.path().join("ckpt")).unwrap();
    s.stop(true);
    s.run(Until::Batches(3)).unwrap();
    assert_eq!(s.last_committed(), None, "the stop was honoured");
    s.run(Until::Batches(3)).unwrap();
    assert_eq!(s.last_committed(), Some(2), "and only once");
}

/// A sink folder holding batches another stream wrote: a new stream (with or without a
/// checkpoint folder) must not take them for its own output and skip its writes.
#[test]
fn a_sink_holding_another_streams_batches_is_an_error_not_a_silent_skip() {
    for checkpointed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ctx = common::ctx();
        let mut first = WordCount::new(1, 4, 2).build(&ctx, &out).unwrap();
        first.checkpoint(dir.path().join("first")).unwrap();
        first.run(Until::Batches(2)).unwrap();
        drop(first);
        let mut second = WordCount::new(2, 4, 2).build(&ctx, &out).unwrap();
        if checkpointed {
            second.checkpoint(dir.path().join("second")).unwrap();
        } else {
            // Without a folder a stateful stream cannot run: a stateless one writes here.
            second = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
            let q = flintlock::streaming::RddQueue::from_rdds([
                ctx.parallelize(vec!["new".to_string()], 1)
            ]);
            second
                .queue_stream("words", q)
                .sink("out", FileSink::new(&out));
        }
        let err = second.run(Until::Batches(1)).unwrap_err();
        assert!(
            err.to_string().contains("already holds batch 1"),
            "checkpointed {checkpointed}: {err}"
        );
        assert_eq!(second.last_committed(), None);
    }
}

#[test]
fn clean_checkpoints_never_deletes_the_state_a_restart_needs() {
    // `clean_checkpoints` removes a context's own checkpoints once unread; a stream's state
    // checkpoints are retained by its commits instead, so a restart finds the one the newest
    // commit names even after every RDD reading it was dropped.
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let wc = WordCount::new(42, 12, 2);
    {
        let ctx = Context::builder()
            .threads(2)
            .clean_checkpoints(true)
            .build()
            .unwrap();
        let (mut s, _) =
            StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
        s.run(Until::Batches(5)).unwrap();
    }
    flintlock::checkpoint::wait_for_removals();
    let ctx = Context::builder()
        .threads(2)
        .clean_checkpoints(true)
        .build()
        .unwrap();
    let (mut s, rec) = StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
    assert_eq!(rec.committed, Some(4));
    s.run(Until::Committed(11)).unwrap();
    check_sink_against_model(&out, 42, 12);
}
