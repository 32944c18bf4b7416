//! One task: the computation of one partition of one stage, on a pool thread.
//!
//! A [`TaskContext`] travels with the task. Iterators that hit an error mid-stream (a file
//! read, a checkpoint write) record it with [`TaskContext::fail`] and end; the task then
//! reports that error instead of a result. The context also holds the partitions that deep
//! narrow chains materialise every [`SEGMENT`] levels.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::{FxHashMap, FxHashSet};

use super::jobs::{self, ActiveJob, CancelledUnwind};
use crate::accumulator::{self, TaskUpdates};
use crate::checkpoint::JobCheckpoints;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::rdd::iter::{boxed, ArcVecIter};
use crate::rdd::node::{describe, BoxedPartitionIter, Node, SEGMENT};
use crate::shuffle::ShuffleOutputs;

/// Per-task state, shared by the iterators of the task (single-threaded: `Rc`).
#[derive(Clone)]
pub(crate) struct TaskContext {
    inner: Rc<TaskInner>,
}

struct TaskInner {
    ctx: Context,
    job: Arc<ActiveJob>,
    checkpoints: Arc<JobCheckpoints>,
    error: RefCell<Option<Error>>,
    materialized: RefCell<FxHashMap<(usize, usize), Materialized>>,
    /// Outputs of released shuffles this task computed again (`release::compute_released`),
    /// by shuffle id: read before the store, so that one task computes each at most once
    /// even where it cannot store them. Shared with the task's [`TaskContext::child`]ren.
    recomputed: Rc<RefCell<FxHashMap<usize, ShuffleOutputs>>>,
}

struct Materialized {
    /// `Arc`, not `Rc`, only so that the shared `ArcVecIter` can read it.
    data: Arc<dyn Any + Send + Sync>,
    /// Taken by exactly one consumer: hand the data over instead of cloning it.
    single_consumer: bool,
}

impl TaskContext {
    fn new(ctx: &Context, job: Arc<ActiveJob>, checkpoints: Arc<JobCheckpoints>) -> Self {
        TaskContext {
            inner: Rc::new(TaskInner {
                ctx: ctx.clone(),
                job,
                checkpoints,
                error: RefCell::new(None),
                materialized: RefCell::new(FxHashMap::default()),
                recomputed: Rc::default(),
            }),
        }
    }

    /// A context for work a task does on the side, inside its own computation (a released
    /// shuffle's map side, `release::compute_released`): the same job, checkpoints and
    /// recomputed outputs, but its own error slot and its own materialised segments, so
    /// that preparing the side work's partitions never replaces or takes a segment the task
    /// prepared for itself under the same `(rdd, partition)` key.
    pub(crate) fn child(&self) -> Self {
        let inner = &self.inner;
        TaskContext {
            inner: Rc::new(TaskInner {
                ctx: inner.ctx.clone(),
                job: inner.job.clone(),
                checkpoints: inner.checkpoints.clone(),
                error: RefCell::new(None),
                materialized: RefCell::new(FxHashMap::default()),
                recomputed: inner.recomputed.clone(),
            }),
        }
    }

    /// A task context outside any job (the driver reading a checkpoint's placement probe).
    pub(crate) fn detached(ctx: &Context) -> Self {
        TaskContext::new(
            ctx,
            ActiveJob::detached(),
            Arc::new(JobCheckpoints::default()),
        )
    }

    /// The job the task belongs to (for cancellation checks).
    pub(crate) fn job(&self) -> &Arc<ActiveJob> {
        &self.inner.job
    }

    /// The error an iterator recorded, taken out.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.take_error()
    }

    pub(crate) fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// The checkpoint writes the running job owns.
    pub(crate) fn checkpoints(&self) -> &Arc<JobCheckpoints> {
        &self.inner.checkpoints
    }

    /// The outputs of shuffle `id` this task computed again, if it did.
    pub(crate) fn recomputed(&self, id: usize) -> Option<ShuffleOutputs> {
        self.inner.recomputed.borrow().get(&id).cloned()
    }

    /// Keeps the outputs of shuffle `id` this task computed again, for its later reads.
    pub(crate) fn keep_recomputed(&self, id: usize, outputs: ShuffleOutputs) {
        self.inner.recomputed.borrow_mut().insert(id, outputs);
    }

    /// Records an error hit while iterating; the first one wins.
    pub(crate) fn fail(&self, error: Error) {
        let mut slot = self.inner.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.inner.error.borrow().is_some()
    }

    fn take_error(&self) -> Option<Error> {
        self.inner.error.borrow_mut().take()
    }

    pub(crate) fn put_materialized<T: Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        split: usize,
        data: Vec<T>,
    ) {
        let mut m = self.inner.materialized.borrow_mut();
        let single = m
            .get(&(rdd_id, split))
            .map(|e| e.single_consumer)
            .unwrap_or(false);
        m.insert(
            (rdd_id, split),
            Materialized {
                data: Arc::new(data),
                single_consumer: single,
            },
        );
    }

    fn plan_materialized(&self, rdd_id: usize, split: usize, single_consumer: bool) {
        self.inner.materialized.borrow_mut().insert(
            (rdd_id, split),
            Materialized {
                data: Arc::new(()),
                single_consumer,
            },
        );
    }

    pub(crate) fn take_materialized<T: Clone + Send + Sync + 'static>(
        &self,
        rdd_id: usize,
        split: usize,
    ) -> Option<BoxedPartitionIter<T>> {
        let mut m = self.inner.materialized.borrow_mut();
        let entry = m.get(&(rdd_id, split))?;
        if !entry.data.is::<Vec<T>>() {
            return None; // planned, not yet computed
        }
        let data = if entry.single_consumer {
            m.remove(&(rdd_id, split))?.data
        } else {
            entry.data.clone()
        };
        drop(m);
        let data = data.downcast::<Vec<T>>().ok()?;
        // A single consumer owns the Vec: move the elements out instead of cloning them.
        Some(match Arc::try_unwrap(data) {
            Ok(v) => boxed(v.into_iter()),
            Err(shared) => Box::new(ArcVecIter::new(shared)),
        })
    }
}

/// What a task runs on: the stage, the partition, and the job it belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Task<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) stage_id: usize,
    pub(crate) rdd: &'a dyn Node,
    pub(crate) partition: usize,
    pub(crate) job: &'a Arc<ActiveJob>,
    pub(crate) checkpoints: &'a Arc<JobCheckpoints>,
}

/// Runs `body` as a task of stage `stage_id` for `partition` of `rdd`, up to the context's
/// `task_max_failures` attempts: emits task events, materialises deep narrow chains first,
/// turns a panic into [`Error::TaskFailed`] and an error recorded mid-iteration into the
/// task's error. Returns the accumulator updates of the attempt that succeeded.
pub(crate) fn run_task<R>(
    task: Task<'_>,
    body: impl Fn(&TaskContext) -> Result<R>,
) -> (Result<R>, TaskUpdates) {
    let max_attempts = task.ctx.inner.config.task_max_failures;
    let mut attempt = 1;
    loop {
        let (result, updates) = run_attempt(&task, &body);
        match result {
            Ok(r) => return (Ok(r), updates),
            Err(e) if attempt < max_attempts && is_retryable(&e) && !task.job.is_cancelled() => {
                attempt += 1;
            }
            Err(e) => return (Err(e), TaskUpdates::default()),
        }
    }
}

/// Whether another attempt of a task that failed with `e` could succeed.
fn is_retryable(e: &Error) -> bool {
    !matches!(
        e,
        Error::Cancelled { .. } | Error::ContextMismatch { .. } | Error::NoCheckpointDir
    )
}

fn run_attempt<R>(
    task: &Task<'_>,
    body: &impl Fn(&TaskContext) -> Result<R>,
) -> (Result<R>, TaskUpdates) {
    let Task {
        ctx,
        stage_id,
        rdd,
        partition,
        job,
        checkpoints,
    } = *task;
    let start = Instant::now();
    let events = ctx.inner.has_listeners() || crate::trace::wanted(tracing::Level::DEBUG);
    if events {
        ctx.inner.emit(Event::TaskStarted {
            stage_id,
            partition,
        });
    }
    let tc = TaskContext::new(ctx, job.clone(), checkpoints.clone());
    let (outcome, updates) = jobs::in_task_of(ctx.inner.serial, job, || {
        accumulator::collect_updates(|| {
            catch_unwind(AssertUnwindSafe(|| {
                job.check()?;
                prepare_partition(rdd, partition, &tc)?;
                body(&tc)
            }))
        })
    });
    let result = match outcome {
        Ok(r) => match tc.take_error().map_or(r, Err) {
            // A nested job's `Cancelled`, a pipe killed, ...: the cause is the cancellation.
            Err(_) if job.is_cancelled() => Err(job.error()),
            r => r,
        },
        // However a task of a cancelled job failed (a nested job's `Cancelled` unwrapped by
        // the closure, a pipe killed), the cause is the cancellation.
        Err(_) if job.is_cancelled() => Err(job.error()),
        Err(payload) if payload.is::<CancelledUnwind>() => Err(job.error()),
        Err(payload) => Err(Error::TaskFailed {
            rdd_id: rdd.id(),
            rdd: describe(rdd),
            partition,
            message: panic_message(payload.as_ref()),
        }),
    };
    // Materialised segments and any half-written checkpoint partition go with the context.
    drop(catch_unwind(AssertUnwindSafe(move || drop(tc))));
    if events {
        if let Err(e) = &result {
            ctx.inner.emit(Event::TaskFailed {
                stage_id,
                partition,
                error: e.to_string(),
            });
        }
        ctx.inner.emit(Event::TaskEnded {
            stage_id,
            partition,
            succeeded: result.is_ok(),
            elapsed: start.elapsed(),
        });
    }
    (result, updates)
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Prepares partition `split` of `rdd` to be computed in `tc`'s task: a narrow chain
/// deeper than [`SEGMENT`] is materialised segment by segment first, so that computing it
/// never recurses deeper than one segment.
pub(crate) fn prepare_partition(rdd: &dyn Node, split: usize, tc: &TaskContext) -> Result<()> {
    if rdd.pipe_depth() > SEGMENT {
        materialize_segments(rdd, split, tc)?;
    }
    Ok(())
}

/// Computes a deep narrow chain below `(root, split)` in segments, deepest first, so that
/// no computation recurses more than [`SEGMENT`] levels.
///
/// The walk is iterative over `(rdd, partition)` pairs through narrow dependencies, stopping
/// at shuffles, checkpoints and cached blocks. In post-order, each pair gets a height (levels
/// above the nearest materialised pair); a pair whose height reaches `SEGMENT` is chosen for
/// materialisation, and so is any pair with several consumers in a deep graph, so every
/// non-materialised pair is computed at most once. Chosen pairs are then computed parents
/// first, each reading its materialised parents from the task context.
fn materialize_segments(root: &dyn Node, split: usize, tc: &TaskContext) -> Result<()> {
    type Key = (usize, usize);
    struct Visit {
        node: Arc<dyn Node>,
        split: usize,
        parents: Vec<Key>,
    }
    let root_deps = root.dependencies();
    let mut visits: FxHashMap<Key, Visit> = FxHashMap::default();
    let mut consumers: FxHashMap<Key, usize> = FxHashMap::default();
    let mut order: Vec<Key> = Vec::new(); // post-order
    let mut seen: FxHashSet<Key> = FxHashSet::default();
    // (node, split, expanded)
    let mut stack: Vec<(Arc<dyn Node>, usize, bool)> = Vec::new();
    let mut root_parents = Vec::new();
    for dep in &root_deps {
        if let Some(ps) = dep.parent_partitions(split) {
            for p in ps {
                root_parents.push((dep.parent_node(), p));
            }
        }
    }
    for (node, p) in &root_parents {
        *consumers.entry((node.id(), *p)).or_default() += 1;
        stack.push((node.clone(), *p, false));
    }
    while let Some((node, s, expanded)) = stack.pop() {
        let key = (node.id(), s);
        if expanded {
            order.push(key);
            continue;
        }
        if !seen.insert(key) {
            continue;
        }
        let mut parents = Vec::new();
        if !node.block_present(s) {
            for dep in node.dependencies() {
                if let Some(ps) = dep.parent_partitions(s) {
                    let parent = dep.parent_node();
                    for p in ps {
                        parents.push(((parent.id(), p), parent.clone()));
                    }
                }
            }
        }
        stack.push((node.clone(), s, true));
        let keys: Vec<Key> = parents.iter().map(|(k, _)| *k).collect();
        for (k, parent) in parents {
            *consumers.entry(k).or_default() += 1;
            if !seen.contains(&k) {
                stack.push((parent, k.1, false));
            }
        }
        visits.insert(
            key,
            Visit {
                node,
                split: s,
                parents: keys,
            },
        );
    }
    let mut height: FxHashMap<Key, usize> = FxHashMap::default();
    let mut chosen: Vec<Key> = Vec::new();
    for key in &order {
        let visit = &visits[key];
        let h = visit
            .parents
            .iter()
            .map(|p| height.get(p).copied().unwrap_or(0) + 1)
            .max()
            .unwrap_or(0);
        let shared = consumers.get(key).copied().unwrap_or(0) > 1;
        if h >= SEGMENT || (shared && !visit.parents.is_empty()) {
            chosen.push(*key);
            height.insert(*key, 0);
        } else {
            height.insert(*key, h);
        }
    }
    for key in &chosen {
        let single = consumers.get(key).copied().unwrap_or(0) <= 1;
        tc.plan_materialized(key.0, key.1, single);
    }
    for key in chosen {
        let visit = &visits[&key];
        visit.node.materialize(visit.split, tc)?;
        // A segment that failed holds only the records computed before its error, and the
        // segments above it stay unfilled: computing on would run their whole chain by
        // recursion (what segments exist to avoid) for a task that fails anyway.
        if let Some(e) = tc.take_failure() {
            return Err(e);
        }
    }
    Ok(())
}
