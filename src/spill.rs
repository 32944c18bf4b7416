//! The memory budget and shuffle spilling ([`ContextBuilder::memory_limit`]).
//!
//! Without a limit nothing here runs: shuffle outputs stay in memory while their RDD lives.
//! With one, shuffle data is budgeted in two halves:
//! - **Map tasks** building their buckets (or their map-side combine table) each get a share
//!   of half the limit (`limit / 2 / threads`). A task whose buffers outgrow its share
//!   writes them to its spill file as a *run* (one segment of checksummed frames per
//!   bucket) and goes on with empty buffers.
//! - **Finished map outputs** are kept in memory while they fit in the other half; an output
//!   that does not fit, or whose task spilled, is written to disk whole. The reduce side
//!   reads a spilled bucket's segments back (checking every frame) when its task starts.
//!
//! Spilling needs a codec for the shuffled records: `(K, V)` pairs of the common primitive
//! types and `String` have one built in; [`Context::register_spillable`] adds any
//! `Serialize + DeserializeOwned` type. Records without one stay in memory past the limit
//! and the context says so once per type on stderr.
//!
//! Spill files use the checkpoint format's frames (length, record count, CRC-32C of both and
//! the body; postcard records) and live in one temporary folder per context (under
//! [`ContextBuilder::spill_dir`], else the system's temporary folder), removed with the map
//! output that owns them and with the context.
//!
//! [`ContextBuilder::memory_limit`]: crate::ContextBuilder::memory_limit
//! [`ContextBuilder::spill_dir`]: crate::ContextBuilder::spill_dir
//! [`Context::register_spillable`]: crate::Context::register_spillable

use std::any::{Any, TypeId};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::codec::{codec_for, Codec};
use crate::checkpoint::format::{frame_header, FRAME_HEADER};
use crate::error::{Error, Result};

/// The payload size at which a spill frame is closed.
const SPILL_FRAME_BYTES: usize = 64 << 10;

/// Records encoded to estimate the heap bytes a record owns, before the first spill gives
/// the exact figure.
const SAMPLE_RECORDS: usize = 32;

/// The least a map task buffers before it writes a run, whatever the limit: a run writes a
/// segment (24 bytes of index in memory, a 12-byte frame header on disk, a read of its own
/// later) for every bucket it holds records of, so runs of a few records each cost more
/// memory and time than the records (measured: 96 MB of index for 64 MB of records at a
/// 1-byte limit, 25x slower).
const MIN_TASK_BUFFER: u64 = 256 << 10;

/// Size checks (one per chunk of up to 64 records) between two samples of the records'
/// heap.
const RESAMPLE_EVERY: u32 = 64;

/// Byte counters shared by the manager and the reservations it hands out.
#[derive(Default)]
struct Counters {
    /// Estimated bytes of finished map outputs kept in memory under the limit.
    kept: AtomicU64,
    /// Bytes in spill files that are still referenced.
    on_disk: AtomicU64,
    /// Spill files alive.
    files: AtomicUsize,
    /// Map outputs kept in memory past the limit because their records have no codec.
    unspillable: AtomicUsize,
}

/// The context's memory budget, spill folder and spill codecs.
pub(crate) struct MemoryManager {
    limit: Option<u64>,
    threads: usize,
    base: Option<PathBuf>,
    dir: Mutex<Option<Arc<tempfile::TempDir>>>,
    counters: Arc<Counters>,
    codecs: RwLock<FxHashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    warned: Mutex<FxHashSet<TypeId>>,
    next_file: AtomicU64,
    /// Map outputs kept in memory, oldest first: written out to make room for newer ones.
    evictable: Mutex<VecDeque<Weak<dyn Evict>>>,
}

impl MemoryManager {
    pub(crate) fn new(limit: Option<u64>, threads: usize, base: Option<PathBuf>) -> Self {
        let m = MemoryManager {
            limit,
            threads: threads.max(1),
            base,
            dir: Mutex::new(None),
            counters: Arc::default(),
            codecs: RwLock::default(),
            warned: Mutex::default(),
            next_file: AtomicU64::new(0),
            evictable: Mutex::default(),
        };
        register_builtin_codecs(&m);
        m
    }

    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Adds (or replaces) the spill codec of `T`, and of `(T, ())`: the pairs `distinct`
    /// and the set operations shuffle.
    pub(crate) fn register<T: Serialize + DeserializeOwned + Send + Sync + 'static>(&self) {
        self.register_one::<T>();
        self.register_one::<(T, ())>();
    }

    fn register_one<T: Serialize + DeserializeOwned + Send + Sync + 'static>(&self) {
        let codec: Arc<dyn Codec<T>> = codec_for::<T>();
        self.codecs.write().insert(
            TypeId::of::<T>(),
            Arc::new(codec) as Arc<dyn Any + Send + Sync>,
        );
    }

    pub(crate) fn codec<T: 'static>(&self) -> Option<Arc<dyn Codec<T>>> {
        let any = self.codecs.read().get(&TypeId::of::<T>())?.clone();
        any.downcast_ref::<Arc<dyn Codec<T>>>().cloned()
    }

    /// What one map task may buffer before it spills a run.
    fn task_share(&self) -> Option<u64> {
        self.limit
            .map(|l| (l / 2 / self.threads as u64).max(MIN_TASK_BUFFER))
    }

    /// Reserves `bytes` of the half of the limit that holds finished map outputs, writing
    /// the oldest kept outputs to disk while it does not fit (an iterative job's newest
    /// shuffle is the one its next step reads).
    fn try_keep(&self, bytes: u64) -> Option<Reservation> {
        // Each queued output is tried once per call: one that cannot be written now (a
        // full disk) goes back to the end of the queue, to be tried again later.
        let mut tries = self.evictable.lock().len();
        loop {
            if let Some(r) = self.try_reserve(bytes) {
                return Some(r);
            }
            if tries == 0 {
                return None;
            }
            tries -= 1;
            let oldest = self.evictable.lock().pop_front()?;
            if let Some(output) = oldest.upgrade()
                && !output.evict()
                && output.is_kept()
            {
                self.evictable.lock().push_back(oldest);
            }
        }
    }

    /// Queues a kept output for eviction, dropping the queue's entries of outputs gone
    /// since (their shuffles were dropped without ever needing the room).
    fn queue_evictable(&self, output: Weak<dyn Evict>) {
        let mut queue = self.evictable.lock();
        while queue.front().is_some_and(|w| w.strong_count() == 0) {
            queue.pop_front();
        }
        if queue.len() >= 64 && queue.len().is_power_of_two() {
            queue.retain(|w| w.strong_count() > 0);
        }
        queue.push_back(output);
    }

    fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let cap = self.limit? / 2;
        let mut now = self.counters.kept.load(Ordering::Relaxed);
        loop {
            if now.saturating_add(bytes) > cap {
                return None;
            }
            match self.counters.kept.compare_exchange_weak(
                now,
                now + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        counters: self.counters.clone(),
                        bytes,
                    })
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Says once per type, on stderr, that records of `T` cannot spill.
    fn warn_unspillable<T: 'static>(&self) {
        self.counters.unspillable.fetch_add(1, Ordering::Relaxed);
        if self.warned.lock().insert(TypeId::of::<T>()) {
            eprintln!(
                "flintlock: memory_limit: shuffle records of type `{}` have no spill codec and \
                 stay in memory past the limit; call Context::register_spillable::<{0}>()",
                std::any::type_name::<T>()
            );
        }
    }

    /// A new spill file in the context's spill folder (made on first use).
    fn create_file(&self, what: &str) -> Result<SpillFileWriter> {
        let dir = {
            let mut dir = self.dir.lock();
            match &*dir {
                // A folder removed under a live context (a temp cleaner) is made again.
                Some(d) if d.path().is_dir() => d.clone(),
                _ => {
                    let base = self.base.clone().unwrap_or_else(std::env::temp_dir);
                    let made = tempfile::Builder::new()
                        .prefix("flintlock-spill-")
                        .tempdir_in(&base)
                        .map_err(|e| Error::io("create a spill folder in", &base, e))?;
                    let made = Arc::new(made);
                    *dir = Some(made.clone());
                    made
                }
            }
        };
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = dir.path().join(format!("{what}-{n}.spill"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        self.counters.files.fetch_add(1, Ordering::Relaxed);
        Ok(SpillFileWriter {
            file: SpillFile {
                path,
                bytes: 0,
                counters: self.counters.clone(),
                _dir: dir,
            },
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
        })
    }

    /// (kept bytes, bytes on disk, live spill files, unspillable outputs).
    pub(crate) fn stats(&self) -> (u64, u64, usize, usize) {
        let c = &self.counters;
        (
            c.kept.load(Ordering::Relaxed),
            c.on_disk.load(Ordering::Relaxed),
            c.files.load(Ordering::Relaxed),
            c.unspillable.load(Ordering::Relaxed),
        )
    }
}

/// Bytes of the budget held by a finished map output kept in memory; given back on drop.
pub(crate) struct Reservation {
    counters: Arc<Counters>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counters.kept.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A spill file; removed when the last map output reading it is dropped.
pub(crate) struct SpillFile {
    path: PathBuf,
    /// Its length, set when it is finished (before it is shared).
    bytes: u64,
    counters: Arc<Counters>,
    /// Keeps the folder alive while the file is.
    _dir: Arc<tempfile::TempDir>,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        self.counters
            .on_disk
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.counters.files.fetch_sub(1, Ordering::AcqRel);
    }
}

struct SpillFileWriter {
    file: SpillFile,
    out: BufWriter<File>,
    offset: u64,
}

impl SpillFileWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("write", &self.file.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<Arc<SpillFile>> {
        self.out
            .flush()
            .map_err(|e| Error::io("write", &self.file.path, e))?;
        self.file.bytes = self.offset;
        self.file
            .counters
            .on_disk
            .fetch_add(self.offset, Ordering::AcqRel);
        let SpillFileWriter { file, .. } = self;
        Ok(Arc::new(file))
    }
}

/// Where one bucket's records of one run lie in a spill file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    offset: u64,
    len: u64,
    records: u64,
}

/// One reduce partition's records in one map output.
pub(crate) enum Bucket<T> {
    Memory(Arc<Vec<T>>),
    Spilled {
        file: Arc<SpillFile>,
        segments: Vec<Segment>,
    },
    /// Held by another process of the cluster (the owner of its reduce partition). A stage
    /// whose task here reads it has it sent first (`scheduler::executor::move_buckets`).
    Elsewhere {
        process: usize,
    },
}

impl<T> Clone for Bucket<T> {
    fn clone(&self) -> Self {
        match self {
            Bucket::Memory(v) => Bucket::Memory(v.clone()),
            Bucket::Spilled { file, segments } => Bucket::Spilled {
                file: file.clone(),
                segments: segments.clone(),
            },
            Bucket::Elsewhere { process } => Bucket::Elsewhere { process: *process },
        }
    }
}

impl<T> Bucket<T> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Bucket::Memory(v) => v.len(),
            Bucket::Spilled { segments, .. } => segments.iter().map(|s| s.records as usize).sum(),
            Bucket::Elsewhere { .. } => 0,
        }
    }
}

impl<T: 'static> Bucket<T> {
    /// The bucket's records: shared when in memory, read back and checked when spilled.
    pub(crate) fn load(&self, codec: Option<&dyn Codec<T>>) -> Result<Arc<Vec<T>>> {
        let (file, segments) = match self {
            Bucket::Memory(v) => return Ok(v.clone()),
            Bucket::Spilled { file, segments } => (file, segments),
            Bucket::Elsewhere { process } => {
                return Err(Error::Cluster {
                    process: Some(*process),
                    message: format!(
                        "a task needs a shuffle bucket held by process {process}, which the \
                         stage's plan did not move here (a dependency this version does not \
                         map; please report it with the lineage)"
                    ),
                })
            }
        };
        let codec = codec.ok_or_else(|| {
            Error::Internal(format!(
                "spill file {} has no codec for `{}` to read it",
                file.path.display(),
                std::any::type_name::<T>()
            ))
        })?;
        let corrupt = |reason: String| Error::SpillDamaged {
            path: file.path.clone(),
            reason,
        };
        // A spill file that is gone or cut short is damaged like one with a bad checksum:
        // the shuffle runs again.
        let lost = |op: &str, e: std::io::Error| Error::SpillDamaged {
            path: file.path.clone(),
            reason: format!("cannot {op} it: {e}"),
        };
        let mut f = File::open(&file.path).map_err(|e| lost("open", e))?;
        let mut out = Vec::with_capacity(self.len());
        let mut bytes = Vec::new();
        for s in segments {
            bytes.resize(s.len as usize, 0);
            f.seek(SeekFrom::Start(s.offset))
                .and_then(|_| f.read_exact(&mut bytes))
                .map_err(|e| lost("read", e))?;
            let mut rest = &bytes[..];
            let mut records = 0u64;
            while !rest.is_empty() {
                if rest.len() < FRAME_HEADER {
                    return Err(corrupt(format!(
                        "segment at {} ends in a frame header",
                        s.offset
                    )));
                }
                let len = u32::from_le_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
                let n = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
                if rest.len() - FRAME_HEADER < len {
                    return Err(corrupt(format!("frame in segment at {} is cut", s.offset)));
                }
                let body = &rest[FRAME_HEADER..FRAME_HEADER + len];
                if frame_header(body, n)[..] != rest[..FRAME_HEADER] {
                    return Err(corrupt(format!(
                        "frame in segment at {}: checksum mismatch",
                        s.offset
                    )));
                }
                // The frame checked: bytes that do not decode are the type's serde form,
                // not damage (running the shuffle again would fail the same way).
                let decoded =
                    codec
                        .decode_frame(body, n)
                        .map_err(|reason| Error::UnspillableRecord {
                            type_name: std::any::type_name::<T>().to_string(),
                            reason: format!(
                                "a record written to disk does not read back: {reason}"
                            ),
                        })?;
                out.extend(decoded);
                records += u64::from(n);
                rest = &rest[FRAME_HEADER + len..];
            }
            if records != s.records {
                return Err(corrupt(format!(
                    "segment at {} holds {records} records, {} were written",
                    s.offset, s.records
                )));
            }
        }
        Ok(Arc::new(out))
    }
}

/// One map task's output: a bucket per reduce partition, and, while it is kept in memory
/// under the limit, the budget it holds and what it takes to write it out.
pub(crate) struct MapOutputData<T> {
    buckets: RwLock<Vec<Bucket<T>>>,
    kept: Mutex<Option<Kept<T>>>,
}

/// A map output kept in memory under the limit: evictable to disk.
struct Kept<T> {
    _reservation: Reservation,
    /// `None` for records without a codec (kept past the limit, never evicted).
    codec: Option<Arc<dyn Codec<T>>>,
    manager: Arc<MemoryManager>,
    what: String,
}

impl<T: Send + Sync + 'static> MapOutputData<T> {
    fn new(buckets: Vec<Bucket<T>>, kept: Option<Kept<T>>) -> Arc<Self> {
        let evictable = kept.as_ref().is_some_and(|k| k.codec.is_some());
        let manager = kept.as_ref().map(|k| k.manager.clone());
        let out = Arc::new(MapOutputData {
            buckets: RwLock::new(buckets),
            kept: Mutex::new(kept),
        });
        if let (true, Some(m)) = (evictable, manager) {
            let weak: Weak<dyn Evict> = Arc::downgrade(&(out.clone() as Arc<dyn Evict>));
            m.queue_evictable(weak);
        }
        out
    }

    /// Reduce partition `split`'s bucket.
    pub(crate) fn bucket(&self, split: usize) -> Option<Bucket<T>> {
        self.buckets.read().get(split).cloned()
    }

    /// Replaces reduce partition `split`'s bucket (one held by another process of a
    /// cluster, sent here for a task that reads it).
    pub(crate) fn set_bucket(&self, split: usize, bucket: Bucket<T>) -> bool {
        match self.buckets.write().get_mut(split) {
            Some(slot) => {
                *slot = bucket;
                true
            }
            None => false,
        }
    }

    /// An output of the given buckets, outside the memory budget: what a process of a
    /// cluster keeps of a shuffle (its own reduce partitions' buckets, from every map task).
    pub(crate) fn assembled(buckets: Vec<Bucket<T>>) -> Arc<Self> {
        MapOutputData::new(buckets, None)
    }
}

/// A finished map output the manager may write to disk to make room, oldest first.
trait Evict: Send + Sync {
    /// Writes the output to disk and gives its budget back. False when it is not kept in
    /// memory any more, or the write failed (it then stays in memory).
    fn evict(&self) -> bool;
    /// Whether the output is (still) kept in memory under the budget.
    fn is_kept(&self) -> bool;
}

impl<T: Send + Sync + 'static> Evict for MapOutputData<T> {
    fn is_kept(&self) -> bool {
        self.kept.lock().is_some()
    }

    fn evict(&self) -> bool {
        let Some(kept) = self.kept.lock().take() else {
            return false;
        };
        let Some(codec) = kept.codec.clone() else {
            *self.kept.lock() = Some(kept);
            return false;
        };
        let memory: Vec<Arc<Vec<T>>> = self
            .buckets
            .read()
            .iter()
            .map(|b| match b {
                Bucket::Memory(v) => v.clone(),
                Bucket::Spilled { .. } | Bucket::Elsewhere { .. } => Arc::new(Vec::new()),
            })
            .collect();
        let mut a = Active::new(&kept.manager, Some(codec), kept.what.clone(), memory.len());
        let written = a
            .try_spill_run(memory.iter().map(|v| v.as_slice()))
            .and_then(|()| a.into_spilled());
        match written {
            Ok(spilled) => {
                *self.buckets.write() = spilled;
                drop(kept);
                true
            }
            Err(_) => {
                // A full disk: the output stays in memory, holding its budget.
                *self.kept.lock() = Some(kept);
                false
            }
        }
    }
}

/// A map task's spilling state: nothing when the context has no limit.
pub(crate) struct Spiller<T> {
    active: Option<Active<T>>,
    /// Records added since the last check, and in the buffers.
    buffered: usize,
}

struct Active<T> {
    manager: Arc<MemoryManager>,
    codec: Option<Arc<dyn Codec<T>>>,
    share: u64,
    /// Estimated heap bytes a record owns (encoded size, a conservative stand-in).
    heap_per_record: Option<f64>,
    /// Size checks so far (see [`Active::resample`]).
    checks: u32,
    what: String,
    writer: Option<SpillFileWriter>,
    segments: Vec<Vec<Segment>>,
    payload: Vec<u8>,
    /// Whether each record is decoded again as it is encoded, and the value read back
    /// compared with the one written (as a checkpoint's are): what goes to disk is the
    /// only copy until it is read. Off for exact codecs, which have nothing to check.
    verify: bool,
    error: Option<Error>,
}

impl<T: 'static> Spiller<T> {
    /// No limit: buffers grow as they need, outputs stay in memory.
    pub(crate) fn unlimited() -> Self {
        Spiller {
            active: None,
            buffered: 0,
        }
    }

    /// The spiller of map task `what` (names its file) under `manager`'s limit, if any.
    pub(crate) fn new(manager: &Arc<MemoryManager>, what: String, buckets: usize) -> Self {
        let Some(share) = manager.task_share() else {
            return Self::unlimited();
        };
        let mut active = Active::new(manager, manager.codec::<T>(), what, buckets);
        active.share = share;
        Spiller {
            active: Some(active),
            buffered: 0,
        }
    }

    /// How many records (by their own size) the task may buffer, when a limit applies: a
    /// cap for buffers sized in advance.
    pub(crate) fn record_share(&self) -> Option<usize> {
        let a = self.active.as_ref()?;
        Some((a.share as usize / std::mem::size_of::<T>().max(1)).max(1))
    }

    /// Whether a limit applies (the per-chunk checks are skipped otherwise).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// After `added` more records went into `buckets`: writes them out as a run when they
    /// outgrow the task's share.
    pub(crate) fn after_push(&mut self, added: usize, buckets: &mut [Vec<T>]) {
        self.buffered += added;
        let Some(a) = &mut self.active else { return };
        if a.codec.is_none() || a.error.is_some() {
            return;
        }
        let per = a.per_record(|| buckets.iter().flat_map(|b| b.iter()));
        if (self.buffered as f64) * per <= a.share as f64 {
            return;
        }
        a.spill_run(buckets.iter_mut().map(std::mem::take));
        self.buffered = 0;
    }

    /// After `added` records went through a combine table now holding `entries` (table
    /// `capacity`, entries of `entry_bytes`): whether the table outgrew the task's share and
    /// should be handed to [`Spiller::spill_buckets`].
    pub(crate) fn table_over(
        &mut self,
        entries: impl Iterator<Item = T>,
        len: usize,
        capacity: usize,
        entry_bytes: usize,
    ) -> bool {
        let Some(a) = &mut self.active else {
            return false;
        };
        if a.codec.is_none() || a.error.is_some() {
            return false;
        }
        let heap = a.heap_estimate(entries);
        (capacity * (entry_bytes + 1)) as f64 + len as f64 * heap > a.share as f64
    }

    /// Writes `buckets` out as one run.
    pub(crate) fn spill_buckets(&mut self, buckets: Vec<Vec<T>>) {
        if let Some(a) = &mut self.active {
            a.spill_run(buckets.into_iter());
        }
    }

    /// The task's output: in memory when nothing was spilled and it fits the budget,
    /// otherwise written out (a spill error fails the task).
    pub(crate) fn finish(self, buckets: Vec<Vec<T>>) -> Result<Arc<MapOutputData<T>>>
    where
        T: Send + Sync,
    {
        let in_memory = |buckets: Vec<Vec<T>>, kept| {
            let buckets = buckets
                .into_iter()
                .map(|b| Bucket::Memory(Arc::new(b)))
                .collect();
            MapOutputData::new(buckets, kept)
        };
        let Some(mut a) = self.active else {
            return Ok(in_memory(buckets, None));
        };
        if let Some(e) = a.error.take() {
            return Err(e);
        }
        if a.writer.is_none() {
            let per = a.per_record(|| buckets.iter().flat_map(|b| b.iter()));
            let slack: usize = buckets.iter().map(|b| b.capacity() - b.len()).sum();
            let records: usize = buckets.iter().map(Vec::len).sum();
            let bytes = (records as f64 * per) as u64 + (slack * std::mem::size_of::<T>()) as u64;
            if let Some(reservation) = a.manager.try_keep(bytes) {
                let kept = Kept {
                    _reservation: reservation,
                    codec: a.codec.clone(),
                    manager: a.manager.clone(),
                    what: a.what.clone(),
                };
                return Ok(in_memory(buckets, Some(kept)));
            }
            if a.codec.is_none() {
                a.manager.warn_unspillable::<T>();
                return Ok(in_memory(buckets, None));
            }
        }
        a.spill_run(buckets.into_iter());
        if let Some(e) = a.error.take() {
            return Err(e);
        }
        Ok(MapOutputData::new(a.into_spilled()?, None))
    }
}

/// Writes one cached block to a spill file of its own (`persist(DiskOnly)`, or
/// `MemoryAndDisk` beyond the budget). Fails when `T` has no spill codec, naming the
/// registration that would give it one.
pub(crate) fn spill_block<T: 'static>(
    manager: &Arc<MemoryManager>,
    what: String,
    data: &[T],
) -> Result<Bucket<T>> {
    let Some(codec) = manager.codec::<T>() else {
        return Err(Error::InvalidArgument(format!(
            "a block of `{0}` cannot be stored on disk: it has no spill codec; call \
             Context::register_spillable::<{0}>() before persisting with a disk level",
            std::any::type_name::<T>()
        )));
    };
    if data.is_empty() {
        // Nothing to write: no file for an empty partition.
        return Ok(Bucket::Memory(Arc::new(Vec::new())));
    }
    let mut a = Active::new(manager, Some(codec), what, 1);
    a.try_spill_run(std::iter::once(data))?;
    a.into_spilled()?
        .pop()
        .ok_or_else(|| Error::Internal("a spilled block has no bucket".into()))
}

/// Reserves the budget for a cached block kept in memory (making room by writing the
/// oldest kept shuffle outputs to disk): `None` when it does not fit even so; `Some` of
/// nothing to hold when no limit applies.
pub(crate) fn reserve_block<T: 'static>(
    manager: &MemoryManager,
    data: &[T],
) -> Option<Option<Reservation>> {
    if manager.limit.is_none() {
        return Some(None);
    }
    let heap = manager.codec::<T>().and_then(|codec| {
        let sample = &data[..data.len().min(SAMPLE_RECORDS)];
        let mut buf = Vec::new();
        for r in sample {
            codec.encode(r, &mut buf).ok()?;
        }
        (!sample.is_empty()).then(|| buf.len() as f64 / sample.len() as f64)
    });
    let per = std::mem::size_of::<T>() as f64 + heap.unwrap_or(0.0);
    manager.try_keep((data.len() as f64 * per) as u64).map(Some)
}

impl<T: 'static> Active<T> {
    fn new(
        manager: &Arc<MemoryManager>,
        codec: Option<Arc<dyn Codec<T>>>,
        what: String,
        buckets: usize,
    ) -> Self {
        Active {
            manager: manager.clone(),
            verify: codec.as_ref().is_some_and(|c| !c.exact()),
            codec,
            share: 0,
            heap_per_record: None,
            checks: 0,
            what,
            writer: None,
            segments: (0..buckets).map(|_| Vec::new()).collect(),
            payload: Vec::new(),
            error: None,
        }
    }

    /// Bytes a buffered record takes: its own size and the estimated heap it owns.
    fn per_record<'a, I: Iterator<Item = &'a T>>(&mut self, records: impl FnOnce() -> I) -> f64
    where
        T: 'a,
    {
        if self.resample() {
            let sample = self.sample_heap(records().take(SAMPLE_RECORDS));
            self.keep_sample(sample);
        }
        std::mem::size_of::<T>() as f64 + self.heap_per_record.unwrap_or(0.0)
    }

    fn heap_estimate(&mut self, records: impl Iterator<Item = T>) -> f64 {
        if self.resample() {
            let sampled: Vec<T> = records.take(SAMPLE_RECORDS).collect();
            let sample = self.sample_heap(sampled.iter());
            self.keep_sample(sample);
        }
        self.heap_per_record.unwrap_or(0.0)
    }

    /// Whether to sample the records' heap again: until a sample exists, and every
    /// [`RESAMPLE_EVERY`] checks after, since combiners (a `Vec` a key's values are pushed
    /// to) grow as the task runs.
    fn resample(&mut self) -> bool {
        self.checks = self.checks.wrapping_add(1);
        self.heap_per_record.is_none() || self.checks.is_multiple_of(RESAMPLE_EVERY)
    }

    /// Keeps the larger of the estimate so far and a new sample.
    fn keep_sample(&mut self, sample: Option<f64>) {
        if let Some(s) = sample {
            self.heap_per_record = Some(self.heap_per_record.map_or(s, |old| old.max(s)));
        }
    }

    fn sample_heap<'a>(&mut self, records: impl Iterator<Item = &'a T>) -> Option<f64>
    where
        T: 'a,
    {
        let codec = self.codec.as_ref()?;
        let mut buf = Vec::new();
        let (mut n, mut bytes) = (0usize, 0usize);
        for r in records {
            buf.clear();
            if codec.encode(r, &mut buf).is_err() {
                return None;
            }
            n += 1;
            bytes += buf.len();
        }
        (n > 0).then(|| bytes as f64 / n as f64)
    }

    /// Closes the spill file (an empty one when nothing was written) and returns the
    /// buckets as its segments.
    fn into_spilled(mut self) -> Result<Vec<Bucket<T>>> {
        let writer = match self.writer.take() {
            Some(w) => w,
            None => self.manager.create_file(&self.what)?,
        };
        let file = writer.finish()?;
        Ok(self
            .segments
            .into_iter()
            .map(|segments| Bucket::Spilled {
                file: file.clone(),
                segments,
            })
            .collect())
    }

    /// Appends one segment per non-empty bucket to the spill file.
    fn spill_run<B: AsRef<[T]>>(&mut self, buckets: impl Iterator<Item = B>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.try_spill_run(buckets) {
            self.error = Some(e);
        }
    }

    fn try_spill_run<B: AsRef<[T]>>(&mut self, buckets: impl Iterator<Item = B>) -> Result<()> {
        let Some(codec) = self.codec.clone() else {
            return Err(Error::Internal("spill without a codec".into()));
        };
        if self.writer.is_none() {
            self.writer = Some(self.manager.create_file(&self.what)?);
        }
        let (mut bytes, mut records) = (0usize, 0usize);
        for (b, bucket) in buckets.enumerate() {
            let bucket = bucket.as_ref();
            if bucket.is_empty() {
                continue;
            }
            let writer = self.writer.as_mut().expect("created above");
            let start = writer.offset;
            let mut n = 0u32;
            let mut write_frame = |payload: &mut Vec<u8>, n: &mut u32| -> Result<()> {
                if *n > 0 {
                    writer.write(&frame_header(payload, *n))?;
                    writer.write(payload)?;
                }
                payload.clear();
                *n = 0;
                Ok(())
            };
            for r in bucket {
                let encoded = if self.verify {
                    codec.encode_checked(r, &mut self.payload)
                } else {
                    codec.encode(r, &mut self.payload)
                };
                encoded.map_err(|reason| Error::UnspillableRecord {
                    type_name: std::any::type_name::<T>().to_string(),
                    reason: format!("a record of {}: {reason}", self.what),
                })?;
                n += 1;
                if self.payload.len() >= SPILL_FRAME_BYTES {
                    write_frame(&mut self.payload, &mut n)?;
                }
            }
            write_frame(&mut self.payload, &mut n)?;
            let writer = self.writer.as_ref().expect("created above");
            bytes += (writer.offset - start) as usize;
            records += bucket.len();
            self.segments[b].push(Segment {
                offset: start,
                len: writer.offset - start,
                records: bucket.len() as u64,
            });
        }
        if records > 0 {
            // The exact encoded size from now on.
            self.heap_per_record = Some(bytes as f64 / records as f64);
        }
        Ok(())
    }
}

/// Registers the spill codecs of `(K, V)` pairs of common types, and of those types and
/// pairs in the `(x, ())` form of `distinct` and the set operations.
fn register_builtin_codecs(m: &MemoryManager) {
    macro_rules! pairs {
        ($($k:ty),*; $vs:tt) => { $( m.register::<$k>(); pairs!(@one $k; $vs); )* };
        (@one $k:ty; [$($v:ty),*]) => { $( m.register::<($k, $v)>(); )* };
    }
    pairs!(u32, u64, i32, i64, usize, String;
        [u32, u64, i32, i64, usize, f32, f64, bool, String]);
    // Single values of the other primitive types (action results in cluster mode).
    m.register::<u8>();
    m.register::<u16>();
    m.register::<i8>();
    m.register::<i16>();
    m.register::<f32>();
    m.register::<f64>();
    m.register::<bool>();
    m.register::<char>();
}
