//! Jobs, stages and tasks (Spark's `DAGScheduler`, in one process).
//!
//! An action becomes a job on one RDD. The job
//! 1. claims the marked RDDs it will checkpoint (moving them Marked → InProgress),
//! 2. finds the shuffle dependencies whose outputs are missing, walking the lineage with an
//!    explicit stack (Spark's `waitingForVisit`), and runs their shuffle-map stages parents
//!    first — a shuffle whose outputs are still in the store is skipped,
//! 3. runs the result stage: one task per requested partition on the context's pool,
//! 4. completes and commits the claimed checkpoints.
//!
//! After each shuffle-map stage and at the end, the outputs of complete shuffles that only
//! the loss of a stored cache or of another shuffle's outputs could need are released
//! ([`release`]).
//!
//! Every task runs under `catch_unwind`: a panic in a user closure fails the job with
//! `Error::TaskFailed` and leaves the context usable.

mod executor;
mod jobs;
mod release;
mod task;
pub(crate) mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use rustc_hash::FxHashSet;

use crate::block_store::StorageLevel;
use crate::checkpoint::{self, JobCheckpoints};
use crate::context::Context;
use crate::dependency::DepInner;
use crate::error::{Error, Result};
use crate::listener::{Event, StageKind};
use crate::rdd::node::{BoxedPartitionIter, Node, RddNode};
use crate::shuffle::ShuffleDepBase;
use crate::Data;

pub(crate) use executor::{all_gather, Executor, LocalExecutor, StageKey};
pub(crate) use jobs::{ActiveJob, JobRegistry};
pub(crate) use release::compute_released;
pub(crate) use task::{panic_message, TaskContext};
use wire::Wire;

/// Runs `func` on each of `partitions` of `rdd` and returns the results in that order. In
/// a cluster, this process runs the partitions it owns and gets the others' results from
/// their processes.
pub(crate) fn run_job<T, R, F>(
    rdd: &Arc<RddNode<T>>,
    partitions: &[usize],
    func: F,
) -> Result<Vec<R>>
where
    T: Data,
    R: Wire,
    F: Fn(&TaskContext, usize, BoxedPartitionIter<T>) -> Result<R> + Send + Sync,
{
    let ctx = rdd.ctx.clone();
    if let Some(other) = rdd.mixed_with() {
        return Err(Error::ContextMismatch {
            rdd_id: rdd.id,
            this: ctx.inner.describe(),
            other: other.to_string(),
        });
    }
    if ctx.inner.executor.processes() > 1 && crate::accumulator::in_task() {
        // A job inside a task runs on the processes that own that task's partition only:
        // the others would never join its exchanges. Refused before it takes a job id, so
        // that the processes' job counters stay equal.
        return Err(Error::Cluster {
            process: None,
            message: "a job started inside a task (an action in a closure, zip_with_index, a \
                      listener running a job) is not supported in cluster mode yet"
                .into(),
        });
    }
    let job_id = ctx.inner.new_job_id();
    let registered = ctx.inner.jobs.register(ctx.inner.serial, job_id);
    let job = &registered.job;
    let span = tracing::debug_span!("job", context = ctx.inner.serial, job_id, rdd_id = rdd.id);
    let _in_job = span.enter();
    let start = Instant::now();
    ctx.inner.emit(Event::JobStarted {
        job_id,
        rdd_id: rdd.id,
        partitions: partitions.len(),
    });
    let root: Arc<dyn Node> = rdd.clone();
    if ctx.inner.has_listeners() || crate::trace::wanted(tracing::Level::TRACE) {
        ctx.inner.emit(Event::JobLineage {
            job_id,
            nodes: crate::lineage::snapshot(root.clone()),
        });
    }
    let exec = ctx.inner.executor.clone();
    let result = checkpoint::claim_for_job(&ctx, &root, job_id).and_then(|checkpoints| {
        // Tasks catch their own panics; this catches the rest (a `Storage` impl during the
        // commit, say), so that no panic strands a claimed RDD InProgress.
        let result = catch_unwind(AssertUnwindSafe(|| {
            run_parent_stages(&ctx, job, &root, &checkpoints)?;
            let stage_id = ctx.inner.new_stage_id();
            let mine: Vec<usize>;
            let local_partitions = if exec.processes() > 1 {
                mine = partitions
                    .iter()
                    .copied()
                    .filter(|&p| exec.owns(p))
                    .collect();
                &mine
            } else {
                partitions
            };
            executor::move_buckets(&ctx.inner, job_id, stage_id, &root, partitions)?;
            let results = run_stage(
                &ctx,
                Stage {
                    job,
                    stage_id,
                    kind: StageKind::Result,
                    rdd: &root,
                    shuffle_id: None,
                    partitions: local_partitions,
                },
                &checkpoints,
                |tc, p| {
                    let it = rdd.iterator(p, tc)?;
                    func(tc, p, it)
                },
            );
            let results = if exec.processes() > 1 {
                let key = StageKey::result::<R, F>(
                    job_id,
                    stage_id,
                    rdd.id,
                    root.num_partitions(),
                    partitions,
                );
                executor::gather_results(&ctx.inner, key, partitions, results)?
            } else {
                results?
            };
            complete_checkpoints(&ctx, job, &checkpoints)?;
            release::after_job(&ctx, &root);
            Ok(results)
        }))
        .unwrap_or_else(|payload| {
            Err(Error::JobPanicked {
                rdd_id: rdd.id,
                message: panic_message(payload.as_ref()),
            })
        });
        if result.is_err() {
            checkpoints.abort(&ctx);
        }
        result
    });
    if let Err(e) = &result {
        ctx.inner.emit(Event::JobFailed {
            job_id,
            error: e.to_string(),
        });
    }
    ctx.inner.emit(Event::JobEnded {
        job_id,
        succeeded: result.is_ok(),
        elapsed: start.elapsed(),
    });
    result
}

/// Completes and commits the checkpoints the job claimed, parents first: partitions the
/// job's stages did not write (an action that stopped early, `take`) are computed in a
/// `CheckpointCompletion` stage, then the checkpoint commits and swaps its lineage.
fn complete_checkpoints(
    ctx: &Context,
    job: &Arc<ActiveJob>,
    checkpoints: &Arc<JobCheckpoints>,
) -> Result<()> {
    let exec = ctx.inner.executor.as_ref();
    let cluster = exec.processes() > 1;
    // In a cluster: every process agrees on the step (`name`) and its outcome here.
    let agree = |name: &str, rdd_id: usize, local: Result<Vec<u8>>| {
        let key = StageKey::agreement(job.job_id, ctx.inner.new_stage_id(), rdd_id, name, &[]);
        all_gather(exec, key, local)
    };
    for node in checkpoints.nodes() {
        let ops = node.checkpoint_ops();
        // In a cluster, the partitions this process owns; the completion stage runs when
        // any process misses one (every process runs the same stages).
        let missing = ops.missing_partitions();
        // Every process's missing partitions, in a cluster (for the stage's bucket moves).
        let (missing, all_missing) = if cluster {
            let (list, missing) = match missing {
                Ok(m) => (encode_partitions(&m), m),
                Err(e) => (Err(e), Vec::new()),
            };
            // A failure here (this process's own error) fails every process.
            let lists = agree("checkpoint missing", node.id(), list)?;
            let mut all = Vec::new();
            for list in lists {
                all.extend(decode_partitions(&list)?);
            }
            all.sort_unstable();
            (missing, all)
        } else {
            let missing = missing?;
            (missing.clone(), missing)
        };
        if !all_missing.is_empty() {
            run_parent_stages(ctx, job, node, checkpoints)?;
            let stage_id = ctx.inner.new_stage_id();
            executor::move_buckets(&ctx.inner, job.job_id, stage_id, node, &all_missing)?;
            let done = run_stage(
                ctx,
                Stage {
                    job,
                    stage_id,
                    kind: StageKind::CheckpointCompletion,
                    rdd: node,
                    shuffle_id: None,
                    partitions: &missing,
                },
                checkpoints,
                |tc, p| node.compute_and_drop(p, tc),
            );
            if cluster {
                agree("checkpoint completion", node.id(), done.map(|_| Vec::new()))?;
            } else {
                done?;
            }
        }
        ops.commit(job.job_id)?;
        checkpoints.mark_committed(node.id());
    }
    Ok(())
}

/// A list of partitions as exchanged between processes.
fn encode_partitions(partitions: &[usize]) -> Result<Vec<u8>> {
    postcard::to_allocvec(partitions)
        .map_err(|e| Error::Internal(format!("encoding a partition list: {e}")))
}

/// The list [`encode_partitions`] wrote.
fn decode_partitions(bytes: &[u8]) -> Result<Vec<usize>> {
    postcard::from_bytes(bytes).map_err(|e| Error::Cluster {
        process: None,
        message: format!("a partition list another process sent does not read back: {e}"),
    })
}

/// Runs the missing shuffle-map stages below `root`, parents first. After each, the outputs
/// that nothing can read any more without passing a stored cache or a complete shuffle are
/// released ([`release`]).
fn run_parent_stages(
    ctx: &Context,
    job: &Arc<ActiveJob>,
    root: &Arc<dyn Node>,
    checkpoints: &Arc<JobCheckpoints>,
) -> Result<()> {
    for dep in missing_shuffles(ctx, direct_shuffles(root, cached_ok(ctx))) {
        let entry = ctx.inner.shuffles.entry(dep.shuffle_id());
        // One job runs a given map stage; a concurrent job waits here and then reuses it,
        // unless it is cancelled while it waits.
        let running = loop {
            if let Some(guard) = entry
                .running
                .try_lock_for(std::time::Duration::from_millis(5))
            {
                break guard;
            }
            job.check()?;
        };
        if entry.is_usable() {
            continue;
        }
        let parent = dep.parent();
        let exec = ctx.inner.executor.as_ref();
        let maps = parent.num_partitions();
        let partitions: Vec<usize> = (0..maps).filter(|&p| exec.owns(p)).collect();
        let stage_id = ctx.inner.new_stage_id();
        let all: Vec<usize> = (0..maps).collect();
        executor::move_buckets(&ctx.inner, job.job_id, stage_id, &parent, &all)?;
        let outputs = run_stage(
            ctx,
            Stage {
                job,
                stage_id,
                kind: StageKind::ShuffleMap,
                rdd: &parent,
                shuffle_id: Some(dep.shuffle_id()),
                partitions: &partitions,
            },
            checkpoints,
            |tc, p| dep.run_map_task(p, tc),
        );
        let outputs = if exec.processes() > 1 {
            let key = StageKey {
                job_id: job.job_id,
                stage_id,
                rdd_id: parent.id(),
                shuffle_id: Some(dep.shuffle_id()),
                partitions: maps,
                what: StageKey::partitioner_hash(dep.partitioner()),
            };
            executor::exchange_map_outputs(&ctx.inner, key, &dep, maps, outputs)?
        } else {
            outputs?
        };
        entry.set_outputs(outputs);
        // The walk counts references from outside the lineage as handles: this stage's own
        // go first.
        drop((running, parent));
        release::after_map_stage(ctx, dep.as_ref());
    }
    Ok(())
}

/// One stage of a job: the RDD whose partitions its tasks compute, and which of them.
struct Stage<'a> {
    job: &'a Arc<ActiveJob>,
    stage_id: usize,
    kind: StageKind,
    rdd: &'a Arc<dyn Node>,
    /// The shuffle a shuffle-map stage writes.
    shuffle_id: Option<usize>,
    partitions: &'a [usize],
}

/// Runs one stage: a task per partition on the pool, results in partition order.
fn run_stage<R: Send>(
    ctx: &Context,
    stage: Stage<'_>,
    checkpoints: &Arc<JobCheckpoints>,
    body: impl Fn(&TaskContext, usize) -> Result<R> + Send + Sync,
) -> Result<Vec<R>> {
    let Stage {
        job,
        stage_id,
        kind,
        rdd,
        shuffle_id,
        partitions,
    } = stage;
    job.check()?;
    let job_id = job.job_id;
    // Tasks run on the pool's threads, so their spans name this one as their parent.
    let span = tracing::debug_span!("stage", stage_id, ?kind, rdd_id = rdd.id(), ?shuffle_id);
    let _in_stage = span.enter();
    let start = Instant::now();
    ctx.inner.emit(Event::StageStarted {
        job_id,
        stage_id,
        kind,
        rdd_id: rdd.id(),
        shuffle_id,
        tasks: partitions.len(),
    });
    let node: &dyn Node = rdd.as_ref();
    let updates = parking_lot::Mutex::new(Vec::new());
    let results: Result<Vec<R>> = ctx.inner.pool.install(|| {
        partitions
            .par_iter()
            .with_max_len(1)
            .map(|&p| {
                let _in_task =
                    tracing::debug_span!(parent: &span, "task", stage_id, partition = p).entered();
                let task = task::Task {
                    ctx,
                    stage_id,
                    rdd: node,
                    partition: p,
                    job,
                    checkpoints,
                };
                let (result, task_updates) = task::run_task(task, |tc| body(tc, p));
                if result.is_ok() {
                    updates.lock().push((p, task_updates));
                }
                result
            })
            .collect()
    });
    // Spark's rule: every successful task's updates count, even in a stage that failed;
    // merged in partition order so that the result does not depend on thread timing.
    let mut updates = updates.into_inner();
    updates.sort_unstable_by_key(|(p, _)| *p);
    let results =
        if ctx.inner.executor.processes() > 1 && updates.iter().any(|(_, u)| !u.is_empty()) {
            // Each process would see only its own tasks' updates: refused, not summed wrongly.
            results.and(Err(Error::Cluster {
                process: None,
                message: "accumulators are not supported in cluster mode yet: a task of this \
                      stage updated one"
                    .into(),
            }))
        } else {
            for (_, u) in updates {
                u.apply();
            }
            results
        };
    // A job cancelled while its last tasks finished still reports the cancellation.
    let results = results.and_then(|r| job.check().map(|()| r));
    ctx.inner.emit(Event::StageEnded {
        job_id,
        stage_id,
        succeeded: results.is_ok(),
        elapsed: start.elapsed(),
    });
    results
}

/// The shuffle dependencies among `direct` and below them whose outputs are missing, in an
/// order where every shuffle comes after the shuffles its map side reads.
fn missing_shuffles(
    ctx: &Context,
    direct: Vec<Arc<dyn ShuffleDepBase>>,
) -> Vec<Arc<dyn ShuffleDepBase>> {
    let mut order = Vec::new();
    let mut done: FxHashSet<usize> = FxHashSet::default();
    let cached_ok = cached_ok(ctx);
    let mut stack: Vec<(Arc<dyn ShuffleDepBase>, bool)> =
        direct.into_iter().rev().map(|d| (d, false)).collect();
    while let Some((dep, expanded)) = stack.pop() {
        let id = dep.shuffle_id();
        if done.contains(&id) {
            continue;
        }
        if expanded {
            done.insert(id);
            order.push(dep);
            continue;
        }
        if ctx.inner.shuffles.is_complete(id) {
            done.insert(id);
            continue;
        }
        let parents = direct_shuffles(&dep.parent(), cached_ok);
        stack.push((dep, true));
        for p in parents.into_iter().rev() {
            if !done.contains(&p.shuffle_id()) {
                stack.push((p, false));
            }
        }
    }
    order
}

/// Whether planning may stop at fully cached RDDs. In a cluster a process caches only the
/// partitions it computed, so "fully cached" is a per-process view; the processes must
/// agree on the stages, so it is not used there.
fn cached_ok(ctx: &Context) -> bool {
    ctx.inner.executor.processes() == 1
}

/// The shuffle dependencies reachable from `root` through narrow dependencies only (the
/// stage's own inputs). Fully cached RDDs are not looked into when `cached_ok`.
fn direct_shuffles(root: &Arc<dyn Node>, cached_ok: bool) -> Vec<Arc<dyn ShuffleDepBase>> {
    let mut found = Vec::new();
    let mut seen: FxHashSet<usize> = FxHashSet::default();
    let mut stack = vec![root.clone()];
    while let Some(node) = stack.pop() {
        if !seen.insert(node.id()) {
            continue;
        }
        // Only a persisted RDD can be fully cached; asking the block store (a scan under its
        // lock) for every node of a deep lineage would cost O(nodes x blocks).
        if cached_ok
            && node.storage_level() != StorageLevel::None
            && node.num_partitions() > 0
            && node.cached_partitions() == node.num_partitions()
        {
            continue;
        }
        for dep in node.dependencies() {
            match dep.inner {
                DepInner::Shuffle(s) => found.push(s),
                _ => stack.push(dep.parent_node()),
            }
        }
    }
    found
}
