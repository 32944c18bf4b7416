//! A crash at every storage operation of a running stream (plans, state checkpoints, sink
//! output, commits, retention), in the simulated filesystem of `common::simfs` (durable
//! only what was synced): the restarted stream recovers at the batch last reported
//! committed, or the one after it when its commit had become durable, and goes on to write
//! every batch's output exactly as the model says.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::simfs::{SimFs, Skip};
use common::stream::{lines_of, model, WordCount};
use flintlock::checkpoint::Storage;
use flintlock::streaming::{FileSink, StreamingContext, Until};
use flintlock::Context;

const CKPT: &str = "/sim/stream";
const OUT: &str = "/sim/out";
const SEED: u64 = 21;
const BATCHES: u64 = 6;

fn context(fs: &SimFs) -> Context {
    Context::builder()
        .threads(2)
        .checkpoint_storage(fs.clone())
        .build()
        .unwrap()
}

fn word_count(fs: &SimFs, every: u32) -> WordCount {
    let mut wc = WordCount::new(SEED, BATCHES, every);
    wc.storage = Some(Arc::new(fs.clone()) as Arc<dyn Storage>);
    wc
}

/// Runs the stream on a filesystem that crashes after `k` operations. Returns the batch
/// the stream last reported committed, and the operations it performed.
fn crashing_run(fs: &SimFs, every: u32) -> Option<u64> {
    let ctx = context(fs);
    let wc = word_count(fs, every);
    let Ok((mut s, _)) =
        StreamingContext::get_or_create(&ctx, Path::new(CKPT), |c| wc.build(c, Path::new(OUT)))
    else {
        return None;
    };
    let _ = s.run(Until::Committed(BATCHES - 1));
    s.last_committed()
}

/// Recovers the crashed filesystem with `seed`, restarts the stream and checks it. Returns
/// whether recovery landed one batch past the reported commit.
fn restart_and_check(
    fs: &SimFs,
    every: u32,
    reported: Option<u64>,
    seed: u64,
) -> Result<bool, String> {
    let fs = fs.recover(seed);
    let ctx = context(&fs);
    let wc = word_count(&fs, every);
    let (mut s, rec) =
        StreamingContext::get_or_create(&ctx, Path::new(CKPT), |c| wc.build(c, Path::new(OUT)))
            .map_err(|e| format!("restart: {e}"))?;
    let next = reported.map_or(0, |c| c + 1);
    let ahead = rec.committed == Some(next);
    let landed_ok = match (reported, rec.committed) {
        (_, None) => reported.is_none(),
        (None, Some(c)) => c == 0,
        (Some(r), Some(c)) => c == r || c == r + 1,
    };
    if !landed_ok {
        return Err(format!(
            "reported committed {reported:?}, recovered at {:?} (next would be {next})",
            rec.committed
        ));
    }
    s.run(Until::Committed(BATCHES - 1))
        .map_err(|e| format!("run after restart: {e}"))?;
    let m = model(SEED, BATCHES);
    let sink = FileSink::new(OUT).with_storage(Arc::new(fs.clone()));
    for b in 0..BATCHES {
        let mut got = sink
            .read_batch(b)
            .map_err(|e| format!("sink batch {b}: {e}"))?
            .ok_or_else(|| format!("sink batch {b} missing"))?;
        got.sort();
        if got != lines_of(&m[b as usize]) {
            return Err(format!("sink batch {b} differs from the model"));
        }
    }
    Ok(ahead)
}

#[test]
fn a_crash_at_any_storage_operation_recovers_at_the_last_commit_and_outputs_exactly() {
    let mut violations = Vec::new();
    let (mut at_reported, mut ahead) = (0, 0);
    for every in [1u32, 3] {
        let full = SimFs::new(usize::MAX, Skip::Nothing);
        assert_eq!(crashing_run(&full, every), Some(BATCHES - 1));
        let total = full.ops();
        assert!(total > 50, "the run performs {total} operations");
        for k in 0..total {
            let fs = SimFs::new(k, Skip::Nothing);
            let reported = crashing_run(&fs, every);
            for seed in 0..6u64 {
                match restart_and_check(&fs, every, reported, seed) {
                    Ok(true) => ahead += 1,
                    Ok(false) => at_reported += 1,
                    Err(why) => violations.push(format!(
                        "every {every}, crash after op {k} of {total}, seed {seed}: {why}"
                    )),
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    // Both landings happen: a commit durable before the process saw it succeed, and not.
    assert!(at_reported > 0 && ahead > 0, "{at_reported} / {ahead}");
}
