//! Streaming overhead, in one run: a stateful word count of 100 batches (20,000 words per
//! batch over a 5,000-word vocabulary, state in 2 partitions), run
//!
//! - **by hand**: the same per-batch RDD plan as `update_state_by_key` (cogroup of the
//!   previous state with the batch, the update, a local checkpoint, a count), in a plain
//!   loop: no streaming layer, no files;
//! - **metadata only**: the stream, writing each batch's plan and commit (fsynced) to its
//!   checkpoint folder, the state never written as a reliable checkpoint in the run;
//! - **state every 10**: the same with the default state checkpoint interval;
//! - **metadata only, fsync off**: the share of the fsyncs in the overhead.
//!
//! And a large state with small batches (200,000 keys, 50 batches of 200 records, the
//! state written every 10 batches and never): `update_state_by_key` (which cogroups the whole state every batch)
//! against `map_with_state` (which touches only the batch's keys).
//!
//! `cargo bench --bench streaming`: the `RATIO` and `PER BATCH` lines are the figures.

mod support;

use std::time::Duration;

use flintlock::streaming::{ManualClock, RddQueue, State, StateSpec, StreamingContext, Until};
use flintlock::{Context, Partitioner, Rdd};

const BATCHES: u64 = 100;
const WORDS: u64 = 20_000;
const VOCABULARY: u64 = 5_000;
const PARTITIONS: usize = 2;

fn input() -> Vec<Vec<String>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..BATCHES)
        .map(|_| {
            (0..WORDS)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("w{}", x % VOCABULARY)
                })
                .collect()
        })
        .collect()
}

fn update(new: Vec<u64>, old: Option<u64>) -> Option<u64> {
    Some(old.unwrap_or(0) + new.iter().sum::<u64>())
}

fn by_hand(ctx: &Context, input: &[Vec<String>]) -> u64 {
    let mut state: Rdd<(String, u64)> = ctx.empty();
    let mut total = 0;
    for words in input {
        let batch = ctx.parallelize(words.clone(), 2).map(|w| (w, 1u64));
        let next = state
            .cogroup_with(&batch, Partitioner::hash(PARTITIONS))
            .map_partitions_preserving_partitioning(|groups| {
                groups.filter_map(|(k, (old, new))| {
                    update(new, old.into_iter().next()).map(|s| (k, s))
                })
            });
        next.local_checkpoint().unwrap();
        next.count().unwrap();
        total = next.count().unwrap();
        state = next;
    }
    total
}

fn streamed(ctx: &Context, input: &[Vec<String>], every: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let queue = RddQueue::from_rdds(input.iter().map(|w| ctx.parallelize(w.clone(), 2)));
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut ssc = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    let t = total.clone();
    ssc.queue_stream("words", queue)
        .map(|w| (w, 1u64))
        .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
            update(new, old)
        })
        .checkpoint_every(every)
        .partitions(PARTITIONS)
        .foreach_rdd("count", move |rdd, _| {
            t.store(rdd.count()?, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
    ssc.checkpoint(dir.path()).unwrap();
    ssc.run(Until::Batches(BATCHES)).unwrap();
    total.load(std::sync::atomic::Ordering::Relaxed)
}

const BIG_STATE: u64 = 200_000;
const SMALL_BATCHES: u64 = 50;
const SMALL_BATCH: u64 = 200;

/// Runs the large-state stream with `map_with_state` (or `update_state_by_key`) and
/// returns the last batch's output count (the batch's records, or the whole state).
fn big_state(ctx: &Context, mapped: bool, every: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let initial = ctx.parallelize((0..BIG_STATE).map(|k| (k, 1u64)).collect::<Vec<_>>(), 2);
    let queue = RddQueue::from_rdds((0..SMALL_BATCHES).map(|b| {
        let keys: Vec<(u64, u64)> = (0..SMALL_BATCH)
            .map(|i| ((b * 7919 + i * 104_729) % BIG_STATE, 1))
            .collect();
        ctx.parallelize(keys, 2)
    }));
    let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = total.clone();
    let mut ssc = StreamingContext::new(ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    let pairs = ssc.queue_stream("keys", queue);
    let output = move |rdd: &Rdd<u64>| {
        t.store(rdd.count()?, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    };
    if mapped {
        let spec = StateSpec::function(|_: &u64, v: Option<u64>, s: &mut State<u64>| {
            let n = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
            s.update(n);
            n
        })
        .initial_state(initial)
        .partitions(PARTITIONS)
        .checkpoint_every(every);
        // The batch's keys with their new counts.
        pairs
            .map_with_state("counts", spec)
            .foreach_rdd("count", move |rdd, _| output(rdd));
    } else {
        // The whole state, every batch (the operator computes it in any case).
        pairs
            .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
                Some(old.unwrap_or(0) + new.iter().sum::<u64>())
            })
            .initial_state(initial)
            .partitions(PARTITIONS)
            .checkpoint_every(every)
            .map(|(_, n)| n)
            .foreach_rdd("count", move |rdd, _| output(rdd));
    }
    ssc.checkpoint(dir.path()).unwrap();
    ssc.run(Until::Batches(SMALL_BATCHES)).unwrap();
    total.load(std::sync::atomic::Ordering::Relaxed)
}

fn main() {
    let ctx = Context::new();
    let input = input();
    let keys = by_hand(&ctx, &input);
    assert_eq!(
        streamed(&ctx, &input, 10),
        keys,
        "the stream counts what the loop counts"
    );
    let reps = 9;
    let name = format!("{BATCHES} batches of {WORDS} words");
    let (meta, hand) = support::compare(
        reps,
        &name,
        "metadata only",
        || streamed(&ctx, &input, u32::MAX),
        "by hand",
        || by_hand(&ctx, &input),
    );
    let (every10, meta2) = support::compare(
        reps,
        &name,
        "state every 10",
        || streamed(&ctx, &input, 10),
        "metadata only",
        || streamed(&ctx, &input, u32::MAX),
    );
    let no_fsync = Context::builder().checkpoint_fsync(false).build().unwrap();
    let (meta_nofsync, hand2) = support::compare(
        reps,
        &name,
        "metadata only, fsync off",
        || streamed(&no_fsync, &input, u32::MAX),
        "by hand",
        || by_hand(&ctx, &input),
    );
    assert_eq!(big_state(&ctx, true, 10), SMALL_BATCH);
    assert_eq!(big_state(&ctx, false, 10), BIG_STATE);
    let mut small_runs = Vec::new();
    for (every, label) in [(10, "state every 10"), (u32::MAX, "state never written")] {
        let small = format!("{BIG_STATE} keys, {SMALL_BATCHES} batches of {SMALL_BATCH}, {label}");
        let (mapped, updated) = support::compare(
            5,
            &small,
            "map_with_state",
            || big_state(&ctx, true, every),
            "update_state_by_key",
            || big_state(&ctx, false, every),
        );
        small_runs.push((small, mapped, updated));
    }
    let per = |t: f64| t * 1e3 / BATCHES as f64;
    let per_small = |t: f64| t * 1e3 / SMALL_BATCHES as f64;
    for (small, mapped, updated) in small_runs {
        println!(
            "PER BATCH: {small}: map_with_state {:.2} ms, update_state_by_key {:.2} ms",
            per_small(mapped),
            per_small(updated)
        );
    }
    println!(
        "PER BATCH: by hand {:.2} ms, metadata only {:.2} ms (+{:.2} ms), state every 10 \
         {:.2} ms (+{:.2} ms over metadata only)",
        per(hand),
        per(meta),
        per(meta) - per(hand),
        per(every10),
        per(every10) - per(meta2),
    );
    println!(
        "PER BATCH: with fsync off, metadata only {:.2} ms (+{:.2} ms over by hand)",
        per(meta_nofsync),
        per(meta_nofsync) - per(hand2)
    );
}
