//! A storage operation failing once, anywhere in a running stream (the sink's files, the
//! plans, state checkpoints and commits): the batch fails with the error, nothing of it is
//! committed, and running again (in the same process, or after a restart with
//! `get_or_create`) writes every batch's output exactly once with the model's content.

use crate::common;

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use common::stream::{assert_sink_is_model, WordCount};
use flintlock::checkpoint::{FaultyStorage, LocalFs, Storage, StorageOp};
use flintlock::streaming::{StreamingContext, Until};
use flintlock::Context;

const SEED: u64 = 9;
const BATCHES: u64 = 8;

const KINDS: [StorageOp; 9] = [
    StorageOp::CreateDir,
    StorageOp::Create,
    StorageOp::Write,
    StorageOp::Sync,
    StorageOp::Rename,
    StorageOp::SyncDir,
    StorageOp::Remove,
    StorageOp::Read,
    StorageOp::Lock,
];

fn total_ops(storage: &FaultyStorage) -> usize {
    KINDS.iter().map(|&k| storage.count(k)).sum()
}

/// Where the faulty storage sits.
#[derive(Clone, Copy, Debug)]
enum Under {
    Sink,
    Metadata,
}

fn context(storage: &Arc<FaultyStorage>, under: Under) -> Context {
    let b = Context::builder().threads(2);
    match under {
        Under::Metadata => b.checkpoint_storage(storage.clone()),
        Under::Sink => b,
    }
    .build()
    .unwrap()
}

fn word_count(storage: &Arc<FaultyStorage>, under: Under) -> WordCount {
    let mut wc = WordCount::new(SEED, BATCHES, 3);
    if let Under::Sink = under {
        wc.storage = Some(Arc::new(storage.clone()) as Arc<dyn Storage>);
    }
    wc
}

/// Runs the stream with the `n`-th storage operation failing once; retries (in place, or
/// after a restart when `restart`) until every batch committed. Returns whether the fault
/// fired.
fn trial(dir: &Path, under: Under, n: Option<usize>, restart: bool) -> (bool, usize) {
    let storage = FaultyStorage::new(Arc::new(LocalFs));
    let (ckpt, out) = (dir.join("ckpt"), dir.join("out"));
    let ctx = context(&storage, under);
    let wc = word_count(&storage, under);
    storage.reset_counts();
    if let Some(n) = n {
        storage.fail_any(n, ErrorKind::Other);
    }
    let mut stream = None;
    for attempt in 0..4 {
        let (mut s, _) = match stream.take() {
            Some(s) => (s, Default::default()),
            None => match StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)) {
                Ok(opened) => opened,
                Err(e) => {
                    assert!(e.to_string().contains("injected fault"), "{e}");
                    continue;
                }
            },
        };
        match s.run(Until::Committed(BATCHES - 1)) {
            Ok(()) => break,
            Err(e) => {
                let msg = e.to_string();
                // A failed commit write leaves the process ahead of its folder: the stream
                // refuses to go on and asks for a restart.
                let poisoned = msg.contains("restart it with");
                assert!(
                    msg.contains("injected fault") || poisoned,
                    "attempt {attempt}: {msg}"
                );
                if !restart && !poisoned {
                    stream = Some(s);
                }
            }
        }
    }
    let case = format!("{under:?}, fault at op {n:?}, restart {restart}");
    assert_sink_is_model(&out, SEED, 0..BATCHES, &case);
    (storage.faults_injected() > 0, total_ops(&storage))
}

fn sweep(under: Under) {
    let dir = tempfile::tempdir().unwrap();
    let (_, total) = trial(dir.path(), under, None, false);
    assert!(total > 20, "{under:?}: {total} operations");
    let mut fired = 0;
    for n in 1..=total {
        for restart in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            fired += usize::from(trial(dir.path(), under, Some(n), restart).0);
        }
    }
    // Removals never fail, so not every operation number is a fault.
    assert!(
        fired > total,
        "{under:?}: {fired} faults over {total} operations"
    );
}

#[test]
fn a_failed_sink_operation_fails_its_batch_and_a_retry_writes_it_once() {
    sweep(Under::Sink);
}

#[test]
fn a_failed_metadata_or_state_operation_fails_its_batch_and_a_retry_writes_it_once() {
    sweep(Under::Metadata);
}

#[test]
fn a_failed_listing_never_removes_a_committed_batch() {
    use flintlock::streaming::{Batch, FileSink, Sink};
    let dir = tempfile::tempdir().unwrap();
    // Removals counted below the fault layer (FaultyStorage passes them through).
    let removals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = removals.clone();
    let hooked = common::hooked::Hooked::new(move |op, _| {
        if op == StorageOp::Remove {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let storage = FaultyStorage::new(Arc::new(hooked));
    let removed = || removals.load(std::sync::atomic::Ordering::SeqCst);
    let sink = FileSink::new(dir.path().join("out"))
        .with_storage(Arc::new(storage.clone()) as Arc<dyn Storage>);
    let ctx = common::ctx();
    let rdd = ctx.parallelize(vec!["a".to_string(), "b".to_string()], 2);
    let batch = Batch {
        id: 5,
        time: std::time::Duration::from_secs(5),
    };
    sink.write(batch, &rdd).unwrap();
    let files = |d: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let committed = files(&sink.batch_dir(5));
    let before = removed();
    // A replay of the committed batch whose listing of the batch's folder fails once (a
    // full descriptor table, an I/O error): an error, and the batch stays as committed.
    storage.reset_counts();
    storage.fail_nth(StorageOp::Read, 1, ErrorKind::Other);
    let err = sink.write(batch, &rdd).unwrap_err();
    assert!(err.to_string().contains("list"), "{err}");
    assert_eq!(removed(), before, "nothing removed");
    assert_eq!(files(&sink.batch_dir(5)), committed);
    // Retried, it is the idempotent no-op it always was.
    storage.clear();
    sink.write(batch, &rdd).unwrap();
    assert_eq!(removed(), before, "nothing removed");
    assert_eq!(
        Sink::<String>::last_committed(&sink).unwrap(),
        Some(5),
        "still committed"
    );
    assert_eq!(sink.read_batch(5).unwrap().unwrap(), vec!["a", "b"]);
}
