//! `map_with_state` (Spark's `mapWithState`): per-key state that a batch touches only at
//! the keys it holds, with an idle timeout that gives each expiring key a final call.
//!
//! Each state partition is one record: a persistent hash map (`imbl`) of key → (state,
//! batch of the last update), an index of keys by that batch (for timeouts), and the
//! batch's mapped outputs. A batch copies the map in O(1) and updates only its own keys,
//! so its cost follows the batch, not the state (Spark's `updateStateByKey` cogroups the
//! whole state every batch; its `mapWithState` does this with delta-chained maps). The
//! partition records are cached and locally truncated every batch, and every k-th batch the
//! maps are written, flattened to `(key, (state, last update))` records, as a reliable state
//! checkpoint of the operator (S6).
//!
//! Timeouts are checked in **every** batch (Spark checks them only in batches whose state
//! it checkpoints, so with its default interval a key idles up to ten batches past its
//! timeout: Spark's `mapped.checkpoint(interval)` equals flintlock's behaviour).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxBuildHasher;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::dstream::{desc, DNode, DStream};
use super::graph::NodeDesc;
use super::meta::StateRef;
use super::state::{write_state, StateCell, StatefulOps, DEFAULT_CHECKPOINT_EVERY};
use super::{BatchId, BatchRun};
use crate::checkpoint::AppDir;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::rdd::site;
use crate::{Data, Key, Partitioner, Rdd};

type MapFn<K, V, S, E> = dyn Fn(&K, Option<V>, &mut State<S>) -> E + Send + Sync;
type Map<K, S> =
    imbl::GenericHashMap<K, (S, BatchId), FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;
type KeySet<K> = imbl::GenericHashSet<K, FxBuildHasher, imbl::shared_ptr::DefaultSharedPtr>;

/// The state of one key as a [`DStream::map_with_state`] function sees it (Spark's
/// `State`): read it, replace it, or remove the key.
///
/// In a timeout call ([`State::is_timing_out`]) the key is removed after the call whatever
/// the function does, so updating or removing its state there is an error that fails the
/// batch (as Spark's `State` throws).
#[derive(Debug)]
pub struct State<S> {
    value: Option<S>,
    updated: bool,
    removed: bool,
    timing_out: bool,
    misuse: Option<&'static str>,
}

impl<S> State<S> {
    fn new(value: Option<S>, timing_out: bool) -> Self {
        State {
            value,
            updated: false,
            removed: false,
            timing_out,
            misuse: None,
        }
    }

    /// Whether the key has a state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The key's state, if it has one.
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Sets the key's state (it becomes the key's state after this batch).
    pub fn update(&mut self, state: S) {
        if self.timing_out {
            self.misuse = Some("updated");
            return;
        }
        self.value = Some(state);
        self.updated = true;
        self.removed = false;
    }

    /// Removes the key's state.
    pub fn remove(&mut self) {
        if self.timing_out {
            self.misuse = Some("removed");
            return;
        }
        self.value = None;
        self.removed = true;
        self.updated = false;
    }

    /// Whether this is the key's final call: it has been idle longer than the spec's
    /// timeout, the value is `None`, and the key is removed after the call.
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }
}

/// What a [`DStream::map_with_state`] operator does (Spark's `StateSpec`): the function,
/// and optionally the initial state, an idle timeout, the state's partition count and its
/// reliable checkpoint interval.
pub struct StateSpec<K: Data, V: Data, S: Data, E: Data> {
    f: Arc<MapFn<K, V, S, E>>,
    initial: Option<Rdd<(K, S)>>,
    timeout: Option<Duration>,
    partitions: Option<usize>,
    every: u32,
}

impl<K: Data, V: Data, S: Data, E: Data> std::fmt::Debug for StateSpec<K, V, S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSpec")
            .field("timeout", &self.timeout)
            .field("partitions", &self.partitions)
            .field("checkpoint_every", &self.every)
            .finish_non_exhaustive()
    }
}

impl<K: Data, V: Data, S: Data, E: Data> StateSpec<K, V, S, E> {
    /// A spec of the mapping function `f(key, value, state) -> output`. It is called once
    /// per record of the batch, with `Some(value)`, in the record's order within its state
    /// partition; and once for each key timing out, with `None` (see
    /// [`StateSpec::timeout`]). Every call's output is one record of the mapped stream.
    pub fn function(f: impl Fn(&K, Option<V>, &mut State<S>) -> E + Send + Sync + 'static) -> Self {
        StateSpec {
            f: Arc::new(f),
            initial: None,
            timeout: None,
            partitions: None,
            every: DEFAULT_CHECKPOINT_EVERY,
        }
    }

    /// The state before the first batch (Spark's `initialState`); a key's first value
    /// wins. Its keys count as updated in the first batch.
    pub fn initial_state(mut self, rdd: Rdd<(K, S)>) -> Self {
        self.initial = Some(rdd);
        self
    }

    /// Removes keys idle for longer than `timeout`: a key whose state was last updated, or
    /// that last had a record, in batch `u` times out in the first batch `b` with
    /// `(b − u) × interval > timeout`, after that batch's records. The function gets a
    /// final call for it with no value and [`State::is_timing_out`] set, and its output
    /// joins the batch's. Checked in every batch.
    ///
    /// The timeout may change between runs (`Recovery::changes` lists it): batches a
    /// restart rebuilds from their plans keep the timeout they ran with, and the new one
    /// applies from the first new batch, where keys already idle for longer get their final
    /// call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The number of state partitions (default: the context's thread count). Changing it
    /// between runs repartitions the recovered state once.
    ///
    /// # Panics
    /// When `n` is 0.
    #[track_caller]
    pub fn partitions(mut self, n: usize) -> Self {
        assert!(n >= 1, "partitions(0): a state has at least 1 partition");
        self.partitions = Some(n);
        self
    }

    /// Writes the state as a reliable checkpoint every `k` batches (default
    /// [`DEFAULT_CHECKPOINT_EVERY`]), as [`super::StateStream::checkpoint_every`].
    ///
    /// # Panics
    /// When `k` is 0.
    #[track_caller]
    pub fn checkpoint_every(mut self, k: u32) -> Self {
        assert!(
            k >= 1,
            "checkpoint_every(0): the interval is at least 1 batch"
        );
        self.every = k;
        self
    }
}

/// One state partition after a batch: the state map, the keys by their last activity's
/// batch, and the outputs of the batch's calls.
struct Part<K: Key, S: Data, E: Data> {
    map: Map<K, S>,
    idle: imbl::OrdMap<BatchId, KeySet<K>>,
    mapped: Arc<Vec<E>>,
}

impl<K: Key, S: Data, E: Data> Clone for Part<K, S, E> {
    fn clone(&self) -> Self {
        Part {
            map: self.map.clone(),
            idle: self.idle.clone(),
            mapped: self.mapped.clone(),
        }
    }
}

impl<K: Key, S: Data, E: Data> Part<K, S, E> {
    /// A partition holding `entries` (key → (state, last update)); a key's first wins.
    fn from_entries(entries: impl Iterator<Item = (K, (S, BatchId))>) -> Self {
        let mut part = Part {
            map: Map::default(),
            idle: imbl::OrdMap::new(),
            mapped: Arc::new(Vec::new()),
        };
        for (k, (s, u)) in entries {
            if part.map.contains_key(&k) {
                continue;
            }
            part.idle.entry(u).or_default().insert(k.clone());
            part.map.insert(k, (s, u));
        }
        part
    }

    fn forget_idle(&mut self, u: BatchId, k: &K) {
        if let Some(keys) = self.idle.get_mut(&u) {
            keys.remove(k);
            if keys.is_empty() {
                self.idle.remove(&u);
            }
        }
    }
}

struct Staged<K: Key, S: Data, E: Data> {
    batch: BatchId,
    parts: Rdd<Part<K, S, E>>,
    written: Option<StateRef>,
}

pub(crate) struct MapStateOp<K: Key, V: Data, S: Data, E: Data> {
    name: String,
    parent: Arc<DNode<(K, V)>>,
    f: Arc<MapFn<K, V, S, E>>,
    initial: Option<Rdd<(K, S)>>,
    /// Keys idle for more than this many batches time out.
    idle_batches: Option<u64>,
    interval: Duration,
    /// While recovery replays batches: the timeout recorded with them (it may differ).
    replay_idle: Mutex<Option<Option<u64>>>,
    partitions: usize,
    every: u32,
    dir: OnceLock<Arc<AppDir>>,
    cell: StateCell<Part<K, S, E>>,
    staged: Mutex<Option<Staged<K, S, E>>>,
}

impl<K, V, S, E> MapStateOp<K, V, S, E>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
    S: Data + Serialize + DeserializeOwned,
    E: Data,
{
    /// The state partitions of batch `batch` (staged or current).
    fn parts_of(&self, batch: BatchId) -> Result<Rdd<Part<K, S, E>>> {
        if let Some(s) = &*self.staged.lock()
            && s.batch == batch
        {
            return Ok(s.parts.clone());
        }
        self.cell.at(batch).ok_or_else(|| {
            Error::Internal(format!(
                "map_with_state `{}` has no state for batch {batch}",
                self.name
            ))
        })
    }

    /// The outputs of batch `batch`'s calls.
    fn mapped(&self, batch: BatchId) -> Result<Rdd<E>> {
        Ok(self.parts_of(batch)?.flat_map(|p| {
            let mapped = p.mapped;
            (0..mapped.len()).map(move |i| mapped[i].clone())
        }))
    }

    /// The state after batch `batch`, as `(key, state)` pairs placed by the operator's
    /// hash partitioner.
    fn snapshot(&self, batch: BatchId) -> Result<Rdd<(K, S)>> {
        let parts = self.parts_of(batch)?;
        Ok(parts.map_partitions_placed(
            site("map_with_state snapshots"),
            Partitioner::hash(self.partitions),
            Arc::new(|_, it| {
                crate::rdd::iter::boxed(
                    it.flat_map(|p| p.map.into_iter().map(|(k, (s, _))| (k, s))),
                )
            }),
        ))
    }

    /// The state as (key, (state, last update)) records, for its reliable checkpoint.
    fn entries(&self, parts: &Rdd<Part<K, S, E>>) -> Rdd<(K, (S, BatchId))> {
        parts.map_partitions_placed(
            site("map_with_state entries"),
            Partitioner::hash(self.partitions),
            Arc::new(|_, it| crate::rdd::iter::boxed(it.flat_map(|p| p.map.into_iter()))),
        )
    }

    /// State partitions built from `entries` records, placed by the operator's partitioner.
    fn parts_from(&self, entries: Rdd<(K, (S, BatchId))>) -> Rdd<Part<K, S, E>> {
        entries
            .partition_by(Partitioner::hash(self.partitions))
            .map_partitions(|it| std::iter::once(Part::from_entries(it)))
    }
}

impl<K, V, S, E> StatefulOps for MapStateOp<K, V, S, E>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
    S: Data + Serialize + DeserializeOwned,
    E: Data,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> (usize, u32) {
        (self.partitions, self.every)
    }

    fn attach(&self, dir: Arc<AppDir>) {
        let _ = self.dir.set(dir);
    }

    fn step(&self, run: &BatchRun<'_>) -> Result<()> {
        let b = run.batch.id;
        if self.cell.restored_past(b) {
            return Ok(());
        }
        let n = self.partitions;
        let prev = match self.cell.get() {
            Some((_, parts)) => parts,
            None => {
                let initial = self.initial.clone().unwrap_or_else(|| run.ctx.empty());
                self.parts_from(initial.map_values(move |s| (s, b)))
            }
        };
        let input = self.parent.rdd(run)?.partition_by(Partitioner::hash(n));
        let idle_batches = match *self.replay_idle.lock() {
            Some(recorded) if run.replay => recorded,
            _ => self.idle_batches,
        };
        let (f, name) = (self.f.clone(), self.name.clone());
        let parts = prev
            .zip_partitions_op(
                &input,
                site("map_with_state"),
                Arc::new(move |split, tc, mut prev, records| {
                    let Some(mut part) = prev.next() else {
                        tc.fail(Error::Internal(format!(
                            "map_with_state `{name}`: state partition {split} is missing"
                        )));
                        return crate::rdd::iter::boxed(std::iter::empty());
                    };
                    match apply(&mut part, records, &*f, idle_batches, b) {
                        Ok(()) => crate::rdd::iter::boxed(std::iter::once(part)),
                        Err(what) => {
                            tc.fail(Error::InvalidArgument(format!(
                                "map_with_state `{name}`: the function {what} the state of a \
                                 key timing out (it is removed after its final call)"
                            )));
                            crate::rdd::iter::boxed(std::iter::empty())
                        }
                    }
                }),
            )
            .set_name(format!("map_with_state `{}` @ batch {b}", self.name));
        let mut written = None;
        if !run.replay {
            parts.local_checkpoint()?;
            parts.count()?;
            let reliable = self
                .dir
                .get()
                .filter(|_| (b + 1).is_multiple_of(u64::from(self.every)));
            if let Some(dir) = reliable {
                let entries = self.entries(&parts);
                written = Some(write_state(&entries, dir, &self.name, b)?);
            }
        }
        *self.staged.lock() = Some(Staged {
            batch: b,
            parts,
            written,
        });
        Ok(())
    }

    fn promote(&self) {
        if let Some(s) = self.staged.lock().take() {
            self.cell.promote(s.batch, s.parts, s.written);
        }
    }

    fn rollback(&self) {
        let staged = self.staged.lock().take();
        drop(staged);
    }

    fn committed(&self) -> Option<StateRef> {
        self.cell.committed()
    }

    fn restore(&self, ctx: &Context, stream_dir: &Path, state: Option<&StateRef>) -> Result<()> {
        *self.staged.lock() = None;
        self.cell
            .restore_via(ctx, stream_dir, &self.name, state, |entries| {
                self.parts_from(entries)
            })
    }

    fn lineage_depth(&self) -> Option<usize> {
        self.cell.lineage_depth()
    }

    fn low_water(&self, _committed: BatchId) -> BatchId {
        self.committed().map_or(0, |s| s.batch + 1)
    }

    fn replay_under(&self, recorded: Option<&NodeDesc>) {
        *self.replay_idle.lock() = recorded.map(|n| {
            n.timeout_nanos
                .map(|t| idle_batches(Duration::from_nanos(t), self.interval))
        });
    }
}

/// Keys idle for more than this many batches outlive `timeout`: (b − u) × interval >
/// timeout ⇔ b − u > ⌊timeout / interval⌋.
fn idle_batches(timeout: Duration, interval: Duration) -> u64 {
    (timeout.as_nanos() / interval.as_nanos().max(1)).min(u128::from(u64::MAX)) as u64
}

/// Applies batch `b`'s `records` to a state partition: one call per record, then one per
/// key idle for more than `idle_batches`. `Err` names a misuse of a timing-out state.
fn apply<K: Key, V, S: Data, E: Data>(
    part: &mut Part<K, S, E>,
    records: impl Iterator<Item = (K, V)>,
    f: &MapFn<K, V, S, E>,
    idle_batches: Option<u64>,
    b: BatchId,
) -> std::result::Result<(), &'static str> {
    let mut mapped = Vec::new();
    for (k, v) in records {
        let old = part.map.remove(&k);
        if let Some((_, u)) = &old {
            part.forget_idle(*u, &k);
        }
        let existed = old.is_some();
        let mut state = State::new(old.map(|(s, _)| s), false);
        mapped.push(f(&k, Some(v), &mut state));
        // A key that had a record counts as active (Spark refreshes its time with a
        // timeout); a removed key is gone. The index by last activity is kept also without
        // a timeout, which a restart may add.
        if let Some(s) = state.value.filter(|_| state.updated || existed) {
            part.idle.entry(b).or_default().insert(k.clone());
            part.map.insert(k, (s, b));
        }
    }
    if let Some(t) = idle_batches
        && let Some(threshold) = b.checked_sub(t)
    {
        // Keys last active before `threshold` (b − u > t) time out.
        let (expired, at, rest) = part.idle.split_lookup(&threshold);
        part.idle = rest;
        if let Some(keys) = at {
            part.idle.insert(threshold, keys);
        }
        for (_, keys) in expired {
            for k in keys {
                let Some((s, _)) = part.map.remove(&k) else {
                    continue;
                };
                let mut state = State::new(Some(s), true);
                mapped.push(f(&k, None, &mut state));
                if let Some(what) = state.misuse {
                    return Err(what);
                }
            }
        }
    }
    part.mapped = Arc::new(mapped);
    Ok(())
}

/// The streams of a [`DStream::map_with_state`] operator: it derefs to the mapped stream
/// (each call's output), and [`MapWithStateStream::snapshots`] is the state after each
/// batch.
pub struct MapWithStateStream<K: Data, S: Data, E: Data> {
    mapped: DStream<E>,
    snapshots: DStream<(K, S)>,
}

impl<K: Data, S: Data, E: Data> std::fmt::Debug for MapWithStateStream<K, S, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapWithStateStream")
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

impl<K: Data, S: Data, E: Data> Clone for MapWithStateStream<K, S, E> {
    fn clone(&self) -> Self {
        MapWithStateStream {
            mapped: self.mapped.clone(),
            snapshots: self.snapshots.clone(),
        }
    }
}

impl<K: Data, S: Data, E: Data> std::ops::Deref for MapWithStateStream<K, S, E> {
    type Target = DStream<E>;
    fn deref(&self) -> &DStream<E> {
        &self.mapped
    }
}

impl<K: Data, S: Data, E: Data> MapWithStateStream<K, S, E> {
    /// The whole state after each batch, as `(key, state)` pairs (Spark's
    /// `stateSnapshots`). A key that timed out in a batch is not in that batch's snapshot.
    pub fn snapshots(&self) -> DStream<(K, S)> {
        self.snapshots.clone()
    }

    /// The mapped stream as a plain [`DStream`].
    pub fn stream(&self) -> DStream<E> {
        self.mapped.clone()
    }
}

impl<K, V> DStream<(K, V)>
where
    K: Key + Serialize + DeserializeOwned,
    V: Data,
{
    /// Per-key state that each batch updates only at its own keys (Spark's `mapWithState`):
    /// `spec`'s function is called once per record of the batch with the key's
    /// [`State`], and its outputs make the returned stream; keys idle for longer than the
    /// spec's timeout get a final call and are removed. The state, kept per partition as a
    /// persistent map, is locally truncated every batch and written as a reliable
    /// checkpoint every k-th ([`StateSpec::checkpoint_every`]); a restart resumes from it.
    /// An empty state is checkpointed and restored like any other (Spark cannot restore
    /// one, SPARK-11979).
    ///
    /// `name` is the operator's stable, unique name (its state folder and its entry in
    /// the commits). A checkpoint folder is required. As for every stateful operator, the
    /// output cannot be windowed: a restart cannot rebuild its batches before the newest
    /// state checkpoint (window the input, or keep the window in the state).
    ///
    /// ```
    /// use std::time::Duration;
    /// use flintlock::streaming::{ManualClock, RddQueue, StateSpec, StreamingContext, Until};
    /// use flintlock::Context;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ctx = Context::new();
    /// let queue = RddQueue::from_rdds([
    ///     ctx.parallelize(vec![("a", 1u64), ("b", 2)], 1),
    ///     ctx.parallelize(vec![("a", 3)], 1),
    /// ]);
    /// let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    /// ssc.checkpoint(dir.path())?;
    /// // Running sums; each record's output is its key's new sum.
    /// let spec = StateSpec::function(|k: &String, v: Option<u64>, state| {
    ///     let sum = state.get().copied().unwrap_or(0) + v.unwrap_or(0);
    ///     state.update(sum);
    ///     (k.clone(), sum)
    /// });
    /// let sums = ssc
    ///     .queue_stream("in", queue)
    ///     .map(|(k, v)| (k.to_string(), v))
    ///     .map_with_state("sums", spec);
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let out = seen.clone();
    /// sums.foreach_rdd("show", move |rdd, _| {
    ///     out.lock().unwrap().extend(rdd.collect()?);
    ///     Ok(())
    /// });
    /// ssc.run(Until::Batches(2))?;
    /// let mut seen = seen.lock().unwrap().clone();
    /// seen.sort();
    /// assert_eq!(seen, vec![("a".to_string(), 1), ("a".to_string(), 4), ("b".to_string(), 2)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    pub fn map_with_state<S, E>(
        &self,
        name: &str,
        spec: StateSpec<K, V, S, E>,
    ) -> MapWithStateStream<K, S, E>
    where
        S: Data + Serialize + DeserializeOwned,
        E: Data,
    {
        let interval = self.graph.interval;
        let op = Arc::new(MapStateOp {
            name: name.to_string(),
            parent: self.node.clone(),
            f: spec.f,
            initial: spec.initial,
            idle_batches: spec.timeout.map(|t| idle_batches(t, interval)),
            interval,
            replay_idle: Mutex::new(None),
            partitions: spec
                .partitions
                .unwrap_or_else(|| self.graph.ctx.threads().max(1)),
            every: spec.every,
            dir: OnceLock::new(),
            cell: StateCell::new(),
            staged: Mutex::new(None),
        });
        let mut d = desc("map_with_state", Some(name), &[self.node.id]);
        d.timeout_nanos = spec
            .timeout
            .map(|t| t.as_nanos().min(u128::from(u64::MAX)) as u64);
        let reader = op.clone();
        let mapped =
            self.add_stateful::<S, _>(d, op.clone(), move |run| reader.mapped(run.batch.id));
        let snapshots = self.graph.add(
            desc("state_snapshots", None, &[mapped.node.id]),
            move |run| op.snapshot(run.batch.id),
        );
        MapWithStateStream { mapped, snapshots }
    }
}
