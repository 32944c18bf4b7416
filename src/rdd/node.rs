//! The shared node behind every `Rdd<T>` handle, and the swappable lineage.
//!
//! A node holds what never changes (id, kind, creation call site, partition count,
//! partitioner), what the user may change (name, storage level, checkpoint mark) and its
//! **lineage**: `Lineage::Computed(compute)` until a checkpoint commits, then
//! `Lineage::Checkpointed(checkpoint rdd)`. The swap happens under a lock and drops the old
//! `Compute`, which holds the only references to the parents: once the user's own handles are
//! gone, the parents are freed.
//!
//! Nodes are seen by the scheduler, the checkpointer and the lineage tools only through the
//! object-safe [`RddBase`] (public, read-only) and `Node` (crate-internal) traits.
//!
//! Dropping a node never recurses: `Drop` detaches the lineage and walks the parents with an
//! explicit stack, taking each parent apart only when this was its last handle.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block_store::StorageLevel;
use crate::checkpoint::{CheckpointCell, CheckpointState};
use crate::context::Context;
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::scheduler::TaskContext;
use crate::Data;

pub(crate) use super::iter::ArcVecIter;
pub use super::iter::BoxedPartitionIter;
use super::iter::{boxed, drain_to_vec};

/// How narrow chains deeper than this are computed: every `SEGMENT` levels the partition is
/// materialised inside the task, so that neither building nor draining the iterator chain
/// recurses more than `SEGMENT` levels deep.
pub(crate) const SEGMENT: usize = 256;

/// One RDD kind's answers to Spark's five questions: its partitions, its partitioner, what
/// it depends on, and how to compute a partition (preferred locations have no meaning in one
/// process), with its name. The node asks once, at construction, and keeps the answers: they
/// never change, even when a checkpoint later replaces the lineage.
pub(crate) trait Compute<T>: Send + Sync + 'static {
    /// The kind, named as in Spark (`MapPartitionsRdd`, `ShuffledRdd`, ...).
    fn name(&self) -> &'static str;
    /// How many partitions it has.
    fn num_partitions(&self) -> usize;
    /// How its pairs are placed in partitions, when it knows.
    fn partitioner(&self) -> Option<Partitioner> {
        None
    }
    /// The edges to the parents.
    fn dependencies(&self) -> Vec<Dependency>;
    /// Computes partition `split`. Errors while iterating are reported through
    /// [`TaskContext::fail`].
    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>>;
}

/// The placement check of a hash-partitioned checkpoint reopened from disk.
///
/// Placement depends on the key type's `Hash` impl and on the hash function, and Rust
/// promises neither across builds. So the partitioner recorded in a manifest is trusted only
/// after this build has placed **every** key of the checkpoint in the partition it was read
/// from (one full read of the checkpoint; a sample would miss a `Hash` that changed for some
/// keys only). The check runs once, the first time a by-key operation would rely on the
/// partitioner (it needs the key type, which only the by-key operations know); on a
/// mismatch, an unreadable part or a panicking `Hash`, the partitioner is dropped and
/// `Event::PartitionerDropped` says why.
pub(crate) struct PlacementGate<T> {
    /// The reopened checkpoint RDD.
    pub(crate) rdd_id: usize,
    /// Streams every record to the check as `(partition, record)`: the check's verdict, or
    /// the error that kept the checkpoint from being read.
    scan: PlacementScan<T>,
    verdict: std::sync::OnceLock<bool>,
}

/// The check of one record: where it was read, and the record; `Err` says what is wrong.
pub(crate) type RecordCheck<'a, T> = dyn FnMut(usize, &T) -> std::result::Result<(), String> + 'a;

/// Reads a checkpoint through a [`RecordCheck`].
pub(crate) type PlacementScan<T> =
    Box<dyn Fn(&mut RecordCheck<'_, T>) -> Result<std::result::Result<(), String>> + Send + Sync>;

impl<T: Data> PlacementGate<T> {
    pub(crate) fn new(rdd_id: usize, scan: PlacementScan<T>) -> Self {
        PlacementGate {
            rdd_id,
            scan,
            verdict: std::sync::OnceLock::new(),
        }
    }

    /// The outcome of the check, once it ran.
    pub(crate) fn verdict(&self) -> Option<bool> {
        self.verdict.get().copied()
    }

    /// Runs the check once: `test` sees every record and says where one is misplaced.
    /// Returns whether the partitioner can be trusted; the first failing check sends
    /// `Event::PartitionerDropped`. A panic in `test` (a key's `Hash`) is a failed check.
    pub(crate) fn check(
        &self,
        ctx: &Context,
        mut test: impl FnMut(usize, &T) -> std::result::Result<(), String>,
    ) -> bool {
        if let Some(v) = self.verdict.get() {
            return *v;
        }
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.scan)(&mut test)));
        let outcome = match outcome {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(e)) => Err(format!("the checkpoint could not be read to check it: {e}")),
            Err(payload) => Err(format!(
                "a key's Hash panicked while its placement was checked: {}",
                crate::scheduler::panic_message(payload.as_ref())
            )),
        };
        // Set outside any lock, so a listener may call back in.
        if self.verdict.set(outcome.is_ok()).is_ok()
            && let Err(reason) = outcome
        {
            ctx.inner.emit(crate::listener::Event::PartitionerDropped {
                rdd_id: self.rdd_id,
                reason,
            });
        }
        self.verdict.get().copied().unwrap_or(false)
    }
}

/// Where an RDD was created: the operation and the user's source line.
#[derive(Clone, Copy)]
pub struct CallSite {
    /// The operation (`map`, `reduce_by_key`, `parallelize`, ...).
    pub op: &'static str,
    /// The caller's file and line, recorded with `#[track_caller]`.
    pub location: &'static Location<'static>,
}

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{}",
            self.op,
            self.location.file(),
            self.location.line()
        )
    }
}

impl fmt::Debug for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The untyped, read-only view of an RDD: what the lineage tools see.
///
/// Obtained from `Rdd::as_base` or `Dependency::parent`.
pub trait RddBase: Send + Sync + sealed::Sealed + 'static {
    /// The RDD's id, unique within its context.
    fn id(&self) -> usize;
    /// The RDD kind, named as in Spark (`MapPartitionsRdd`, `ShuffledRdd`, ...).
    fn kind(&self) -> &'static str;
    /// The user-given name, if any.
    fn name(&self) -> Option<String>;
    /// Where the RDD was created.
    fn call_site(&self) -> CallSite;
    /// The number of partitions.
    fn num_partitions(&self) -> usize;
    /// How the RDD's keys are partitioned, if known.
    fn partitioner(&self) -> Option<Partitioner>;
    /// The edges to its parents (after a checkpoint: one `OneToOne` edge to the checkpoint).
    fn dependencies(&self) -> Vec<Dependency>;
    /// How computed partitions are kept.
    fn storage_level(&self) -> StorageLevel;
    /// Where the RDD is in the checkpoint state machine.
    fn checkpoint_state(&self) -> CheckpointState;
    /// How many partitions are currently held in the block store.
    fn cached_partitions(&self) -> usize;
    /// The context the RDD belongs to, described by its serial number and app id
    /// (`context #2 (app id "pagerank")`).
    fn context_description(&self) -> String;
}

/// The crate-internal side of a node, used by the scheduler and the checkpointer.
pub(crate) trait Node: RddBase {
    /// An upper bound of the narrow-chain length below this node (0 for sources and shuffle
    /// outputs), fixed at construction; deep chains are materialised in segments.
    fn pipe_depth(&self) -> usize;
    /// Computes partition `split` fully and keeps it in the task for its consumers.
    fn materialize(&self, split: usize, tc: &TaskContext) -> Result<()>;
    /// True when partition `split` is in the block store (so the lineage below is not needed).
    fn block_present(&self, split: usize) -> bool;
    /// Computes partition `split` and drops its records: a checkpoint completion task (the
    /// checkpoint's tee writes them on the way).
    fn compute_and_drop(&self, split: usize, tc: &TaskContext) -> Result<()>;
    /// Takes the lineage out and returns the parents, for the iterative drop.
    fn detach_lineage(&mut self) -> Vec<Arc<dyn Node>>;
    /// The checkpoint hooks of this node.
    fn checkpoint_ops(&self) -> &dyn crate::checkpoint::CheckpointOps;
    /// The serial number of the node's context.
    fn context_serial(&self) -> u64;
    /// When the node's lineage reaches RDDs of another context: that context, described.
    fn mixed_with(&self) -> Option<&str>;
}

pub(crate) enum Lineage<T: Data> {
    /// Computed from the parents by this RDD kind.
    Computed(Arc<dyn Compute<T>>),
    /// Read from a checkpoint RDD (reliable or local), which has no parents.
    Checkpointed(crate::Rdd<T>),
    /// Only while the node is being dropped.
    Released,
}

/// The shared node of an `Rdd<T>`.
pub(crate) struct RddNode<T: Data> {
    pub(crate) ctx: Context,
    pub(crate) id: usize,
    pub(crate) kind: &'static str,
    pub(crate) call_site: CallSite,
    pub(crate) num_partitions: usize,
    pub(crate) partitioner: Option<Partitioner>,
    pipe_depth: usize,
    /// Another context whose RDDs this node's lineage reaches (an action then fails).
    mixed_with: Option<String>,
    /// For a checkpoint reopened from disk (and RDDs that keep its partitioning): the check
    /// that this build places keys where the checkpoint has them, run before the partitioner
    /// is relied on.
    pub(crate) placement: Option<Arc<PlacementGate<T>>>,
    name: Mutex<Option<String>>,
    storage_level: AtomicU8,
    pub(crate) lineage: RwLock<Lineage<T>>,
    pub(crate) checkpoint: CheckpointCell<T>,
}

impl<T: Data> RddNode<T> {
    /// A node of kind `compute`, made at `call_site`; the kind answers its name, partition
    /// count, partitioner and dependencies.
    pub(crate) fn new(
        ctx: Context,
        call_site: CallSite,
        compute: Arc<dyn Compute<T>>,
    ) -> RddNode<T> {
        let deps = compute.dependencies();
        let pipe_depth = deps
            .iter()
            .filter(|d| !d.is_shuffle())
            .map(|d| d.parent_node().pipe_depth() + 1)
            .max()
            .unwrap_or(0);
        let mixed_with = deps.iter().find_map(|d| {
            let parent = d.parent_node();
            if parent.context_serial() != ctx.inner.serial {
                Some(parent.context_description())
            } else {
                parent.mixed_with().map(str::to_string)
            }
        });
        let id = ctx.inner.new_rdd_id();
        RddNode {
            ctx,
            id,
            kind: compute.name(),
            call_site,
            num_partitions: compute.num_partitions(),
            partitioner: compute.partitioner(),
            pipe_depth,
            mixed_with,
            placement: None,
            name: Mutex::new(None),
            storage_level: AtomicU8::new(StorageLevel::None.to_u8()),
            lineage: RwLock::new(Lineage::Computed(compute)),
            checkpoint: CheckpointCell::new(),
        }
    }

    /// The partitioner users see: the RDD's own, unless a placement check found that this
    /// build does not place the keys where a reopened checkpoint has them.
    pub(crate) fn visible_partitioner(&self) -> Option<Partitioner> {
        match &self.placement {
            Some(gate) if gate.verdict() == Some(false) => None,
            _ => self.partitioner.clone(),
        }
    }

    /// The partitioner when nothing about it is pending: none recorded, or a reopened
    /// checkpoint's placement already checked and found right.
    pub(crate) fn settled_partitioner(&self) -> Option<Partitioner> {
        match &self.placement {
            Some(gate) if gate.verdict() != Some(true) => None,
            _ => self.partitioner.clone(),
        }
    }

    /// What a child that keeps this RDD's partitioning (`filter`, `map_values`, ...) gets:
    /// the partitioner, and a pending placement check it shares when its element type is the
    /// same. A child of another element type cannot share a pending check, so it gets no
    /// partitioner (by-key operations settle the check before making such children).
    pub(crate) fn preserved_partitioning<U: Data>(
        &self,
    ) -> (Option<Partitioner>, Option<Arc<PlacementGate<U>>>) {
        let Some(p) = self.partitioner.clone() else {
            return (None, None);
        };
        let Some(gate) = &self.placement else {
            return (Some(p), None);
        };
        match gate.verdict() {
            Some(true) => (Some(p), None),
            Some(false) => (None, None),
            None => {
                let shared: Arc<dyn std::any::Any + Send + Sync> = gate.clone();
                match shared.downcast::<PlacementGate<U>>() {
                    Ok(g) => (Some(p), Some(g)),
                    Err(_) => (None, None),
                }
            }
        }
    }

    pub(crate) fn set_name(&self, name: Option<String>) {
        *self.name.lock() = name;
    }

    pub(crate) fn set_storage_level(&self, level: StorageLevel) {
        let old = StorageLevel::from_u8(self.storage_level.swap(level.to_u8(), Ordering::AcqRel));
        if old != StorageLevel::None && level == StorageLevel::None {
            self.ctx.inner.blocks.remove_rdd(self.id);
        }
    }

    /// The iterator over partition `split`: from the task's materialised segments, the block
    /// store, or the lineage — and, while a checkpoint of this RDD is being written by the
    /// running job, teed into its partition file.
    pub(crate) fn iterator(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        if let Some(data) = tc.take_materialized::<T>(self.id, split) {
            return Ok(data);
        }
        let level = self.storage_level();
        let cached = if level == StorageLevel::None {
            None
        } else {
            match self
                .ctx
                .inner
                .blocks
                .get::<T>(self.id, split, &self.ctx.inner.memory)
            {
                Some(Ok(block)) => Some(block),
                // Records that do not read back would fail the same way if stored again.
                Some(Err(e @ Error::UnspillableRecord { .. })) => return Err(e),
                Some(Err(e)) => {
                    // A damaged or missing disk block is a lost block: recomputed.
                    eprintln!(
                        "flintlock: rdd {} partition {split}: {e}; recomputing it",
                        self.id
                    );
                    self.ctx.inner.blocks.remove(self.id, split);
                    None
                }
                None => None,
            }
        };
        let from_cache = cached.is_some();
        let source: BoxedPartitionIter<T> = match cached {
            Some(block) => Box::new(ArcVecIter::new(block)),
            None => self.compute_from_lineage(split, tc)?,
        };
        // Stage inputs (sources, shuffle reads, cached blocks) are where a cancelled job's
        // task notices, once per batch; the levels above them need no check of their own.
        let source = if from_cache || self.pipe_depth == 0 {
            crate::rdd::iter::CancelCheck::boxed(source, tc.job().clone())
        } else {
            source
        };
        let source = self.checkpoint.tee(self, split, tc, source);
        if level == StorageLevel::None || from_cache {
            return Ok(source);
        }
        let data: Vec<T> = drain_to_vec(source);
        if tc.has_failed() {
            // Never cache a partition whose computation reported an error.
            return Ok(boxed(std::iter::empty()));
        }
        self.store_block(split, level, data)
    }

    /// Stores a computed partition at `level` and returns its records.
    fn store_block(
        &self,
        split: usize,
        level: StorageLevel,
        data: Vec<T>,
    ) -> Result<BoxedPartitionIter<T>> {
        let memory = &self.ctx.inner.memory;
        let reservation = match level {
            StorageLevel::DiskOnly => None,
            StorageLevel::MemoryAndDisk => crate::spill::reserve_block(memory, &data),
            // A local checkpoint's blocks are its only copy: kept whatever the budget.
            _ if self.checkpoint.is_local() => Some(None),
            // Under a memory limit, a block that does not fit is not cached (Spark's
            // MEMORY_ONLY): the partition is recomputed when it is needed again.
            _ => match crate::spill::reserve_block(memory, &data) {
                Some(reservation) => Some(reservation),
                None => return Ok(boxed(data.into_iter())),
            },
        };
        if let Some(reservation) = reservation {
            let block = Arc::new(data);
            self.ctx
                .inner
                .blocks
                .put(self.id, split, block.clone(), reservation);
            return Ok(Box::new(ArcVecIter::new(block)));
        }
        let what = format!("rdd-{}-{split}", self.id);
        let on_disk = crate::spill::spill_block(memory, what, &data)?;
        self.ctx.inner.blocks.put_on_disk(self.id, split, on_disk);
        Ok(boxed(data.into_iter()))
    }

    fn compute_from_lineage(
        &self,
        split: usize,
        tc: &TaskContext,
    ) -> Result<BoxedPartitionIter<T>> {
        enum Source<T: Data> {
            Compute(Arc<dyn Compute<T>>),
            Checkpoint(crate::Rdd<T>),
        }
        // Clone the source out of the lock: a checkpoint may swap the lineage while this
        // task still computes from the old one.
        let source = match &*self.lineage.read() {
            Lineage::Computed(c) => Source::Compute(c.clone()),
            Lineage::Checkpointed(r) => Source::Checkpoint(r.clone()),
            Lineage::Released => {
                return Err(Error::Internal(format!(
                    "rdd {} computed while being dropped",
                    self.id
                )))
            }
        };
        match source {
            Source::Compute(c) => c.compute(split, tc),
            Source::Checkpoint(r) => r.node.iterator(split, tc),
        }
    }

    /// The description Spark's `RDD.toString` gives: `name MapPartitionsRdd[3] at map at f.rs:1`.
    pub(crate) fn describe(&self) -> String {
        describe(self)
    }
}

/// `name Kind[id] at op at file:line`, for any node.
pub(crate) fn describe(node: &dyn RddBase) -> String {
    let name = node.name().map(|n| format!("{n} ")).unwrap_or_default();
    format!(
        "{name}{}[{}] at {}",
        node.kind(),
        node.id(),
        node.call_site()
    )
}

impl<T: Data> sealed::Sealed for RddNode<T> {}

impl<T: Data> RddBase for RddNode<T> {
    fn id(&self) -> usize {
        self.id
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn name(&self) -> Option<String> {
        self.name.lock().clone()
    }
    fn call_site(&self) -> CallSite {
        self.call_site
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn partitioner(&self) -> Option<Partitioner> {
        self.visible_partitioner()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        match &*self.lineage.read() {
            Lineage::Computed(c) => c.dependencies(),
            Lineage::Checkpointed(r) => vec![Dependency::one_to_one(r.node.clone())],
            Lineage::Released => Vec::new(),
        }
    }
    fn storage_level(&self) -> StorageLevel {
        StorageLevel::from_u8(self.storage_level.load(Ordering::Acquire))
    }
    fn checkpoint_state(&self) -> CheckpointState {
        self.checkpoint.state()
    }
    fn cached_partitions(&self) -> usize {
        self.ctx.inner.blocks.cached_partitions(self.id)
    }
    fn context_description(&self) -> String {
        self.ctx.inner.describe()
    }
}

impl<T: Data> Node for RddNode<T> {
    fn pipe_depth(&self) -> usize {
        self.pipe_depth
    }

    fn materialize(&self, split: usize, tc: &TaskContext) -> Result<()> {
        let data: Vec<T> = drain_to_vec(self.iterator(split, tc)?);
        tc.put_materialized(self.id, split, data);
        Ok(())
    }

    fn block_present(&self, split: usize) -> bool {
        self.storage_level() != StorageLevel::None && self.ctx.inner.blocks.contains(self.id, split)
    }

    fn compute_and_drop(&self, split: usize, tc: &TaskContext) -> Result<()> {
        self.iterator(split, tc)?.for_each(drop);
        Ok(())
    }

    fn detach_lineage(&mut self) -> Vec<Arc<dyn Node>> {
        let lineage = std::mem::replace(self.lineage.get_mut(), Lineage::Released);
        let parents = lineage.parents();
        // `parents` keeps every parent alive, so dropping the lineage here is shallow.
        drop(lineage);
        parents
    }

    fn checkpoint_ops(&self) -> &dyn crate::checkpoint::CheckpointOps {
        self
    }

    fn context_serial(&self) -> u64 {
        self.ctx.inner.serial
    }

    fn mixed_with(&self) -> Option<&str> {
        self.mixed_with.as_deref()
    }
}

impl<T: Data> Lineage<T> {
    /// The parents this lineage holds.
    fn parents(&self) -> Vec<Arc<dyn Node>> {
        match self {
            Lineage::Computed(c) => c.dependencies().iter().map(|d| d.parent_node()).collect(),
            Lineage::Checkpointed(r) => vec![r.node.clone() as Arc<dyn Node>],
            Lineage::Released => Vec::new(),
        }
    }
}

impl<T: Data> RddNode<T> {
    /// Swaps the lineage for `checkpoint_rdd` (the checkpoint just committed) and releases
    /// the parents iteratively.
    ///
    /// Never panics: the old lineage holds user closures, whose `Drop` may panic; that panic
    /// is caught (the checkpoint is committed and installed by then, and must stay so).
    /// Returns the ids of the parents released.
    pub(crate) fn swap_lineage(&self, checkpoint_rdd: crate::Rdd<T>) -> Vec<usize> {
        let old = std::mem::replace(
            &mut *self.lineage.write(),
            Lineage::Checkpointed(checkpoint_rdd),
        );
        let mut ids = Vec::new();
        let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let parents = old.parents();
            ids = parents.iter().map(|p| p.id()).collect();
            drop(old);
            release_lineage(parents);
        }));
        if let Err(payload) = released {
            eprintln!(
                "flintlock: dropping the lineage of rdd {} after its checkpoint panicked: {} \
                 (the checkpoint is committed and in use)",
                self.id,
                crate::scheduler::panic_message(payload.as_ref())
            );
        }
        ids
    }
}

impl<T: Data> Drop for RddNode<T> {
    fn drop(&mut self) {
        if self.storage_level() != StorageLevel::None {
            self.ctx.inner.blocks.remove_rdd(self.id);
        }
        release_lineage(self.detach_lineage());
    }
}

/// Drops a set of parent handles without recursing: a parent whose last handle this is gets
/// its own lineage detached first, and its parents join the stack.
pub(crate) fn release_lineage(mut stack: Vec<Arc<dyn Node>>) {
    while let Some(mut node) = stack.pop() {
        if let Some(n) = Arc::get_mut(&mut node) {
            stack.extend(n.detach_lineage());
        }
        drop(node);
    }
}
