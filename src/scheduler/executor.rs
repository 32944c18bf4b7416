//! The executor seam: which process runs a stage's tasks, and how a stage's outputs reach
//! the processes that need them.
//!
//! Tasks always run on the context's rayon pool. An [`Executor`] says which of a stage's
//! partitions this process runs ([`Executor::owns`]) and moves bytes between processes
//! ([`Executor::exchange`]). [`LocalExecutor`] is one process that owns everything: the
//! scheduler then never encodes a record, and runs exactly as it did before the seam. The
//! cluster's executor (feature `cluster`) is timely-dataflow's exchange, see
//! `crate::cluster`.
//!
//! What crosses processes, in cluster mode (every payload starts with the stage's key, so
//! processes that are not running the same stage fail instead of mixing data):
//! - after a **result stage**, every process sends every process the results of its
//!   partitions (an all-gather), so every driver gets every partition's result;
//! - after a **shuffle-map stage**, every process sends each process the buckets of its
//!   map outputs for that process's reduce partitions;
//! - before a stage whose tasks read a shuffled partition another process owns (a `union`,
//!   `coalesce` or `cartesian` after a shuffle), those buckets, from their owners
//!   ([`move_buckets`]);
//! - with each, whether the stage failed here and why: a stage that failed anywhere fails
//!   everywhere;
//! - agreements that are not a stage's data ([`all_gather`]): the app id at `build()`, the
//!   opening of the checkpoint directory, a checkpoint's write ids, adoption, missing
//!   partitions, part metadata and manifest, and `Checkpointer::latest`'s answer.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::wire::{self, Wire};
use crate::context::ContextInner;
use crate::dependency::DepInner;
use crate::error::{Error, Result};
use crate::rdd::node::Node;
use crate::shuffle::{MapOutput, Part, ShuffleDepBase};

/// Runs stages across one or more processes (see the module docs).
pub(crate) trait Executor: Send + Sync {
    /// This process's index.
    fn process(&self) -> usize;
    /// How many processes run the program.
    fn processes(&self) -> usize;
    /// Whether this process runs partition `p`'s task: partition `p` belongs to process
    /// `p mod processes`.
    fn owns(&self, p: usize) -> bool {
        self.owner(p) == self.process()
    }
    /// The process partition `p` belongs to.
    fn owner(&self, p: usize) -> usize {
        p % self.processes()
    }
    /// Sends `outgoing[q]` to process `q` and returns what each process sent this one, by
    /// source.
    fn exchange(&self, outgoing: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>>;
    /// Ends the cluster for this process after an error found in what was exchanged: its
    /// later exchanges fail with `why`, and the other processes' exchanges with it fail.
    fn fail(&self, why: &str);
}

/// One process: owns every partition, and exchanges with itself.
pub(crate) struct LocalExecutor;

impl Executor for LocalExecutor {
    fn process(&self) -> usize {
        0
    }
    fn processes(&self) -> usize {
        1
    }
    fn owns(&self, _: usize) -> bool {
        true
    }
    fn owner(&self, _: usize) -> usize {
        0
    }
    fn exchange(&self, outgoing: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        Ok(outgoing)
    }
    fn fail(&self, _: &str) {}
}

#[cfg(feature = "cluster")]
impl Executor for crate::cluster::Transport {
    fn process(&self) -> usize {
        crate::cluster::Transport::process(self)
    }
    fn processes(&self) -> usize {
        crate::cluster::Transport::processes(self)
    }
    fn exchange(&self, outgoing: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        crate::cluster::Transport::exchange(self, outgoing)
    }
    fn fail(&self, why: &str) {
        crate::cluster::Transport::fail(self, why);
    }
}

/// What identifies one stage of one job on every process: the processes of a cluster must
/// be running the same stage, over the same partitions, producing the same kind of result,
/// whenever they exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StageKey {
    pub(crate) job_id: usize,
    pub(crate) stage_id: usize,
    pub(crate) rdd_id: usize,
    pub(crate) shuffle_id: Option<usize>,
    /// The stage RDD's partition count.
    pub(crate) partitions: usize,
    /// A hash of the partitions the stage computes, and of what its tasks do (for an action,
    /// the names of the result type and of the function the action runs per partition, so
    /// that `min` on one process and `max` on another differ; for a shuffle, the whole
    /// partitioner: kind, partition count, range bounds and direction, custom parameters).
    pub(crate) what: u64,
}

impl StageKey {
    /// The key of a result stage computing `requested` of `partitions` with the function
    /// `F`, whose results are `R`.
    pub(crate) fn result<R, F>(
        job_id: usize,
        stage_id: usize,
        rdd_id: usize,
        partitions: usize,
        requested: &[usize],
    ) -> StageKey {
        let mut what = crate::checkpoint::format::type_fingerprint(&format!(
            "{} {}",
            std::any::type_name::<R>(),
            std::any::type_name::<F>()
        ));
        for &p in requested {
            what = (what ^ p as u64).wrapping_mul(0x0100_0000_01b3);
        }
        StageKey {
            job_id,
            stage_id,
            rdd_id,
            shuffle_id: None,
            partitions,
            what,
        }
    }

    /// The key of an agreement step of job `job_id` that is not a stage (see
    /// [`all_gather`]): `step` names it, `detail` hashes what every process must agree on
    /// beforehand (the RDD ids it claims, say).
    pub(crate) fn agreement(
        job_id: usize,
        stage_id: usize,
        rdd_id: usize,
        step: &str,
        detail: &[u64],
    ) -> StageKey {
        let mut what = crate::checkpoint::format::type_fingerprint(step);
        for &d in detail {
            what = (what ^ d).wrapping_mul(0x0100_0000_01b3);
        }
        StageKey {
            job_id,
            stage_id,
            rdd_id,
            shuffle_id: None,
            partitions: detail.len(),
            what,
        }
    }

    /// The `what` of a shuffle into `partitioner`: a hash of its serde form (the form a
    /// checkpoint manifest records), which holds everything that places a key.
    pub(crate) fn partitioner_hash(partitioner: &crate::Partitioner) -> u64 {
        let form =
            serde_json::to_string(partitioner).unwrap_or_else(|_| format!("{partitioner:?}"));
        crate::checkpoint::format::type_fingerprint(&form)
    }

    fn put(&self, out: &mut Vec<u8>) {
        for v in [
            self.job_id as u64,
            self.stage_id as u64,
            self.rdd_id as u64,
            self.shuffle_id.map_or(u64::MAX, |s| s as u64),
            self.partitions as u64,
            self.what,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A result or bucket received from process `source` that does not read back: the cluster
/// stops (its processes no longer agree on what was computed), and this process's action
/// fails saying why.
fn unreadable(exec: &dyn Executor, source: usize, e: Error) -> Error {
    let message = format!(
        "what process {source} sent does not read back here: {e}. A type whose Deserialize \
         rejects what its Serialize wrote does this; so do processes of different builds"
    );
    exec.fail(&message);
    Error::Cluster {
        process: Some(source),
        message,
    }
}

/// Checks that every byte received from the other processes was read: a body with bytes
/// left over was written for another stage or another partition list. (This process's own
/// results are used as they are, not read back.)
fn all_read(exec: &dyn Executor, bodies: &[&[u8]]) -> Result<()> {
    let me = exec.process();
    match (0..bodies.len()).find(|&p| p != me && !bodies[p].is_empty()) {
        None => Ok(()),
        Some(source) => Err(unreadable(
            exec,
            source,
            Error::Internal(format!("{} bytes were left unread", bodies[source].len())),
        )),
    }
}

/// The header of a payload: the stage key and the stage's outcome on its sender.
fn put_header(key: &StageKey, failed: Option<&str>, out: &mut Vec<u8>) {
    key.put(out);
    match failed {
        None => out.push(0),
        Some(message) => {
            out.push(1);
            out.extend_from_slice(&(message.len() as u64).to_le_bytes());
            out.extend_from_slice(message.as_bytes());
        }
    }
}

/// One payload per process: the header (the stage's key and its outcome here) and, when
/// the stage succeeded here, that process's body. Returns this process's error too.
fn with_headers(
    key: &StageKey,
    n: usize,
    bodies: Result<Vec<Vec<u8>>>,
) -> (Vec<Vec<u8>>, Option<Error>) {
    match bodies {
        Ok(bodies) => {
            let payloads = bodies
                .into_iter()
                .map(|body| {
                    let mut payload = Vec::with_capacity(body.len() + 64);
                    put_header(key, None, &mut payload);
                    payload.extend_from_slice(&body);
                    payload
                })
                .collect();
            (payloads, None)
        }
        Err(e) => {
            let mut payload = Vec::new();
            put_header(key, Some(&e.to_string()), &mut payload);
            (vec![payload; n], Some(e))
        }
    }
}

/// Reads every source's header: the bodies, or the error of the first process whose stage
/// failed (this process's own error when it failed here), or the divergence.
fn read_headers<'a>(
    exec: &dyn Executor,
    key: &StageKey,
    mine: Option<Error>,
    received: &'a [Vec<u8>],
) -> Result<Vec<&'a [u8]>> {
    let me = exec.process();
    let mut own = Vec::new();
    key.put(&mut own);
    let mut bodies = Vec::with_capacity(received.len());
    let mut failed: Option<(usize, String)> = None;
    for (source, bytes) in received.iter().enumerate() {
        let diverged = || {
            let message = format!(
                "process {source} is not running the stage process {me} runs ({key:?}): the \
                 processes' programs took different paths (every process must run the same \
                 jobs in the same order, from one thread)"
            );
            // Programs on different paths cannot be trusted to meet again.
            exec.fail(&message);
            Error::Cluster {
                process: Some(source),
                message,
            }
        };
        let Some(rest) = bytes.strip_prefix(own.as_slice()) else {
            return Err(diverged());
        };
        match rest.split_first() {
            Some((0, body)) => bodies.push(body),
            Some((1, rest)) if rest.len() >= 8 => {
                let (len, text) = rest.split_at(8);
                let len = u64::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
                let message = String::from_utf8_lossy(&text[..len.min(text.len())]);
                if failed.is_none() {
                    failed = Some((source, message.into_owned()));
                }
                bodies.push(&[]);
            }
            _ => return Err(diverged()),
        }
    }
    if let Some(e) = mine {
        return Err(e);
    }
    match failed {
        Some((process, message)) => Err(Error::Cluster {
            process: Some(process),
            message: format!("the stage failed on process {process}: {message}"),
        }),
        None => Ok(bodies),
    }
}

/// [`with_headers`] for one body that goes to all `n` processes: built once, then copied.
fn to_every_process(
    key: &StageKey,
    n: usize,
    body: Result<Vec<u8>>,
) -> (Vec<Vec<u8>>, Option<Error>) {
    let (mut payloads, mine) = with_headers(key, 1, body.map(|b| vec![b]));
    let payload = payloads.pop().unwrap_or_default();
    (vec![payload; n], mine)
}

/// Every process sends every process `local` (its bytes, or why it failed here): returns
/// the bytes each process sent, by source, or the failure every process then sees (this
/// process's own error when it failed here, else the first failed process's). The
/// agreement step of what is not a stage's data: which checkpoints a job writes, their
/// parts, their commit.
pub(crate) fn all_gather(
    exec: &dyn Executor,
    key: StageKey,
    local: Result<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    let (payloads, mine) = to_every_process(&key, exec.processes(), local);
    let received = exec.exchange(payloads)?;
    let bodies = read_headers(exec, &key, mine, &received)?;
    Ok(bodies.into_iter().map(<[u8]>::to_vec).collect())
}

/// The shuffled partitions a stage's tasks read on a process that does not own them: for
/// each of `partitions` of `root` (every process's, so every process computes the same
/// plan), the `(shuffle, reduce partition)` pairs its task reads through narrow
/// dependencies (a `union`, `coalesce` or `cartesian` after a shuffle), as
/// `(reading process, shuffle id, reduce partition)` where the reading process is not the
/// partition's owner; and the shuffles, by id.
fn remote_reads(
    exec: &dyn Executor,
    root: &Arc<dyn Node>,
    partitions: &[usize],
) -> (
    BTreeSet<(usize, usize, usize)>,
    FxHashMap<usize, Arc<dyn ShuffleDepBase>>,
) {
    let mut reads = BTreeSet::new();
    let mut shuffles: FxHashMap<usize, Arc<dyn ShuffleDepBase>> = FxHashMap::default();
    for &p in partitions {
        let reader = exec.owner(p);
        let mut seen: FxHashSet<(usize, usize)> = FxHashSet::default();
        let mut stack: Vec<(Arc<dyn Node>, usize)> = vec![(root.clone(), p)];
        while let Some((node, split)) = stack.pop() {
            if !seen.insert((node.id(), split)) {
                continue;
            }
            for dep in node.dependencies() {
                match dep.inner {
                    DepInner::OneToOne(parent) => stack.push((parent, split)),
                    DepInner::Range {
                        parent,
                        in_start,
                        out_start,
                        len,
                    } => {
                        if (out_start..out_start + len).contains(&split) {
                            stack.push((parent, in_start + split - out_start));
                        }
                    }
                    DepInner::Narrow { parent, parents_of } => {
                        for q in parents_of(split) {
                            stack.push((parent.clone(), q));
                        }
                    }
                    DepInner::Shuffle(s) => {
                        if exec.owner(split) != reader {
                            reads.insert((reader, s.shuffle_id(), split));
                            shuffles.insert(s.shuffle_id(), s);
                        }
                    }
                }
            }
        }
    }
    (reads, shuffles)
}

/// Before a stage computing `partitions` of `root` (every process's partitions): sends the
/// shuffled partitions its tasks read on processes that do not own them (see
/// [`remote_reads`]) from their owners, so that every task finds its input here. Nothing
/// is exchanged when no task reads another process's partition (the plan is the same on
/// every process, so all skip together); in one process, nothing is done at all.
pub(crate) fn move_buckets(
    ctx: &ContextInner,
    job_id: usize,
    stage_id: usize,
    root: &Arc<dyn Node>,
    partitions: &[usize],
) -> Result<()> {
    let exec = ctx.executor.as_ref();
    if exec.processes() == 1 {
        return Ok(());
    }
    let (reads, shuffles) = remote_reads(exec, root, partitions);
    if reads.is_empty() {
        return Ok(());
    }
    let (me, n) = (exec.process(), exec.processes());
    let plan: Vec<u64> = reads
        .iter()
        .flat_map(|&(to, s, q)| [to as u64, s as u64, q as u64])
        .collect();
    let key = StageKey::agreement(job_id, stage_id, root.id(), "move buckets", &plan);
    let outputs = |s: usize| {
        ctx.shuffles
            .outputs(s)
            .ok_or_else(|| Error::Internal(format!("shuffle {s} has no outputs to move")))
    };
    let encoded = (|| {
        let mut bodies = vec![Vec::new(); n];
        for &(to, s, q) in reads.iter().filter(|(_, _, q)| exec.owner(*q) == me) {
            for output in outputs(s)?.iter() {
                shuffles[&s].encode_bucket(output, q, &mut bodies[to])?;
            }
        }
        Ok(bodies)
    })();
    let (payloads, mine) = with_headers(&key, n, encoded);
    let received = exec.exchange(payloads)?;
    let mut bodies = read_headers(exec, &key, mine, &received)?;
    for &(_, s, q) in reads.iter().filter(|(to, _, _)| *to == me) {
        let source = exec.owner(q);
        for output in outputs(s)?.iter() {
            let bytes = wire::split_records(&mut bodies[source])
                .map_err(|e| unreadable(exec, source, e))?;
            shuffles[&s]
                .install_bucket(output, q, bytes)
                .map_err(|e| unreadable(exec, source, e))?;
        }
    }
    all_read(exec, &bodies)
}

/// Completes a result stage: every process gets the results of `partitions` (this
/// process's `local` ones, for the partitions it owns, and every other process's), in the
/// order of `partitions`.
pub(crate) fn gather_results<R: Wire>(
    ctx: &ContextInner,
    key: StageKey,
    partitions: &[usize],
    local: Result<Vec<R>>,
) -> Result<Vec<R>> {
    let exec = ctx.executor.as_ref();
    let me = exec.process();
    let (results, body) = match local.and_then(|results| {
        let mut body = Vec::new();
        for r in &results {
            r.put(ctx, &mut body)?;
        }
        Ok((results, body))
    }) {
        Ok((results, body)) => (Some(results), Ok(body)),
        Err(e) => (None, Err(e)),
    };
    let (payloads, mine) = to_every_process(&key, exec.processes(), body);
    let received = exec.exchange(payloads)?;
    let mut bodies = read_headers(exec, &key, mine, &received)?;
    let mut own = results.unwrap_or_default().into_iter();
    let mut out = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let source = exec.owner(p);
        if source == me {
            out.push(
                own.next()
                    .ok_or_else(|| Error::Internal(format!("no local result for partition {p}")))?,
            );
        } else {
            out.push(R::take(ctx, &mut bodies[source]).map_err(|e| unreadable(exec, source, e))?);
        }
    }
    all_read(exec, &bodies)?;
    Ok(out)
}

/// Completes a shuffle-map stage: sends each process the buckets of this process's map
/// outputs (`local`, for the map partitions it owns, in order) for the reduce partitions it
/// owns, receives the buckets of this process's reduce partitions from every other map
/// output, and returns one map output per map partition of the shuffle, each holding only
/// this process's buckets.
pub(crate) fn exchange_map_outputs(
    ctx: &ContextInner,
    key: StageKey,
    dep: &Arc<dyn ShuffleDepBase>,
    maps: usize,
    local: Result<Vec<MapOutput>>,
) -> Result<Vec<MapOutput>> {
    let exec = ctx.executor.as_ref();
    let (me, n) = (exec.process(), exec.processes());
    let reduces = dep.partitioner().num_partitions();
    let encoded = local.and_then(|outputs| {
        let mut bodies = vec![Vec::new(); n];
        for output in &outputs {
            for q in 0..reduces {
                let target = exec.owner(q);
                if target != me {
                    dep.encode_bucket(output, q, &mut bodies[target])?;
                }
            }
        }
        Ok((outputs, bodies))
    });
    let (outputs, bodies) = match encoded {
        Ok((outputs, bodies)) => (Some(outputs), Ok(bodies)),
        Err(e) => (None, Err(e)),
    };
    let (payloads, mine) = with_headers(&key, n, bodies);
    let received = exec.exchange(payloads)?;
    let mut bodies = read_headers(exec, &key, mine, &received)?;
    let mut own = outputs.unwrap_or_default().into_iter();
    let mut all = Vec::with_capacity(maps);
    for m in 0..maps {
        let source = exec.owner(m);
        let local =
            if source == me {
                Some(own.next().ok_or_else(|| {
                    Error::Internal(format!("no local output for map partition {m}"))
                })?)
            } else {
                None
            };
        let mut parts = Vec::with_capacity(reduces);
        for q in 0..reduces {
            let owner = exec.owner(q);
            parts.push(if owner != me {
                Part::Elsewhere(owner)
            } else if source == me {
                Part::Local
            } else {
                Part::Bytes(
                    wire::split_records(&mut bodies[source])
                        .map_err(|e| unreadable(exec, source, e))?,
                )
            });
        }
        let output = dep
            .assemble_output(local.as_ref(), parts)
            .map_err(|e| unreadable(exec, source, e))?;
        all.push(output);
    }
    all_read(exec, &bodies)?;
    Ok(all)
}
