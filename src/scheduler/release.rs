//! Releasing shuffle outputs that only recovery could read.
//!
//! Spark keeps a shuffle's files while its dependency lives, so that a lost block or a
//! later job can skip the map stage. flintlock keeps the outputs in memory, where that
//! promise costs most: PageRank's `links` (`edges.distinct().group_by_key()...cache()`)
//! held both of its shuffles, 33 MB for a million edges, for the whole run, once every
//! partition was cached and nothing could read them but the recovery of a lost block.
//!
//! A part of the lineage is walked and split in two:
//! - **reachable**: the job's RDD, every RDD some handle outside the walked part holds (a
//!   user's `Rdd`, another lineage, a claimed checkpoint: counted from `Arc` strong counts,
//!   what is not an edge of the walked part is a handle), and what they compute through.
//!   Reachability stops at a *barrier*: an RDD persisted in memory with every partition
//!   stored (its partitions are read from the store, not computed), or a shuffle whose
//!   outputs are complete (its reduce side reads them);
//! - everything else, which only the loss of a barrier's data could make anyone compute.
//!
//! A complete shuffle read by no reachable RDD (a barrier reads its cache, not its
//! shuffle) is released: its outputs are dropped, its slot stays. After a shuffle-map
//! stage the part below the new barrier is walked (down to the next complete shuffles); at
//! the end of a job, the job's lineage (down to shuffles released before). A later job that
//! needs released outputs (after an `unpersist`, say) runs their map stage again, as for
//! any missing shuffle; a task that meets them released mid-job (a race with `unpersist`
//! or with a job that started during the walk) computes them itself ([`compute_released`]).
//! Recomputation gives the same records where the lineage is deterministic, which is what
//! recovery from lineage always assumes.
//!
//! Not done when another job runs (its plan may count on outputs this walk cannot see
//! being read), in a cluster (processes must agree on their stages), or under
//! [`ContextBuilder::memory_limit`](crate::ContextBuilder::memory_limit): there outputs
//! spill instead, and cached blocks can be evicted, which would turn a release into a
//! recomputation of the lineage below them. Only memory caches are barriers: a block on
//! disk can be found damaged and recomputed.

use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{missing_shuffles, task, TaskContext};
use crate::block_store::StorageLevel;
use crate::context::Context;
use crate::dependency::DepInner;
use crate::error::{Error, Result};
use crate::rdd::node::Node;
use crate::shuffle::{MapOutput, ShuffleDepBase, ShuffleOutputs};

/// One RDD of the walked part of a lineage.
struct Seen {
    /// The walk's one reference to it.
    node: Arc<dyn Node>,
    /// Edges into it: from RDDs of the walked part, and the one a walk starts below.
    in_edges: usize,
    /// Its parents' ids, with the shuffle id where the edge is a shuffle.
    parents: Vec<(usize, Option<usize>)>,
}

/// After the map stage of `dep`: releases what only `dep`'s outputs, now complete, and
/// other barriers stand above.
pub(crate) fn after_map_stage(ctx: &Context, dep: &dyn ShuffleDepBase) {
    if releasing(ctx) {
        release(ctx, Start::Below(dep.parent()));
    }
}

/// At the end of a job on `root`.
pub(crate) fn after_job(ctx: &Context, root: &Arc<dyn Node>) {
    if releasing(ctx) {
        release(ctx, Start::Root(root.clone()));
    }
}

/// Where a walk starts.
enum Start {
    /// A job's RDD: reachable, and the walk goes below complete shuffles (down to released
    /// ones), where handles dropped since may have left outputs only recovery reads.
    Root(Arc<dyn Node>),
    /// The map side of a shuffle that just completed: held by that shuffle's edge, and the
    /// walk stops at complete shuffles (what lies below them was walked when they completed).
    Below(Arc<dyn Node>),
}

/// Whether releasing applies now: one process, no memory limit, no other job running, and
/// some shuffle outputs held.
fn releasing(ctx: &Context) -> bool {
    let inner = &ctx.inner;
    inner.executor.processes() == 1
        && inner.memory.limit().is_none()
        && inner.jobs.running().len() <= 1
        && inner.shuffles.held() > 0
}

fn release(ctx: &Context, start: Start) {
    let store = &ctx.inner.shuffles;
    let (first, root) = match start {
        Start::Root(node) => (node, true),
        Start::Below(node) => (node, false),
    };
    let first_id = first.id();
    let lineage = walk(first, usize::from(!root), |shuffle| {
        !store.was_released(shuffle) && (root || !store.is_complete(shuffle))
    });
    let is_barrier = |node: &Arc<dyn Node>| {
        node.storage_level() == StorageLevel::MemoryOnly
            && node.num_partitions() > 0
            && node.cached_partitions() == node.num_partitions()
    };
    // What some handle holds: references beyond the walked edges and the walk's own.
    let mut stack: Vec<usize> = lineage
        .iter()
        .filter(|(_, s)| Arc::strong_count(&s.node) > s.in_edges + 1)
        .map(|(&id, _)| id)
        .collect();
    if root {
        stack.push(first_id);
    }
    // The reachable RDDs that compute their partitions (barriers read theirs).
    let mut computing: FxHashSet<usize> = FxHashSet::default();
    let mut visited: FxHashSet<usize> = FxHashSet::default();
    while let Some(id) = stack.pop() {
        if !visited.insert(id) {
            continue;
        }
        let seen = &lineage[&id];
        if is_barrier(&seen.node) {
            continue;
        }
        computing.insert(id);
        for &(parent, shuffle) in &seen.parents {
            if shuffle.is_some_and(|s| store.is_complete(s)) || !lineage.contains_key(&parent) {
                continue;
            }
            stack.push(parent);
        }
    }
    // A shuffle is read by the RDDs whose edge it is: kept if any of them computes.
    let mut kept: FxHashSet<usize> = FxHashSet::default();
    let mut candidates: Vec<usize> = Vec::new();
    for (id, seen) in &lineage {
        for &(_, shuffle) in &seen.parents {
            let Some(shuffle) = shuffle else { continue };
            if computing.contains(id) {
                kept.insert(shuffle);
            } else {
                candidates.push(shuffle);
            }
        }
    }
    drop(lineage);
    candidates.sort_unstable();
    candidates.dedup();
    candidates.retain(|s| !kept.contains(s) && store.release(*s));
    if !candidates.is_empty() {
        tracing::debug!(
            shuffles = ?candidates,
            "released shuffle outputs that only the loss of a stored cache or of another \
             shuffle's outputs could need"
        );
    }
}

/// The lineage below `first` (entered with `in_edges` edges from outside), through narrow
/// edges and the shuffle edges `descend` accepts, holding exactly one reference to each
/// RDD: `Arc::strong_count` minus the edges into an RDD and this reference counts the
/// handles that hold it from outside. An RDD across a shuffle edge not taken is not in the
/// map (the edge is still listed with its owner).
fn walk(
    first: Arc<dyn Node>,
    in_edges: usize,
    descend: impl Fn(usize) -> bool,
) -> FxHashMap<usize, Seen> {
    let mut lineage: FxHashMap<usize, Seen> = FxHashMap::default();
    let first_id = first.id();
    lineage.insert(
        first_id,
        Seen {
            node: first,
            in_edges,
            parents: Vec::new(),
        },
    );
    let mut stack = vec![first_id];
    while let Some(id) = stack.pop() {
        let dependencies = lineage[&id].node.dependencies();
        let mut parents = Vec::with_capacity(dependencies.len());
        for dep in dependencies {
            let shuffle = match &dep.inner {
                DepInner::Shuffle(s) => Some(s.shuffle_id()),
                _ => None,
            };
            let parent = dep.parent_node();
            let parent_id = parent.id();
            parents.push((parent_id, shuffle));
            if shuffle.is_some_and(|s| !descend(s)) {
                continue;
            }
            match lineage.entry(parent_id) {
                Entry::Occupied(mut e) => e.get_mut().in_edges += 1,
                Entry::Vacant(e) => {
                    e.insert(Seen {
                        node: parent,
                        in_edges: 1,
                        parents: Vec::new(),
                    });
                    stack.push(parent_id);
                }
            }
            // `dep` and any second copy of `parent` are dropped here: only the lineage's
            // own edges and the map's reference remain.
        }
        if let Some(seen) = lineage.get_mut(&id) {
            seen.parents = parents;
        }
    }
    lineage
}

/// The outputs of shuffle `dep`, released while a task of a running job needed them:
/// computed again inside the task, with the released or missing shuffles below it first
/// (parents first, each map partition after the other, and no nested stage that could
/// wait on a map-stage lock a task lower on this thread's stack holds). Each is stored for
/// the other readers unless a job is running its map stage, and kept in the task either
/// way (so the task computes each at most once); the stored outputs are what it reads when
/// there are any. A map side that fails fails the task, and nothing is stored. Each map
/// partition runs in a [`TaskContext::child`], so preparing its segments never touches
/// the ones the task prepared for itself.
pub(crate) fn compute_released(
    tc: &TaskContext,
    dep: Arc<dyn ShuffleDepBase>,
) -> Result<ShuffleOutputs> {
    let ctx = tc.context();
    let store = &ctx.inner.shuffles;
    let id = dep.shuffle_id();
    tracing::debug!(
        shuffle_id = id,
        "a task needs released shuffle outputs: computing them again"
    );
    for d in missing_shuffles(ctx, vec![dep]) {
        let shuffle = d.shuffle_id();
        if store.is_complete(shuffle) || tc.recomputed(shuffle).is_some() {
            continue;
        }
        let parent = d.parent();
        let mut outputs: Vec<MapOutput> = Vec::with_capacity(parent.num_partitions());
        for p in 0..parent.num_partitions() {
            if store.is_complete(shuffle) {
                // Stored meanwhile (another task, another job): read those.
                break;
            }
            // The task failed already (its own error is what it reports): nothing more is
            // computed, and no map side's checkpoint partition is committed for it.
            if tc.has_failed() {
                return Err(Error::Internal(format!(
                    "shuffle {id}: not computed again, the task has failed"
                )));
            }
            // Each map partition in a context of its own: its segments never meet the
            // task's, and its failure is its own.
            let side = tc.child();
            task::prepare_partition(parent.as_ref(), p, &side)?;
            let output = d.run_map_task(p, &side);
            if let Some(e) = side.take_failure() {
                return Err(e);
            }
            outputs.push(output?);
        }
        if outputs.len() < parent.num_partitions() {
            continue;
        }
        let entry = store.entry(shuffle);
        if let Some(_running) = entry.running.try_lock()
            && !entry.is_usable()
        {
            entry.set_outputs(outputs.clone());
        }
        // What this task reads from now on: the stored version when there is one (every
        // reader of the process then reads the same), else its own.
        let kept = store.outputs(shuffle).unwrap_or_else(|| Arc::new(outputs));
        tc.keep_recomputed(shuffle, kept);
    }
    let mine = tc.recomputed(id);
    store.outputs(id).or(mine).ok_or_else(|| {
        Error::Internal(format!(
            "shuffle {id} was released, and computing it again left no outputs"
        ))
    })
}
