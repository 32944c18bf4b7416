//! Windows: every `slide`, the last `len` batches of a stream; their slices survive a
//! restart (rebuilt from the plans), their memory stays bounded, and a window that cannot
//! be formed is an error when the stream starts, never a silent approximation.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::stream::WordCount;
use flintlock::streaming::{ManualClock, RddQueue, StreamingContext, Until};
use flintlock::{Context, Error};

fn sec(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ssc(ctx: &Context) -> StreamingContext {
    StreamingContext::new(ctx, sec(1)).clock(ManualClock::auto())
}

fn numbers(ctx: &Context, batches: u64) -> RddQueue<u64> {
    RddQueue::from_rdds((0..batches).map(|b| ctx.parallelize(vec![b * 10, b * 10 + 1], 2)))
}

/// Builds the stream in `ckpt` with `make` and runs it to the commit of batch 13; with
/// `restart_at`, first to that commit, then drops it and builds it again from the folder
/// (as a restarted process would).
fn run_restarting(
    ctx: &Context,
    ckpt: &std::path::Path,
    restart_at: Option<u64>,
    make: impl Fn(&Context) -> flintlock::Result<StreamingContext> + Copy,
) {
    let (mut s, _) = StreamingContext::get_or_create(ctx, ckpt, make).unwrap();
    if let Some(at) = restart_at {
        s.run(Until::Committed(at)).unwrap();
        drop(s);
        s = StreamingContext::get_or_create(ctx, ckpt, make).unwrap().0;
    }
    s.run(Until::Committed(13)).unwrap();
}

#[test]
fn a_window_holds_the_last_len_batches_every_slide() {
    let ctx = common::ctx();
    for (len, slide) in [(1u64, 1u64), (3, 1), (2, 2), (4, 3), (5, 2)] {
        let mut s = ssc(&ctx);
        let seen: Arc<Mutex<Vec<(u64, Vec<u64>)>>> = Arc::default();
        let out = seen.clone();
        s.queue_stream("in", numbers(&ctx, 12))
            .window(sec(len), sec(slide))
            .foreach_rdd("out", move |rdd, b| {
                let mut v = rdd.collect()?;
                v.sort();
                out.lock().unwrap().push((b.id, v));
                Ok(())
            });
        s.run(Until::Batches(12)).unwrap();
        let want: Vec<(u64, Vec<u64>)> = (0..12u64)
            .filter(|b| (b + 1) % slide == 0)
            .map(|b| {
                let first = (b + 1).saturating_sub(len);
                (b, (first..=b).flat_map(|x| [x * 10, x * 10 + 1]).collect())
            })
            .collect();
        assert_eq!(*seen.lock().unwrap(), want, "len {len}, slide {slide}");
    }
}

#[test]
fn lengths_and_slides_that_are_not_multiples_of_the_interval_are_errors_at_start() {
    let ctx = common::ctx();
    for (len, slide) in [
        (Duration::from_millis(1500), sec(1)),
        (sec(2), Duration::from_millis(500)),
        (Duration::ZERO, sec(1)),
        (sec(3), Duration::ZERO),
    ] {
        let mut s = ssc(&ctx);
        s.queue_stream("in", numbers(&ctx, 2))
            .window(len, slide)
            .foreach_rdd("out", |_, _| Ok(()));
        match s.run(Until::Batches(1)) {
            Err(Error::InvalidArgument(m)) => {
                assert!(
                    m.contains("not a positive multiple of the batch interval"),
                    "{m}"
                )
            }
            other => panic!("{len:?}/{slide:?}: expected an error, got {other:?}"),
        }
        assert_eq!(s.last_committed(), None);
    }
}

#[test]
fn streams_sliding_differently_do_not_combine_and_state_reads_unslid_streams() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let input = s.queue_stream("in", numbers(&ctx, 2));
    input
        .window(sec(2), sec(2))
        .union(&input)
        .foreach_rdd("out", |_, _| Ok(()));
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(err.to_string().contains("slide by different"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut s = ssc(&ctx);
    s.queue_stream("in", numbers(&ctx, 2))
        .window(sec(2), sec(2))
        .map(|x| (x % 2, x))
        .update_state_by_key("st", |_, v: Vec<u64>, o: Option<u64>| {
            Some(o.unwrap_or(0) + v.len() as u64)
        })
        .foreach_rdd("out", |_, _| Ok(()));
    s.checkpoint(dir.path()).unwrap();
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(
        err.to_string().contains("reads a window that slides"),
        "{err}"
    );
}

/// A window beside a stateful operator checkpointing every 4 batches, restarted at every
/// batch position: the same windows and states as an uninterrupted run (the window's slices
/// come back from the plans, which the low water keeps for both operators).
#[test]
fn a_window_beside_state_is_the_same_after_a_restart_at_any_batch() {
    type Seen = BTreeMap<u64, Vec<(String, u64)>>;
    let run = |restart_at: Option<u64>| -> (Seen, std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let ctx = common::ctx();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let wc = WordCount::new(6, 14, 4);
        let out = dir.path().join("out");
        let make = |c: &Context| {
            let mut s = wc.build(c, &out)?;
            let q = RddQueue::from_rdds(
                (0..14u64).map(|b| c.parallelize(common::stream::batch_words(6, b), 2)),
            );
            let seen = seen.clone();
            s.queue_stream("again", q)
                .map(|w| (w, 1u64))
                .reduce_by_key_and_window(|a, b| a + b, sec(3), sec(1))
                .foreach_rdd("windows", move |rdd, b| {
                    let mut v = rdd.collect()?;
                    v.sort();
                    seen.lock().unwrap().insert(b.id, v);
                    Ok(())
                });
            Ok(s)
        };
        run_restarting(&ctx, &dir.path().join("ckpt"), restart_at, make);
        let got = seen.lock().unwrap().clone();
        (got, out, dir)
    };
    let (whole, _, _) = run(None);
    for b in 0..14u64 {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for x in b.saturating_sub(2)..=b {
            for w in common::stream::batch_words(6, x) {
                *counts.entry(w).or_default() += 1;
            }
        }
        assert_eq!(
            whole[&b],
            counts.into_iter().collect::<Vec<_>>(),
            "window of batch {b}"
        );
    }
    for at in 0..13 {
        let (got, out, _dir) = run(Some(at));
        assert_eq!(got, whole, "restart after batch {at}");
        common::stream::assert_sink_is_model(&out, 6, 0..14, &format!("restart after {at}"));
    }
}

/// A state fed by a sliding window (`window(3, 1)` → `update_state_by_key`, checkpointing
/// every 4 batches), restarted after every batch: the same states as an uninterrupted
/// run. The batches a restart replays for the state (those after its checkpoint) read
/// whole windows, so the window's slices must come back from before them.
#[test]
fn a_state_over_a_window_is_the_same_after_a_restart_at_any_batch() {
    type Seen = BTreeMap<u64, Vec<(u64, u64)>>;
    let run = |restart_at: Option<u64>| -> Seen {
        let dir = tempfile::tempdir().unwrap();
        let ctx = common::ctx();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let make = |c: &Context| {
            let mut s = ssc(c);
            let seen = seen.clone();
            s.queue_stream("in", numbers(c, 14))
                .window(sec(3), sec(1))
                .map(|x| (x % 3, x))
                .update_state_by_key("sum", |_, new: Vec<u64>, old: Option<u64>| {
                    Some(old.unwrap_or(0) + new.iter().sum::<u64>())
                })
                .checkpoint_every(4)
                .foreach_rdd("states", move |rdd, b| {
                    let mut v = rdd.collect()?;
                    v.sort();
                    seen.lock().unwrap().insert(b.id, v);
                    Ok(())
                });
            Ok(s)
        };
        run_restarting(&ctx, &dir.path().join("ckpt"), restart_at, make);
        seen.lock().unwrap().clone()
    };
    let whole = run(None);
    // The model: each batch adds its window's numbers to the sum of their residue.
    let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
    for b in 0..14u64 {
        for x in b.saturating_sub(2)..=b {
            for n in [x * 10, x * 10 + 1] {
                *sums.entry(n % 3).or_default() += n;
            }
        }
        assert_eq!(
            whole[&b],
            sums.clone().into_iter().collect::<Vec<_>>(),
            "state of batch {b}"
        );
    }
    for at in 0..13 {
        let got = run(Some(at));
        assert_eq!(got, whole, "restart after batch {at}");
    }
}

#[test]
fn a_window_over_a_state_is_an_error_at_start() {
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let mut s = ssc(&ctx);
    s.queue_stream("in", numbers(&ctx, 2))
        .map(|x| (x % 2, x))
        .update_state_by_key("st", |_, v: Vec<u64>, o: Option<u64>| {
            Some(o.unwrap_or(0) + v.len() as u64)
        })
        .window(sec(2), sec(1))
        .foreach_rdd("out", |_, _| Ok(()));
    s.checkpoint(dir.path()).unwrap();
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("a window over the output of stateful `st`"),
        "{err}"
    );
}

#[test]
fn a_long_running_window_holds_only_its_slices() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    s.queue_stream("in", numbers(&ctx, 400))
        .window(sec(5), sec(1))
        .count()
        .foreach_rdd("out", |_, _| Ok(()));
    s.run(Until::Batches(50)).unwrap();
    let early = ctx.memory_stats();
    s.run(Until::Batches(350)).unwrap();
    let late = ctx.memory_stats();
    assert!(
        late.cached_partitions <= early.cached_partitions && late.shuffles <= early.shuffles,
        "{early:?} → {late:?}"
    );
}

#[test]
fn an_inverse_window_needs_a_checkpoint_folder() {
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    s.queue_stream("in", numbers(&ctx, 2))
        .map(|x| (x % 3, x))
        .reduce_by_key_and_window_inv("win", |a, b| a + b, |a, b| a - b, sec(2), sec(1), None)
        .foreach_rdd("out", |_, _| Ok(()));
    let err = s.run(Until::Batches(1)).unwrap_err();
    assert!(
        err.to_string().contains("`win` needs a checkpoint folder"),
        "{err}"
    );
}

/// The inverse window's state over a long run: its lineage stays short (truncated every
/// slide), memory stays flat, every output equals the recomputed window, and its state
/// checkpoint reads back offline.
#[test]
fn a_long_running_inverse_window_stays_flat_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let mut s = ssc(&ctx);
    let q = RddQueue::from_rdds((0..300u64).map(|b| {
        ctx.parallelize(
            (0..20)
                .map(|i| ((b * 7 + i) % 11, (b + i) % 5))
                .collect::<Vec<_>>(),
            2,
        )
    }));
    let seen: Arc<Mutex<BTreeMap<u64, Vec<(u64, u64)>>>> = Arc::default();
    let out = seen.clone();
    s.queue_stream("in", q)
        .reduce_by_key_and_window_inv(
            "win",
            |a, b| a + b,
            |a, b| a - b,
            sec(6),
            sec(2),
            Some(Box::new(|_, v| *v != 0)),
        )
        .checkpoint_every(5)
        .foreach_rdd("out", move |rdd, b| {
            let mut v = rdd.collect()?;
            v.sort();
            out.lock().unwrap().insert(b.id, v);
            Ok(())
        });
    s.checkpoint(dir.path()).unwrap();
    s.run(Until::Batches(60)).unwrap();
    let early = ctx.memory_stats();
    s.run(Until::Batches(240)).unwrap();
    let late = ctx.memory_stats();
    assert!(
        late.cached_partitions <= early.cached_partitions && late.shuffles <= early.shuffles,
        "{early:?} → {late:?}"
    );
    assert!(s.state_lineage_depth("win").unwrap() <= 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 150, "one output every 2 batches");
    for (&b, got) in seen.iter() {
        let mut want: BTreeMap<u64, u64> = BTreeMap::new();
        for x in (b + 1).saturating_sub(6)..=b {
            for i in 0..20 {
                *want.entry((x * 7 + i) % 11).or_default() += (x + i) % 5;
            }
        }
        want.retain(|_, v| *v != 0);
        assert_eq!(*got, want.into_iter().collect::<Vec<_>>(), "batch {b}");
    }
    // Its newest state checkpoint (every 5 slides: batch 299) reads back offline.
    let batches = flintlock::streaming::state_batches(&ctx, dir.path(), "win").unwrap();
    assert_eq!(batches, vec![299]);
    let state = flintlock::streaming::open_state::<u64, u64>(&ctx, dir.path(), "win", 299).unwrap();
    let mut state = state.collect().unwrap();
    state.sort();
    state.retain(|(_, v)| *v != 0);
    assert_eq!(state, seen[&299]);
}
