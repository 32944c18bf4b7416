//! The shuffle: map-side bucketing (with combining where the operation allows it), the
//! in-memory shuffle store, and the reduce-side reader.
//!
//! A [`ShuffleDependency`] knows how to turn one parent partition into one bucket per reduce
//! partition (`map_side`, monomorphised over the user's combine closures; the per-record
//! loop makes one dynamic call, to the partitioner's key function `KeyFn`). The scheduler
//! runs that for every parent partition in a shuffle-map stage and stores the outputs under the shuffle id; the reduce side reads its
//! bucket from every map output. Outputs stay in the store while the dependency lives, so a
//! later job over the same lineage skips the map stage (Spark's stage reuse); dropping the
//! dependency (its RDD dropped or checkpointed) frees them. Outputs that only the recovery of
//! a stored cache or of another shuffle could read are released earlier (see
//! `scheduler::release`); a task that meets released outputs runs their map stage again.

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::partitioner::{KeyFn, Partitioner};
use crate::rdd::iter::BATCH;
use crate::rdd::iter::{drain_slice_batches, Chunk, ChunkRecords, PartitionIterator, Sealed};
use crate::rdd::node::{BoxedPartitionIter, Node};
use crate::scheduler::TaskContext;
use crate::spill::{MapOutputData, Spiller};
use crate::{Data, Key, Rdd};

/// One map task's output: a [`MapOutputData<(K, M)>`], one bucket per reduce partition (in
/// memory, each its own `Arc`, or spilled), behind `Any`. A reader takes typed handles to
/// its buckets once instead of downcasting per record.
pub(crate) type MapOutput = Arc<dyn Any + Send + Sync>;

/// Where one bucket of a map output a process of a cluster keeps comes from.
pub(crate) enum Part<'a> {
    /// The process ran the map task: its own bucket.
    Local,
    /// Another process ran it and sent the bucket (`wire::put_records` bytes).
    Bytes(&'a [u8]),
    /// The bucket is another process's (that process owns the reduce partition).
    Elsewhere(usize),
}

/// Every map output of one shuffle, in map-partition order.
pub(crate) type ShuffleOutputs = Arc<Vec<MapOutput>>;

/// What the store has of one shuffle ([`ShuffleStore::lookup`]).
pub(crate) enum Lookup {
    Present(ShuffleOutputs),
    /// Released (`scheduler::release`) and not computed again since.
    Released,
    /// Never computed, or gone with its dependency.
    Missing,
}

/// Shuffle outputs by shuffle id.
#[derive(Default)]
pub(crate) struct ShuffleStore {
    entries: Mutex<FxHashMap<usize, Arc<ShuffleEntry>>>,
}

/// One shuffle's slot: a lock that one job holds while it runs the map stage (so concurrent
/// jobs run it once), and the outputs once complete.
#[derive(Default)]
pub(crate) struct ShuffleEntry {
    pub(crate) running: Mutex<()>,
    outputs: RwLock<Option<ShuffleOutputs>>,
    /// A reader found a spill file of the outputs damaged: the next job runs the map stage
    /// again. The outputs stay readable meanwhile, so the other tasks of a running job read
    /// their intact buckets or meet the damage themselves (never "missing" outputs).
    damaged: AtomicBool,
    /// The outputs were released because no handle could reach them without passing a
    /// stored cache or another complete shuffle (`scheduler::release`): a reader that
    /// meets them missing runs the map stage again instead of failing.
    released: AtomicBool,
}

impl ShuffleEntry {
    /// The outputs, damaged or not (for readers).
    pub(crate) fn outputs(&self) -> Option<ShuffleOutputs> {
        self.outputs.read().clone()
    }
    /// Whether the map stage is done and its outputs are not known to be damaged.
    pub(crate) fn is_usable(&self) -> bool {
        self.outputs.read().is_some() && !self.damaged.load(Ordering::Acquire)
    }
    pub(crate) fn set_outputs(&self, outputs: Vec<MapOutput>) {
        let mut slot = self.outputs.write();
        *slot = Some(Arc::new(outputs));
        self.damaged.store(false, Ordering::Release);
        self.released.store(false, Ordering::Release);
    }
    fn mark_damaged(&self) {
        self.damaged.store(true, Ordering::Release);
    }
}

impl ShuffleStore {
    pub(crate) fn entry(&self, shuffle_id: usize) -> Arc<ShuffleEntry> {
        self.entries.lock().entry(shuffle_id).or_default().clone()
    }

    pub(crate) fn outputs(&self, shuffle_id: usize) -> Option<ShuffleOutputs> {
        let entry = self.entries.lock().get(&shuffle_id).cloned()?;
        entry.outputs()
    }

    pub(crate) fn is_complete(&self, shuffle_id: usize) -> bool {
        let entry = self.entries.lock().get(&shuffle_id).cloned();
        entry.is_some_and(|e| e.is_usable())
    }

    /// Marks a shuffle's outputs damaged: the next job runs its map stage again.
    fn mark_damaged(&self, shuffle_id: usize) {
        let entry = self.entries.lock().get(&shuffle_id).cloned();
        if let Some(e) = entry {
            e.mark_damaged();
        }
    }

    /// Whether a shuffle's outputs were released (and not computed again since).
    pub(crate) fn was_released(&self, shuffle_id: usize) -> bool {
        matches!(self.lookup(shuffle_id), Lookup::Released)
    }

    /// A shuffle's outputs, or whether they were released, read under the one lock that
    /// `set_outputs` and `release` change both under: never "missing" for outputs being
    /// set or released meanwhile.
    pub(crate) fn lookup(&self, shuffle_id: usize) -> Lookup {
        let Some(entry) = self.entries.lock().get(&shuffle_id).cloned() else {
            return Lookup::Missing;
        };
        let slot = entry.outputs.read();
        match &*slot {
            Some(outputs) => Lookup::Present(outputs.clone()),
            None if entry.released.load(Ordering::Acquire) => Lookup::Released,
            None => Lookup::Missing,
        }
    }

    /// How many shuffles have their map outputs in the store.
    pub(crate) fn held(&self) -> usize {
        let entries: Vec<Arc<ShuffleEntry>> = self.entries.lock().values().cloned().collect();
        entries
            .iter()
            .filter(|e| e.outputs.read().is_some())
            .count()
    }

    /// Drops a complete shuffle's outputs while keeping its slot, so that the next job that
    /// needs them runs the map stage again; readers already holding them finish with them.
    /// Not while a job runs the map stage (it would set them again). Returns whether
    /// outputs were dropped.
    pub(crate) fn release(&self, shuffle_id: usize) -> bool {
        let Some(entry) = self.entries.lock().get(&shuffle_id).cloned() else {
            return false;
        };
        if entry.released.load(Ordering::Acquire) {
            return false;
        }
        let dropped = {
            let Some(_running) = entry.running.try_lock() else {
                return false;
            };
            let mut slot = entry.outputs.write();
            // Flagged before the outputs go, under the lock readers take: a reader that
            // finds none knows they were released.
            if slot.is_some() {
                entry.released.store(true, Ordering::Release);
            }
            slot.take()
        };
        // The outputs themselves are freed here, outside every lock.
        dropped.is_some()
    }

    pub(crate) fn remove(&self, shuffle_id: usize) {
        let removed = self.entries.lock().remove(&shuffle_id);
        drop(removed);
    }
}

/// Sizes that stages of one call site reached last time, by the site (see
/// `ContextInner::combine_sizes`).
#[derive(Default)]
pub(crate) struct SizeHints {
    sites: Mutex<FxHashMap<(&'static str, std::panic::Location<'static>, Side), Arc<AtomicUsize>>>,
}

/// Which of a call site's tables a size hint is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// The map side's combine tables.
    Map,
    /// The tables that merge a key's values or combiners (reduce side, or in place).
    Reduce,
}

impl SizeHints {
    /// The hint of the tables `side` of `site` builds (0 until one is built).
    pub(crate) fn of(&self, site: crate::CallSite, side: Side) -> Arc<AtomicUsize> {
        self.sites
            .lock()
            .entry((site.op, *site.location, side))
            .or_default()
            .clone()
    }
}

/// The untyped view of a shuffle dependency, for the scheduler.
pub(crate) trait ShuffleDepBase: Send + Sync {
    fn shuffle_id(&self) -> usize;
    fn parent(&self) -> Arc<dyn Node>;
    fn partitioner(&self) -> &Partitioner;
    /// Computes parent partition `map_partition` and buckets it.
    fn run_map_task(&self, map_partition: usize, tc: &TaskContext) -> Result<MapOutput>;
    /// Appends reduce partition `reduce`'s bucket of `output` (one of this shuffle's map
    /// outputs), encoded with the context's codec for the shuffled records (cluster mode).
    fn encode_bucket(&self, output: &MapOutput, reduce: usize, out: &mut Vec<u8>) -> Result<()>;
    /// A map output of this shuffle holding `parts[q]` as reduce partition `q`'s bucket:
    /// `local`'s own, decoded from another process's bytes, or held elsewhere (cluster
    /// mode).
    fn assemble_output(&self, local: Option<&MapOutput>, parts: Vec<Part<'_>>)
        -> Result<MapOutput>;
    /// Makes reduce partition `reduce`'s bucket of `output` (held by another process) the
    /// records that process sent, `bytes` from [`ShuffleDepBase::encode_bucket`] (cluster
    /// mode: a narrow dependency reads the partition here).
    fn install_bucket(&self, output: &MapOutput, reduce: usize, bytes: &[u8]) -> Result<()>;
}

/// The map side of a shuffle: buckets one parent partition of `(K, V)` into
/// `Vec<Vec<(K, M)>>`, handing runs that outgrow the task's memory share to the spiller.
pub(crate) type MapSide<K, V, M> = Arc<
    dyn Fn(BoxedPartitionIter<(K, V)>, &TaskContext, &mut Spiller<(K, M)>) -> Vec<Vec<(K, M)>>
        + Send
        + Sync,
>;

/// How a shuffle's map side buckets one parent partition: given the partition, the key
/// function, the partition count and the task's spiller.
pub(crate) trait BucketFn<K, V, M>:
    Fn(BoxedPartitionIter<(K, V)>, &KeyFn<K>, usize, &mut Spiller<(K, M)>) -> Vec<Vec<(K, M)>>
    + Send
    + Sync
    + 'static
{
}

impl<K, V, M, F> BucketFn<K, V, M> for F where
    F: Fn(BoxedPartitionIter<(K, V)>, &KeyFn<K>, usize, &mut Spiller<(K, M)>) -> Vec<Vec<(K, M)>>
        + Send
        + Sync
        + 'static
{
}

/// The map side of a shuffle into `partitioner`'s partitions: `bucket` gets each parent
/// partition, the key function and the partition count. When the partitioner cannot place
/// keys of type `K` (a range partitioner read back from a checkpoint, or built for another
/// key type), every map task fails with that error: the action returns it, nothing panics.
fn keyed_map_side<K, V, M>(
    partitioner: &Partitioner,
    bucket: impl BucketFn<K, V, M>,
) -> MapSide<K, V, M>
where
    K: Hash + Send + Sync + 'static,
    V: 'static,
    M: 'static,
{
    let n = partitioner.num_partitions();
    let key_fn = partitioner.key_fn::<K>();
    Arc::new(move |input, tc, spill| match &key_fn {
        Ok(f) => bucket(input, f, n, spill),
        Err(e) => {
            tc.fail(e.duplicate());
            (0..n).map(|_| Vec::new()).collect()
        }
    })
}

/// A shuffle of `Rdd<(K, V)>` whose map outputs hold `(K, M)` (`M = V` without map-side
/// combine, the combiner type with it).
pub(crate) struct ShuffleDependency<K: Data, V: Data, M> {
    ctx: Context,
    shuffle_id: usize,
    parent: Rdd<(K, V)>,
    partitioner: Partitioner,
    map_side: MapSide<K, V, M>,
}

impl<K: Key, V: Data, M: Send + Sync + 'static> ShuffleDependency<K, V, M> {
    /// The one place that decides between working in place and shuffling: `None` when
    /// `parent` is already partitioned by `partitioner` (its trusted partitioner is equal),
    /// so the caller works partition by partition over a narrow dependency; otherwise the
    /// shuffle of `parent` into `partitioner`'s partitions, whose map side is `bucket` (given
    /// each parent partition, the key function and the partition count).
    pub(crate) fn unless_partitioned(
        parent: &Rdd<(K, V)>,
        partitioner: &Partitioner,
        bucket: impl BucketFn<K, V, M>,
    ) -> Option<Self> {
        if parent.trusted_partitioner().as_ref() == Some(partitioner) {
            return None;
        }
        let ctx = parent.context().clone();
        Some(ShuffleDependency {
            shuffle_id: ctx.inner.new_shuffle_id(),
            ctx,
            parent: parent.clone(),
            partitioner: partitioner.clone(),
            map_side: keyed_map_side(partitioner, bucket),
        })
    }
}

impl<K: Key, V: Data> ShuffleDependency<K, V, V> {
    /// [`ShuffleDependency::unless_partitioned`] moving the pairs as they are (no map-side
    /// combining): `partition_by`, the sides of `cogroup` and the joins.
    pub(crate) fn bucketing(parent: &Rdd<(K, V)>, partitioner: &Partitioner) -> Option<Self> {
        Self::unless_partitioned(parent, partitioner, bucketize)
    }
}

impl<K: Data, V: Data, M: Send + Sync + 'static> ShuffleDependency<K, V, M> {
    /// Reads reduce partition `split`'s bucket from every map output (spilled buckets are
    /// read back and checked here). A damaged spill file marks the shuffle's outputs
    /// damaged, so the next action runs the map stage again, and fails this task. Released
    /// outputs (see `scheduler::release`) are computed again first, inside this task.
    pub(crate) fn read(
        self: &Arc<Self>,
        split: usize,
        tc: &TaskContext,
    ) -> Result<ShuffleReader<K, M>> {
        let outputs = match self.ctx.inner.shuffles.lookup(self.shuffle_id) {
            Lookup::Present(outputs) => outputs,
            Lookup::Released => match tc.recomputed(self.shuffle_id) {
                Some(outputs) => outputs,
                None => {
                    let dep: Arc<dyn ShuffleDepBase> = self.clone();
                    crate::scheduler::compute_released(tc, dep)?
                }
            },
            Lookup::Missing => {
                return Err(Error::Internal(format!(
                    "shuffle {} outputs are missing for reduce partition {split}",
                    self.shuffle_id
                )))
            }
        };
        let mut codec = None;
        let mut buckets = Vec::with_capacity(outputs.len());
        for (i, o) in outputs.iter().enumerate() {
            let bucket = o
                .downcast_ref::<MapOutputData<(K, M)>>()
                .and_then(|b| b.bucket(split))
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "shuffle {} map output {i} has an unexpected type or no bucket {split}",
                        self.shuffle_id
                    ))
                })?;
            if codec.is_none() && !matches!(bucket, crate::spill::Bucket::Memory(_)) {
                codec = self.ctx.inner.memory.codec::<(K, M)>();
            }
            match bucket.load(codec.as_deref()) {
                Ok(b) => buckets.push(b),
                Err(e) => {
                    if matches!(e, Error::SpillDamaged { .. }) {
                        self.ctx.inner.shuffles.mark_damaged(self.shuffle_id);
                    }
                    return Err(e);
                }
            }
        }
        let remaining = buckets.iter().map(|b| b.len()).sum();
        Ok(ShuffleReader {
            buckets,
            map: 0,
            pos: 0,
            remaining,
        })
    }
}

impl<K: Data, V: Data, M: Send + Sync + 'static> ShuffleDepBase for ShuffleDependency<K, V, M> {
    fn shuffle_id(&self) -> usize {
        self.shuffle_id
    }
    fn parent(&self) -> Arc<dyn Node> {
        self.parent.node.clone()
    }
    fn partitioner(&self) -> &Partitioner {
        &self.partitioner
    }
    fn run_map_task(&self, map_partition: usize, tc: &TaskContext) -> Result<MapOutput> {
        let input = self.parent.node.iterator(map_partition, tc)?;
        let mut spill = Spiller::new(
            &self.ctx.inner.memory,
            format!("shuffle-{}-map-{map_partition}", self.shuffle_id),
            self.partitioner.num_partitions(),
        );
        let buckets = (self.map_side)(input, tc, &mut spill);
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                shuffle_id = self.shuffle_id,
                map_partition,
                records = buckets.iter().map(Vec::len).sum::<usize>(),
                largest_bucket = buckets.iter().map(Vec::len).max().unwrap_or(0),
                "shuffle map output (records held in memory; spilled runs not counted)"
            );
        }
        Ok(spill.finish(buckets)?)
    }

    fn encode_bucket(&self, output: &MapOutput, reduce: usize, out: &mut Vec<u8>) -> Result<()> {
        let bucket = self.typed(output)?.bucket(reduce).ok_or_else(|| {
            Error::Internal(format!(
                "shuffle {} has no bucket {reduce} to send",
                self.shuffle_id
            ))
        })?;
        let codec = self.ctx.inner.memory.codec::<(K, M)>();
        let records = bucket.load(codec.as_deref())?;
        crate::scheduler::wire::put_records(&records, &self.ctx.inner, out)
    }

    fn assemble_output(
        &self,
        local: Option<&MapOutput>,
        parts: Vec<Part<'_>>,
    ) -> Result<MapOutput> {
        let local = local.map(|o| self.typed(o)).transpose()?;
        let mut buckets = Vec::with_capacity(parts.len());
        for (q, part) in parts.into_iter().enumerate() {
            buckets.push(match part {
                Part::Local => local.and_then(|o| o.bucket(q)).ok_or_else(|| {
                    Error::Internal(format!(
                        "shuffle {} has no local bucket {q}",
                        self.shuffle_id
                    ))
                })?,
                Part::Bytes(bytes) => crate::spill::Bucket::Memory(Arc::new(
                    crate::scheduler::wire::take_records(&self.ctx.inner, bytes)?,
                )),
                Part::Elsewhere(process) => crate::spill::Bucket::Elsewhere { process },
            });
        }
        Ok(MapOutputData::<(K, M)>::assembled(buckets))
    }

    fn install_bucket(&self, output: &MapOutput, reduce: usize, bytes: &[u8]) -> Result<()> {
        let records = crate::scheduler::wire::take_records(&self.ctx.inner, bytes)?;
        let bucket = crate::spill::Bucket::Memory(Arc::new(records));
        if self.typed(output)?.set_bucket(reduce, bucket) {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "shuffle {} has no bucket {reduce} to receive",
                self.shuffle_id
            )))
        }
    }
}

impl<K: Data, V: Data, M: Send + Sync + 'static> ShuffleDependency<K, V, M> {
    /// `output` as this shuffle's map output type.
    fn typed<'a>(&self, output: &'a MapOutput) -> Result<&'a MapOutputData<(K, M)>> {
        output.downcast_ref().ok_or_else(|| {
            Error::Internal(format!(
                "shuffle {} has a map output of another type",
                self.shuffle_id
            ))
        })
    }
}

impl<K: Data, V: Data, M> Drop for ShuffleDependency<K, V, M> {
    fn drop(&mut self) {
        self.ctx.inner.shuffles.remove(self.shuffle_id);
    }
}

/// Iterates one reduce partition's `(K, M)` pairs across all map outputs (cloned: outputs
/// stay in the store for reuse).
pub(crate) struct ShuffleReader<K, M> {
    buckets: Vec<Arc<Vec<(K, M)>>>,
    map: usize,
    pos: usize,
    remaining: usize,
}

impl<K, M> ShuffleReader<K, M> {
    /// The largest bucket of any one map output: a capacity estimate for the merged map
    /// (after a full map-side combine the keys within one bucket are distinct, so the merged
    /// map holds at least this many keys; after a partial one, at most this many).
    pub(crate) fn largest_bucket(&self) -> usize {
        self.buckets.iter().map(|b| b.len()).max().unwrap_or(0)
    }
}

impl<K, M> Sealed for ShuffleReader<K, M> {}

impl<K: Clone, M: Clone> PartitionIterator<(K, M)> for ShuffleReader<K, M> {
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<(K, M)>)) {
        Records::drain_batched(*self, sink);
    }

    fn drain_chunks(self: Box<Self>, sink: &mut dyn FnMut(Chunk<'_, (K, M)>)) {
        for slice in self.remaining_slices() {
            for chunk in slice.chunks(BATCH) {
                sink(Chunk::Shared(chunk));
            }
        }
    }
}

/// The input of the shuffle's per-record loops, in batches: a partition iterator (drained
/// through the chain of narrow transformations) or a shuffle reader (batches cloned from its
/// buckets, without a dynamic call).
pub(crate) trait Records<T> {
    /// A lower bound of the number of records (exact for readers and cached blocks).
    fn len_hint(&self) -> usize;

    /// An upper bound of the number of records, when one is known (none after a
    /// `flat_map`, whose output length is unknown).
    fn len_bound(&self) -> Option<usize>;

    /// Hands the records to `f` in batches (see [`PartitionIterator::drain_batches`]), in
    /// order; `f` takes the records out of each.
    fn drain_batched(self, f: impl FnMut(&mut Vec<T>));

    /// Hands the records to `f` in chunks, in order: a source that shares its records (a
    /// cached block, a parallel collection, a shuffle reader's buckets) lends them in
    /// slices and each is cloned as `f` takes it, with no batch copy in between. `f` loops
    /// over each chunk itself, so its per-record code stays one tight loop.
    fn drain_chunked(self, f: impl FnMut(ChunkRecords<'_, T>));
}

impl<T: Clone> Records<T> for BoxedPartitionIter<T> {
    fn len_hint(&self) -> usize {
        self.size_hint().0
    }
    fn len_bound(&self) -> Option<usize> {
        self.size_hint().1
    }
    fn drain_batched(self, mut f: impl FnMut(&mut Vec<T>)) {
        self.drain_batches(&mut f);
    }
    fn drain_chunked(self, mut f: impl FnMut(ChunkRecords<'_, T>)) {
        self.drain_chunks(&mut |c| f(c.records()));
    }
}

impl<K: Clone, M: Clone> ShuffleReader<K, M> {
    /// The slices of the buckets not yet read, in order.
    fn remaining_slices(&self) -> impl Iterator<Item = &[(K, M)]> {
        let skip = self.pos;
        self.buckets
            .iter()
            .enumerate()
            .skip(self.map)
            .map(move |(i, bucket)| {
                let from = if i == self.map { skip } else { 0 };
                &bucket[from.min(bucket.len())..]
            })
    }
}

impl<K: Clone, M: Clone> Records<(K, M)> for ShuffleReader<K, M> {
    fn len_hint(&self) -> usize {
        self.remaining
    }
    fn len_bound(&self) -> Option<usize> {
        Some(self.remaining)
    }
    fn drain_batched(self, mut f: impl FnMut(&mut Vec<(K, M)>)) {
        for slice in self.remaining_slices() {
            drain_slice_batches(slice, &mut f);
        }
    }
    fn drain_chunked(self, mut f: impl FnMut(ChunkRecords<'_, (K, M)>)) {
        for slice in self.remaining_slices() {
            for chunk in slice.chunks(BATCH) {
                f(Chunk::Shared(chunk).records());
            }
        }
    }
}

impl<K: Clone, M: Clone> Iterator for ShuffleReader<K, M> {
    type Item = (K, M);
    #[inline]
    fn next(&mut self) -> Option<(K, M)> {
        while let Some(bucket) = self.buckets.get(self.map) {
            if let Some(x) = bucket.get(self.pos) {
                self.pos += 1;
                self.remaining -= 1;
                return Some(x.clone());
            }
            self.map += 1;
            self.pos = 0;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// The capacity to give a table of the site whose tables last reached `hint` entries:
/// that size (growing a table from empty rehashes every key about twice and copies the
/// table each time), within `bound` records when the input's length is bounded, and within
/// [`UNBOUNDED_PRESIZE`] when it is not.
fn remembered_capacity(hint: &AtomicUsize, bound: Option<usize>) -> usize {
    let last = hint.load(Ordering::Relaxed);
    last.min(bound.unwrap_or(UNBOUNDED_PRESIZE))
}

/// The largest table sized from a hint for an input of unknown length (after a
/// `flat_map`): a site whose last table was huge may now see a few records (a streaming
/// batch after a large one), and a table is allocated, and its control bytes written, at
/// the size asked. About 1 MiB of control bytes at most; a larger table grows from here.
const UNBOUNDED_PRESIZE: usize = 1 << 20;

/// Combines `(K, V)` pairs by key, merging each value into its key's combiner in place.
/// The table starts at `floor` entries or at the size this site's table reached last time
/// (`hint`, see [`remembered_capacity`]), whichever is larger; `hint` records the size it
/// reaches.
pub(crate) fn combine_values<K, V, C>(
    input: impl Records<(K, V)>,
    create: &impl Fn(V) -> C,
    merge_value: &impl Fn(C, V) -> C,
    hint: &AtomicUsize,
    floor: usize,
) -> FxHashMap<K, C>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    let capacity = remembered_capacity(hint, input.len_bound()).max(floor);
    let mut map: FxHashMap<K, C> =
        FxHashMap::with_capacity_and_hasher(capacity, Default::default());
    input.drain_chunked(|records| {
        for (k, v) in records {
            upsert(&mut map, k, v, create, merge_value);
        }
    });
    hint.store(map.len(), Ordering::Relaxed);
    map
}

/// The entries of a finished by-key table in an order that depends on the keys alone: by
/// the low bits of their hashes (as many as it takes to give each entry a slot of its own,
/// on average), then by the whole hash. The order a hash table yields its entries in
/// depends on its history (its starting size, which comes from the same call site's last
/// run; the order keys arrived in, which depends on the map side's tables), and a shuffle's
/// output must not: the same RDD computed again, in this run or after a restart (a
/// streaming batch replayed, a checkpoint written by a retry), gives the same sequence, so
/// that everything after it (a join's output order, a float sum in the next reduce) is the
/// same to the last bit. Keys whose 64-bit hashes are equal (never for integer keys: their
/// hash is a bijection) keep the table's order among themselves.
///
/// One pass hashing the keys and counting each slot's entries, one pass moving each entry
/// straight to its place in the output, then sorts of the slots that hold more than one
/// entry: a comparison sort of the whole table cost PageRank's loop a third. The earlier
/// form of this one (entries with their hashes in one vector, placed into a vector of
/// `Option`s, then copied out) made PageRank's set-up (`distinct`, `group_by_key` of a
/// million edges) 14–19% slower (docs/BENCHMARKS.md).
pub(crate) fn in_hash_order<K: Hash + Eq, C>(map: FxHashMap<K, C>) -> Vec<(K, C)> {
    // Slot positions as `u32` where they fit: the two position arrays are, with the hashes,
    // most of what this holds beside the table and the output (about 2 MB of 21 for a
    // table of 250,000 pairs of `u64`s, two tasks at a time in PageRank's set-up).
    if map.len() < u32::MAX as usize {
        in_hash_order_indexed::<K, C, u32>(map)
    } else {
        in_hash_order_indexed::<K, C, usize>(map)
    }
}

/// A position in [`in_hash_order`]'s output.
trait Position: Copy + Default {
    fn get(self) -> usize;
    fn bump(&mut self);
    fn add(&mut self, other: Self);
}

impl Position for u32 {
    #[inline(always)]
    fn get(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn bump(&mut self) {
        *self += 1;
    }
    #[inline(always)]
    fn add(&mut self, other: Self) {
        *self += other;
    }
}

impl Position for usize {
    #[inline(always)]
    fn get(self) -> usize {
        self
    }
    #[inline(always)]
    fn bump(&mut self) {
        *self += 1;
    }
    #[inline(always)]
    fn add(&mut self, other: Self) {
        *self += other;
    }
}

/// [`in_hash_order`] with positions of type `P`, which must hold the entry count.
#[allow(unsafe_code)] // see SAFETY below
fn in_hash_order_indexed<K: Hash + Eq, C, P: Position>(map: FxHashMap<K, C>) -> Vec<(K, C)> {
    let hasher = *map.hasher();
    let n = map.len();
    // 2^bits slots, at least as many as entries.
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    let slot_of = |h: u64| (h & ((1u64 << bits) - 1)) as usize;
    // In the table's order, which `into_iter` below visits again: each entry gets the hash
    // computed here (a `Hash` impl is never asked twice).
    let hashes: Vec<u64> = map.keys().map(|k| hasher.hash_one(k)).collect();
    // Where each slot's entries start.
    let mut starts = vec![P::default(); (1usize << bits) + 1];
    for &h in &hashes {
        starts[slot_of(h) + 1].bump();
    }
    for i in 1..starts.len() {
        let before = starts[i - 1];
        starts[i].add(before);
    }
    let mut next = starts.clone();
    let mut placed_hashes = vec![0u64; n];
    let mut out: Vec<(K, C)> = Vec::with_capacity(n);
    let places = &mut out.spare_capacity_mut()[..n];
    let mut written = 0;
    for (entry, &h) in map.into_iter().zip(&hashes) {
        let slot = slot_of(h);
        let at = next[slot].get();
        next[slot].bump();
        places[at].write(entry);
        placed_hashes[at] = h;
        written += 1;
    }
    drop((hashes, next));
    // The slot counts add up to n and each slot's range receives exactly its count, so the
    // positions written are a permutation of 0..n, whatever the hashes are; with n entries
    // written, every position holds one. (Were fewer written, the written ones leak.)
    assert_eq!(written, n, "a table yields as many entries as it holds");
    // SAFETY: positions 0..n are initialised (above), and `out` has capacity n.
    unsafe { out.set_len(n) };
    // Slots of more than one entry: by the whole hash, entries of equal hashes in table
    // order (a stable sort).
    let mut order: Vec<usize> = Vec::new();
    for slot in starts.windows(2) {
        let (from, to) = (slot[0].get(), slot[1].get());
        match to - from {
            0 | 1 => {}
            2 => {
                if placed_hashes[from] > placed_hashes[from + 1] {
                    out.swap(from, from + 1);
                }
            }
            len => {
                let hashes = &placed_hashes[from..to];
                order.clear();
                order.extend(0..len);
                order.sort_by_key(|&i| hashes[i]);
                permute(&mut out[from..to], &mut order);
            }
        }
    }
    out
}

/// Puts `xs[order[j]]` at position `j`, for every `j`, by swaps along the permutation's
/// cycles; `order` is used up (left as the identity).
fn permute<T>(xs: &mut [T], order: &mut [usize]) {
    for start in 0..xs.len() {
        let mut j = start;
        loop {
            let k = order[j];
            order[j] = j;
            if k == start || k == j {
                break;
            }
            xs.swap(j, k);
            j = k;
        }
    }
}

/// Merges `(K, C)` combiners by key (the reduce side after a map-side combine), sized as
/// [`combine_values`] sizes its table.
pub(crate) fn merge_combiners<K, C>(
    input: impl Records<(K, C)>,
    merge: &impl Fn(C, C) -> C,
    hint: &AtomicUsize,
    floor: usize,
) -> FxHashMap<K, C>
where
    K: Hash + Eq + Clone,
    C: Clone,
{
    combine_values(input, &|c| c, merge, hint, floor)
}

/// Inserts `create(v)` for a new key, or replaces the combiner `c` of an existing key by
/// `merge(c, v)` in place.
///
/// The user's functions take the combiner by value (Spark's signatures), and `C` need not be
/// `Default`, so the old combiner is moved out of the table with `ptr::read` and the merged
/// one written back. An `Option<C>` slot would avoid the unsafe code but makes every entry
/// larger (24 instead of 16 bytes for `u64` keys and values), and the table is the hot spot
/// of every aggregation.
///
/// Panic safety: while `merge` runs, the table holds a bitwise copy of a value the closure
/// owns. If `merge` panics, the closure drops that value while unwinding, and the guard then
/// takes the entry whose value lives at the slot's address out of the table (a scan, on the
/// panic path only), drops its key and *forgets* the stale copy, so nothing is dropped twice;
/// the task fails and the table is discarded anyway.
///
/// The guard finds the entry by address instead of keeping a pointer to its key: a key
/// pointer taken from the entry is invalidated by the `&mut` to the value taken after it
/// (and the other order invalidates the value pointer), which Miri reports as undefined
/// behaviour under Stacked Borrows. `.ci/run` runs this module's tests under Miri.
#[inline]
#[allow(unsafe_code)] // see SAFETY below
fn upsert<K: Hash + Eq + Clone, V, C>(
    map: &mut FxHashMap<K, C>,
    k: K,
    v: V,
    create: &impl Fn(V) -> C,
    merge: &impl Fn(C, V) -> C,
) {
    let map_ptr: *mut FxHashMap<K, C> = map;
    // One probe for both cases (a `get_mut` miss followed by `insert` probed twice for
    // every new key: a third of `distinct`). Everything below is derived from `map_ptr`.
    // SAFETY: `map_ptr` comes from a live `&mut` that is not used while this runs.
    match unsafe { (*map_ptr).entry(k) } {
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(create(v));
        }
        std::collections::hash_map::Entry::Occupied(e) => {
            let slot: *mut C = e.into_mut();
            let guard = RemoveOnUnwind { map: map_ptr, slot };
            // SAFETY: `slot` points at an initialised combiner. It is read exactly once and
            // rewritten before anything else can observe it; on unwind the guard removes the
            // entry without dropping the stale bits.
            unsafe {
                let old = std::ptr::read(slot);
                std::ptr::write(slot, merge(old, v));
            }
            std::mem::forget(guard);
        }
    }
}

/// Removes the entry whose value was moved out, without dropping the value (see
/// [`upsert`]).
struct RemoveOnUnwind<K, C> {
    map: *mut FxHashMap<K, C>,
    /// The moved-out value's slot: only its address is used.
    slot: *const C,
}

#[allow(unsafe_code)] // see SAFETY below
impl<K, C> Drop for RemoveOnUnwind<K, C> {
    fn drop(&mut self) {
        // SAFETY: only reached while unwinding out of `merge`, after the last use of the slot
        // pointer and of the entry; the map outlives the guard and nothing else borrows it.
        let map = unsafe { &mut *self.map };
        let slot = self.slot;
        for (key, stale) in map.extract_if(|_, c| std::ptr::eq(c, slot)) {
            drop(key);
            std::mem::forget(stale);
        }
    }
}

/// How many records a map-side combine sees before deciding whether combining pays: an
/// eighth of the partition when its length is known, within these bounds.
const PARTIAL_PROBE_MIN: usize = 1 << 16;
const PARTIAL_PROBE_MAX: usize = 1 << 20;

/// The decision point for a partition of (at least) `len` records.
///
/// A fixed sample is fooled by keys that sweep a range in order: 10,000,000 records cycling
/// over 100,000 keys show 65,536 distinct keys in their first 65,536 records, so combining
/// was given up where it shrinks the data 25 times (the reduce side then merged every
/// record: 2.9x the hand-written time). An eighth of the partition sees the repeats of any
/// sweep shorter than that.
fn partial_probe(len: usize) -> usize {
    (len / 8).clamp(PARTIAL_PROBE_MIN, PARTIAL_PROBE_MAX)
}

/// Map-side combining that gives up when it does not pay (adaptive partial aggregation).
///
/// Combining builds a hash table of every distinct key; on mostly-unique keys (`distinct` of
/// edges, `reduce_by_key` on ids) that is a full table build that shrinks nothing. After
/// [`partial_probe`] records, if the table holds more than 90% of them, the table built so
/// far is bucketed and the remaining records go straight to their buckets as one-value
/// combiners. The reduce side merges combiners by key anyway, so the result is the same;
/// only a key's combiners may now arrive in several pieces from one map output.
pub(crate) fn combine_partially<K, V, C>(
    input: impl Records<(K, V)>,
    create: &impl Fn(V) -> C,
    merge_value: &impl Fn(C, V) -> C,
    key_fn: &KeyFn<K>,
    partitions: usize,
    spill: &mut Spiller<(K, C)>,
    size_hint: &AtomicUsize,
) -> Vec<Vec<(K, C)>>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone,
    C: Clone + 'static,
{
    // Sized as the same operation's table ended last time, within what this partition
    // (when its length is bounded: not after a `flat_map`) and the memory share can hold.
    let mut capacity = remembered_capacity(size_hint, input.len_bound());
    if let Some(records) = spill.record_share() {
        capacity = capacity.min(records);
    }
    let mut map: FxHashMap<K, C> =
        FxHashMap::with_capacity_and_hasher(capacity, Default::default());
    let probe = partial_probe(input.len_hint());
    let mut seen = 0usize;
    // Keys in tables already spilled (for the give-up decision).
    let mut spilled_keys = 0usize;
    // `Some` once combining has been given up: the table built so far, bucketed, and the
    // buckets every further record goes to.
    let mut gave_up: Option<Vec<Vec<(K, C)>>> = None;
    input.drain_chunked(|mut records| {
        let added = records.len();
        while records.len() > 0 {
            match &mut gave_up {
                None => {
                    // Runs of nothing but upserts: up to the probe, then to the chunk's end.
                    // A per-record check in this loop (cache misses on the table dominate)
                    // left fewer records in flight to overlap them.
                    let run = match probe.checked_sub(seen) {
                        Some(left) if left > 0 => left.min(records.len()),
                        _ => records.len(),
                    };
                    for (k, v) in records.by_ref().take(run) {
                        upsert(&mut map, k, v, create, merge_value);
                    }
                    let before = seen;
                    seen += run;
                    if before < probe && seen == probe && (spilled_keys + map.len()) * 10 > seen * 9
                    {
                        let combined = std::mem::take(&mut map);
                        gave_up = Some(bucketize_map(combined, key_fn, partitions));
                    }
                }
                Some(buckets) => {
                    for (k, v) in records.by_ref() {
                        let p = key_fn(&k);
                        buckets[p].push((k, create(v)));
                    }
                }
            }
        }
        if spill.is_active() {
            match &mut gave_up {
                Some(buckets) => spill.after_push(added, buckets),
                None => {
                    let entries = map.iter().map(|(k, c)| (k.clone(), c.clone()));
                    let entry = std::mem::size_of::<(K, C)>();
                    if spill.table_over(entries, map.len(), map.capacity(), entry) {
                        spilled_keys += map.len();
                        let table = std::mem::take(&mut map);
                        spill.spill_buckets(bucketize_map(table, key_fn, partitions));
                    }
                }
            }
        }
    });
    match gave_up {
        Some(buckets) => buckets,
        None => {
            if spilled_keys == 0 {
                size_hint.store(map.len(), Ordering::Relaxed);
            }
            bucketize_map(map, key_fn, partitions)
        }
    }
}

/// Splits a combined map into one bucket per partition, each allocated at its exact size
/// (a first pass counts): buckets that outgrow a guessed capacity reallocate and copy, which
/// was a fifth of PageRank's time.
pub(crate) fn bucketize_map<K, C>(
    map: FxHashMap<K, C>,
    key_fn: &KeyFn<K>,
    partitions: usize,
) -> Vec<Vec<(K, C)>> {
    let mut counts = vec![0usize; partitions];
    for k in map.keys() {
        counts[key_fn(k)] += 1;
    }
    let mut buckets: Vec<Vec<(K, C)>> = counts.into_iter().map(Vec::with_capacity).collect();
    for (k, c) in map {
        let p = key_fn(&k);
        buckets[p].push((k, c));
    }
    buckets
}

/// Splits pairs into one bucket per partition (capacities estimated from `size_hint`, and
/// not beyond what the task may buffer when a memory limit applies).
pub(crate) fn bucketize<K: Clone + 'static, C: Clone + 'static>(
    input: impl Records<(K, C)>,
    key_fn: &KeyFn<K>,
    partitions: usize,
    spill: &mut Spiller<(K, C)>,
) -> Vec<Vec<(K, C)>> {
    let mut per = input.len_hint() / partitions.max(1) + 1;
    if let Some(records) = spill.record_share() {
        per = per.min(records / partitions.max(1) + 1);
    }
    let mut buckets: Vec<Vec<(K, C)>> = (0..partitions).map(|_| Vec::with_capacity(per)).collect();
    input.drain_chunked(|records| {
        let added = records.len();
        for (k, c) in records {
            let p = key_fn(&k);
            buckets[p].push((k, c));
        }
        if spill.is_active() {
            spill.after_push(added, &mut buckets);
        }
    });
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdd::iter::boxed;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts live values: a double drop or a leak shows as a count other than zero.
    struct Tracked(Rc<Cell<i64>>);
    impl Tracked {
        fn new(live: &Rc<Cell<i64>>) -> Self {
            live.set(live.get() + 1);
            Tracked(live.clone())
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    #[test]
    fn in_hash_order_depends_on_the_keys_alone() {
        // Miri runs this module's tests: small tables there.
        let sizes: &[u64] = if cfg!(miri) {
            &[0, 1, 2, 3, 17, 100]
        } else {
            &[0, 1, 2, 3, 17, 1000, 40_000]
        };
        for &n in sizes {
            let keys: Vec<u64> = (0..n)
                .map(|i| i.wrapping_mul(0x9E37_79B9) % 1_000_003)
                .collect();
            let mut grown: FxHashMap<u64, u64> = FxHashMap::default();
            for &k in &keys {
                *grown.entry(k).or_insert(0) += 1;
            }
            let mut sized: FxHashMap<u64, u64> =
                FxHashMap::with_capacity_and_hasher(4 * n as usize, Default::default());
            for &k in keys.iter().rev() {
                *sized.entry(k).or_insert(0) += 1;
            }
            let (a, b) = (in_hash_order(grown.clone()), in_hash_order(sized));
            assert_eq!(a, b, "{n} keys");
            let mut all: Vec<_> = grown.into_iter().collect();
            let mut got = a.clone();
            all.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, all, "every entry once");
        }
    }

    /// The order `in_hash_order` promises, written plainly: by the hash's low bits (as many
    /// as give each entry a slot), then by the whole hash, equal hashes in table order.
    fn by_definition<K: Hash + Eq + Clone, C: Clone>(map: &FxHashMap<K, C>) -> Vec<(K, C)> {
        let hasher = *map.hasher();
        let bits = usize::BITS - map.len().saturating_sub(1).leading_zeros();
        let mask = (1u64 << bits) - 1;
        let mut v: Vec<(u64, (K, C))> = map
            .iter()
            .map(|(k, c)| (hasher.hash_one(k), (k.clone(), c.clone())))
            .collect();
        v.sort_by_key(|(h, _)| (h & mask, *h));
        v.into_iter().map(|(_, e)| e).collect()
    }

    /// A key whose hash is its second field's: few distinct hashes, so many keys share a
    /// slot, and many the whole hash.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct FewHashes(u32, u32);
    impl Hash for FewHashes {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.1.hash(state)
        }
    }

    #[test]
    fn in_hash_order_is_by_slot_then_hash_then_table_order() {
        let sizes = if cfg!(miri) { 0..24 } else { 0..300 };
        for n in sizes {
            for distinct in [1u32, 2, 3, 5, 16, 1000] {
                let map: FxHashMap<FewHashes, u32> =
                    (0..n).map(|i| (FewHashes(i, i % distinct), i)).collect();
                let got = in_hash_order(map.clone());
                assert_eq!(got, by_definition(&map), "{n} keys, {distinct} hashes");
            }
            let ints: FxHashMap<u64, u64> = (0..u64::from(n)).map(|i| (i * 7919, i)).collect();
            assert_eq!(
                in_hash_order(ints.clone()),
                by_definition(&ints),
                "{n} keys"
            );
        }
    }

    #[test]
    fn combine_values_merges_in_place() {
        let map = combine_values(
            boxed(vec![(1, 2), (2, 5), (1, 3)].into_iter()),
            &|v: i32| v,
            &|c, v| c + v,
            &AtomicUsize::new(0),
            0,
        );
        assert_eq!(map[&1], 5);
        assert_eq!(map[&2], 5);
    }

    #[test]
    fn a_panicking_merge_drops_every_value_exactly_once() {
        let live = Rc::new(Cell::new(0));
        let l = live.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let input = boxed((0..10).map(|i| (i % 3, i)));
            combine_values(
                input,
                &|_v: i32| Tracked::new(&l),
                &|c: Tracked, v| {
                    if v == 7 {
                        panic!("merge failed");
                    }
                    c
                },
                &AtomicUsize::new(0),
                0,
            )
        }));
        assert!(result.is_err());
        assert_eq!(live.get(), 0, "no value leaked or dropped twice");
    }

    #[test]
    fn a_successful_combine_keeps_one_value_per_key() {
        let live = Rc::new(Cell::new(0));
        let l = live.clone();
        let map = combine_values(
            boxed((0..10).map(|i| (i % 3, i))),
            &|_v: i32| Tracked::new(&l),
            &|c, _| c,
            &AtomicUsize::new(0),
            0,
        );
        assert_eq!(live.get(), 3);
        drop(map);
        assert_eq!(live.get(), 0);
    }
}

#[cfg(test)]
mod partial_tests {
    use super::*;
    use crate::rdd::iter::boxed;

    fn buckets_of(input: Vec<(u64, u64)>) -> Vec<Vec<(u64, u64)>> {
        let key_fn: KeyFn<u64> = crate::Partitioner::hash(3).key_fn::<u64>().unwrap();
        combine_partially(
            boxed(input.into_iter()),
            &|v| v,
            &|a, b| a + b,
            &key_fn,
            3,
            &mut Spiller::unlimited(),
            &AtomicUsize::new(0),
        )
    }

    fn merged(buckets: Vec<Vec<(u64, u64)>>) -> std::collections::BTreeMap<u64, u64> {
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in buckets.into_iter().flatten() {
            *m.entry(k).or_insert(0) += v;
        }
        m
    }

    #[test]
    fn keys_sweeping_a_range_longer_than_the_minimum_sample_are_still_combined() {
        // 100,000 keys in order, 20 times: the first 65,536 records are all distinct.
        let input: Vec<(u64, u64)> = (0..2_000_000).map(|i| (i % 100_000, 1)).collect();
        let buckets = buckets_of(input);
        assert_eq!(buckets.iter().map(Vec::len).sum::<usize>(), 100_000);
        assert!(merged(buckets).values().all(|&c| c == 20));
    }

    #[test]
    fn repeated_keys_are_combined_fully() {
        let input: Vec<(u64, u64)> = (0..200_000).map(|i| (i % 100, 1)).collect();
        let buckets = buckets_of(input);
        assert_eq!(buckets.iter().map(Vec::len).sum::<usize>(), 100);
        assert!(merged(buckets).values().all(|&c| c == 2_000));
    }

    #[test]
    fn unique_keys_stop_combining_after_the_probe_and_lose_nothing() {
        let mut input: Vec<(u64, u64)> = (0..200_000).map(|i| (i, 1)).collect();
        input.push((5, 1)); // a repeat after the probe stays a separate combiner
        let buckets = buckets_of(input);
        assert_eq!(buckets.iter().map(Vec::len).sum::<usize>(), 200_001);
        let m = merged(buckets);
        assert_eq!(m.len(), 200_000);
        assert_eq!(m[&5], 2);
    }
}
