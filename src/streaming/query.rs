//! Offline queries of a stream's checkpoint folder: the state of a stateful operator at a
//! committed batch, as an RDD, without running (or stopping) the stream.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::meta::StreamDir;
use super::BatchId;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{Data, Key, Rdd};

/// The state of stateful operator `operator` (the name of an `update_state_by_key`,
/// `map_with_state` or `reduce_by_key_and_window_inv` operator) after batch
/// `batch`, read from the stream's checkpoint folder `dir` as an `Rdd<(K, S)>`: the state
/// checkpoint a commit of the stream names for that batch. Retention keeps only each
/// operator's newest committed state checkpoint (and, until it is dropped, one an RDD of
/// this process still reads), so `batch` must be one of those: [`state_batches`] lists
/// them.
///
/// The folder is only read, never locked or changed, so this works while the stream runs
/// in another process. A state checkpoint that the running stream's retention removes
/// while it is read makes the read fail with an error naming the file, never return other
/// data.
///
/// ```
/// use std::time::Duration;
/// use flintlock::streaming::{self, ManualClock, RddQueue, StreamingContext, Until};
/// use flintlock::Context;
/// # let dir = tempfile::tempdir().unwrap();
/// # let ckpt = dir.path().join("ckpt");
/// let ctx = Context::new();
/// let queue = RddQueue::from_rdds((0..4u64).map(|b| ctx.parallelize(vec![("k", b)], 1)));
/// let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
/// ssc.queue_stream("in", queue)
///     .map(|(k, v)| (k.to_string(), v))
///     .update_state_by_key("sums", |_, new: Vec<u64>, old: Option<u64>| {
///         Some(old.unwrap_or(0) + new.iter().sum::<u64>())
///     })
///     .checkpoint_every(2)
///     .foreach_rdd("out", |_, _| Ok(()));
/// ssc.checkpoint(&ckpt)?;
/// ssc.run(Until::Batches(4))?;
/// assert_eq!(streaming::state_batches(&ctx, &ckpt, "sums")?, vec![3]);
/// let state = streaming::open_state::<String, u64>(&ctx, &ckpt, "sums", 3)?;
/// assert_eq!(state.collect()?, vec![("k".to_string(), 6)]);
/// # Ok::<(), flintlock::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] when `dir` is not a streaming folder or `batch` has no
/// retained committed state of `operator` (the message lists those there are);
/// [`Error::TypeMismatch`] when `(K, S)` is not the state's type; I/O and corruption
/// errors naming the file.
pub fn open_state<K, S>(
    ctx: &Context,
    dir: impl AsRef<Path>,
    operator: &str,
    batch: BatchId,
) -> Result<Rdd<(K, S)>>
where
    K: Key + Serialize + DeserializeOwned,
    S: Data + Serialize + DeserializeOwned,
{
    let meta = StreamDir::open_read_only(dir.as_ref(), ctx.inner.config.storage.clone())?;
    let states = committed_states(&meta, operator)?;
    match states.iter().find(|s| s.0 == batch) {
        Some((_, path, graph)) => {
            let path = meta.path().join(path);
            let kind = meta
                .read_graph(graph)?
                .nodes
                .into_iter()
                .find(|n| n.name.as_deref() == Some(operator))
                .map(|n| n.kind);
            if kind.as_deref() == Some("map_with_state") {
                // Its checkpoint records each key's last update beside its state.
                let entries = ctx.open_checkpoint::<(K, (S, BatchId))>(path)?;
                Ok(entries.map_values(|(s, _)| s))
            } else {
                ctx.open_checkpoint::<(K, S)>(path)
            }
        }
        None => Err(Error::InvalidArgument(format!(
            "stream {}: operator `{operator}` has no retained committed state of batch \
             {batch} (retained: {})",
            meta.path().display(),
            list(&states)
        ))),
    }
}

/// The batches whose state of stateful operator `operator` the stream's checkpoint folder
/// `dir` retains (committed), ascending: the batches [`open_state`] can read.
///
/// # Errors
/// [`Error::InvalidArgument`] when `dir` is not a streaming folder or no commit names
/// `operator`; I/O and corruption errors naming the file.
pub fn state_batches(ctx: &Context, dir: impl AsRef<Path>, operator: &str) -> Result<Vec<BatchId>> {
    let meta = StreamDir::open_read_only(dir.as_ref(), ctx.inner.config.storage.clone())?;
    Ok(committed_states(&meta, operator)?
        .into_iter()
        .map(|(b, _, _)| b)
        .collect())
}

/// Each retained commit's state checkpoint of `operator`: (batch, folder relative to the
/// stream folder, the commit's graph fingerprint), ascending and without repeats, those
/// whose folder still exists.
fn committed_states(meta: &StreamDir, operator: &str) -> Result<Vec<(BatchId, String, String)>> {
    let (_, commits) = meta.log()?;
    let mut out: Vec<(BatchId, String, String)> = Vec::new();
    let mut known = false;
    for c in commits {
        let commit = meta.read_commit(c)?;
        known |= commit.states.contains_key(operator);
        if let Some(r) = commit.states.get(operator) {
            let exists = meta.storage().list(&meta.path().join(&r.path)).is_ok();
            if exists && !out.iter().any(|s| s.0 == r.batch) {
                out.push((r.batch, r.path.clone(), commit.graph.clone()));
            }
        }
    }
    if !known {
        return Err(Error::InvalidArgument(format!(
            "stream {}: no commit names a state of operator `{operator}` (it has none \
             checkpointed yet, or no such operator)",
            meta.path().display()
        )));
    }
    out.sort();
    Ok(out)
}

fn list(states: &[(BatchId, String, String)]) -> String {
    if states.is_empty() {
        return "none".to_string();
    }
    states
        .iter()
        .map(|s| s.0.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
