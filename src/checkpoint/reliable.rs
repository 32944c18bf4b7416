//! Reliable checkpoints: the write session (tee, per-partition commit, manifest commit) and
//! `ReliableCheckpointRdd` (Spark's `ReliableCheckpointRDD`), which reads committed part
//! files and has no parents.
//!
//! `ReliableCheckpointRdd`: no dependencies; keeps the partitioner recorded in the manifest.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::format::{
    self, encode_trailer, frame_body, frame_header, part_name, part_path, read_frame, FrameOrEnd,
    ManifestBody, PartHeader, PartInfo, FORMAT_VERSION, FRAME_TARGET, MANIFEST, MAX_FRAME_BYTES,
};
use super::layout::{first_difference, Layout};
use super::live::Reader;
use super::series::{read_manifest, SeriesTag};
use super::{AppDir, CheckpointCell, Codec, Compression, Storage, StorageFile};
use crate::context::Context;
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::rdd::iter::{boxed, Batcher, PartitionIterator, Sealed};
use crate::rdd::node::{
    CallSite, Compute, PartitionIter, PlacementGate, PlacementScan, RddNode, RecordCheck,
};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};

static ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// How often a part writer asks the storage to start writeback (see
/// [`StorageFile::start_writeback`]).
const WRITEBACK_EVERY: u64 = 8 << 20;

fn new_write_id() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(ATTEMPT.fetch_add(1, Ordering::Relaxed))
}

/// One attempt at writing one RDD's checkpoint.
pub(crate) struct WriteSession<T> {
    ctx: Context,
    app: Arc<AppDir>,
    rdd_id: usize,
    dir: PathBuf,
    codec: Arc<dyn Codec<T>>,
    write_id: u64,
    attempt: u64,
    num_partitions: usize,
    partitioner: Option<crate::Partitioner>,
    /// The named series this checkpoint belongs to, recorded in the manifest.
    series: Option<Arc<SeriesTag>>,
    parts: Mutex<Parts>,
    /// Every file this attempt created (temp names and final names): an abort removes these
    /// and nothing else.
    created: Mutex<Vec<PathBuf>>,
}

struct Parts {
    /// A writer is active (or done) for the partition.
    claimed: Vec<bool>,
    done: Vec<Option<PartInfo>>,
}

impl<T: Data> WriteSession<T> {
    /// Creates the attempt's own folder, `rdd-<id>-<write id>`, exclusively: a folder that
    /// exists (another run's, however unlikely the id collision) is never written into.
    pub(crate) fn begin(
        node: &RddNode<T>,
        app: Arc<AppDir>,
        codec: Arc<dyn Codec<T>>,
        series: Option<Arc<SeriesTag>>,
    ) -> Result<Arc<Self>> {
        let type_name = codec.type_name();
        if type_name.len() > usize::from(u16::MAX) {
            return Err(Error::UnreadableRecord {
                type_name: type_name.to_string(),
                reason: format!(
                    "the type name takes {} bytes; a part file header holds at most {}",
                    type_name.len(),
                    u16::MAX
                ),
            });
        }
        let (dir, write_id) = create_attempt_dir(&app, node.id)?;
        let n = node.num_partitions;
        Ok(Arc::new(WriteSession {
            ctx: node.ctx.clone(),
            app,
            rdd_id: node.id,
            dir,
            codec,
            write_id,
            attempt: ATTEMPT.fetch_add(1, Ordering::Relaxed),
            num_partitions: n,
            partitioner: node.partitioner.clone(),
            series,
            parts: Mutex::new(Parts {
                claimed: vec![false; n],
                done: vec![None; n],
            }),
            created: Mutex::new(Vec::new()),
        }))
    }

    /// Creates a new file of this attempt, remembering it for the abort.
    fn create_file(&self, path: &Path) -> Result<Box<dyn StorageFile>> {
        let file = self
            .storage()
            .create_new(path)
            .map_err(|e| Error::io("create", path, e))?;
        self.created.lock().push(path.to_path_buf());
        Ok(file)
    }

    /// Renames one of this attempt's files, never replacing anything.
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        // Remembered first: after a failed or interrupted rename the target may exist.
        self.created.lock().push(to.to_path_buf());
        self.storage()
            .rename_no_replace(from, to)
            .map_err(|e| Error::io("rename", to, e))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The app folder the attempt writes in.
    pub(crate) fn app(&self) -> &Arc<AppDir> {
        &self.app
    }

    fn storage(&self) -> &dyn Storage {
        self.app.storage.as_ref()
    }

    pub(crate) fn missing_partitions(&self) -> Vec<usize> {
        let parts = self.parts.lock();
        (0..self.num_partitions)
            .filter(|&p| parts.done[p].is_none())
            .collect()
    }

    /// Starts writing partition `split`, unless another consumer in this job already is.
    fn begin_partition(self: &Arc<Self>, split: usize) -> Result<Option<PartWriter<T>>> {
        {
            let mut parts = self.parts.lock();
            if parts.claimed[split] || parts.done[split].is_some() {
                return Ok(None);
            }
            parts.claimed[split] = true;
        }
        let temp = self
            .dir
            .join(format!(".{}.{}.tmp", part_name(split), self.attempt));
        let file = match self.create_file(&temp) {
            Ok(f) => f,
            Err(e) => {
                self.parts.lock().claimed[split] = false;
                return Err(e);
            }
        };
        let header = PartHeader {
            version: FORMAT_VERSION,
            compression: self.app.compression,
            partition: split as u32,
            rdd_id: self.rdd_id as u64,
            write_id: self.write_id,
            type_name: self.codec.type_name().to_string(),
        }
        .encode();
        let mut w = PartWriter {
            session: self.clone(),
            split,
            temp,
            file: Some(file),
            payload: Vec::with_capacity(FRAME_TARGET + 1024),
            out: Vec::with_capacity(FRAME_TARGET + 1024),
            ends: Vec::new(),
            verify: self.app.verify,
            frame_limit: self.app.frame_limit as usize,
            frame_records: 0,
            records: 0,
            frames: 0,
            bytes: 0,
            crc: 0,
            next_writeback: WRITEBACK_EVERY,
            finished: false,
        };
        w.write_bytes(&header)?;
        Ok(Some(w))
    }

    /// Commits: fsync the folder, write the manifest under a temp name, fsync it, rename it
    /// into place, fsync the folder again.
    pub(crate) fn commit(&self) -> Result<ManifestBody> {
        let parts: Vec<PartInfo> = {
            let p = self.parts.lock();
            p.done
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    d.clone().ok_or_else(|| {
                        Error::Internal(format!("partition {i} missing at checkpoint commit"))
                    })
                })
                .collect::<Result<_>>()?
        };
        let storage = self.storage();
        // Crash guard: makes every part rename durable before a manifest can name them. A
        // crash before this leaves parts without a manifest: "not committed", recomputed.
        if self.app.fsync {
            storage
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync folder", &self.dir, e))?;
        }
        let manifest = ManifestBody {
            format: "flintlock-checkpoint".to_string(),
            version: FORMAT_VERSION,
            write_id: self.write_id,
            rdd_id: self.rdd_id as u64,
            app_id: self.ctx.app_id().to_string(),
            element_type: self.codec.type_name().to_string(),
            type_fingerprint: format::type_fingerprint(self.codec.type_name()),
            compression: self.app.compression,
            num_partitions: self.num_partitions,
            // A range partitioner whose bounds could not be encoded cannot be recorded.
            partitioner: self.partitioner.clone().filter(|p| p.is_recordable()),
            parts,
            element_layout: self.codec.layout().map(|l| l.text().to_string()),
            written_at: Some(
                humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            ),
            series: self.series.as_ref().map(|t| t.entry.clone()),
        };
        let bytes = manifest.encode()?;
        let temp = self.dir.join(format!(".manifest.{}.tmp", self.attempt));
        let mut f = self.create_file(&temp)?;
        f.write_all(&bytes)
            .and_then(|_| f.flush())
            .map_err(|e| Error::io("write", &temp, e))?;
        // Crash guard: the manifest's bytes are durable before its name can appear; a crash
        // before the rename leaves only a temp file, which is not a commit.
        if self.app.fsync {
            f.sync().map_err(|e| Error::io("fsync", &temp, e))?;
        }
        drop(f);
        let final_path = self.dir.join(MANIFEST);
        // The commit point. No-replace: an existing manifest is never overwritten.
        self.rename(&temp, &final_path)?;
        // Crash guard: makes the commit durable. Until this returns, a power loss may undo
        // the rename (then: not committed, recomputed); lineage is released only after it.
        if self.app.fsync {
            storage
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync folder", &self.dir, e))?;
            // Crash guard: the checkpoint's folder itself is durable in the app folder, so a
            // power loss after the commit cannot lose the whole folder (a resume needs it).
            storage
                .sync_dir(self.app.dir())
                .map_err(|e| Error::io("fsync folder", self.app.dir(), e))?;
        }
        let bytes_total: u64 = manifest.parts.iter().map(|p| p.bytes).sum();
        self.ctx.inner.emit(Event::CheckpointCommitted {
            rdd_id: self.rdd_id,
            path: self.dir.clone(),
            bytes: bytes_total,
        });
        Ok(manifest)
    }

    /// Removes the files this attempt created, then its folder if nothing else is in it,
    /// and makes the removal durable. Nothing this attempt did not create is touched.
    pub(crate) fn abort(&self) {
        let storage = self.storage();
        let created = std::mem::take(&mut *self.created.lock());
        for path in created.iter().rev() {
            let _ = storage.remove_file(path);
        }
        let _ = storage.remove_dir(&self.dir);
        if self.app.fsync {
            let _ = storage.sync_dir(self.app.dir());
        }
    }
}

/// Creates a new attempt folder exclusively, drawing another write id on the (astronomically
/// unlikely) collision with an existing folder.
fn create_attempt_dir(app: &AppDir, rdd_id: usize) -> Result<(PathBuf, u64)> {
    let mut last = None;
    for _ in 0..8 {
        let write_id = new_write_id();
        let dir = app.rdd_dir(rdd_id, write_id);
        match app.storage.create_dir(&dir) {
            Ok(()) => return Ok((dir, write_id)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((dir, e)),
            Err(e) => return Err(Error::io("create folder", &dir, e)),
        }
    }
    let (dir, e) = last.expect("the loop ran");
    Err(Error::io("create folder", &dir, e))
}

/// Writes one partition file as records pass through the tee.
struct PartWriter<T: Data> {
    session: Arc<WriteSession<T>>,
    split: usize,
    temp: PathBuf,
    file: Option<Box<dyn StorageFile>>,
    payload: Vec<u8>,
    out: Vec<u8>,
    /// Where each record of the current frame ends in `payload` (only when verifying).
    ends: Vec<u32>,
    verify: bool,
    /// The largest payload a frame may have (the reader's limit, or a lower one).
    frame_limit: usize,
    frame_records: u32,
    records: u64,
    frames: u32,
    bytes: u64,
    crc: u32,
    next_writeback: u64,
    finished: bool,
}

impl<T: Data> PartWriter<T> {
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("partition writer used after close".into()))?;
        file.write_all(bytes)
            .map_err(|e| Error::io("write", &self.temp, e))?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        if self.session.app.fsync && self.bytes >= self.next_writeback {
            // Start writing back what is written so far, so the fsync at the end of the
            // partition finds little left and the disk works while the task computes.
            file.start_writeback();
            self.next_writeback = self.bytes + WRITEBACK_EVERY;
        }
        Ok(())
    }

    /// An [`Error::UnreadableRecord`] about record `index` (in the partition).
    fn unreadable(&self, index: u64, why: String) -> Error {
        Error::UnreadableRecord {
            type_name: self.session.codec.type_name().to_string(),
            reason: format!("partition {}, record {index}: {why}", self.split),
        }
    }

    fn push(&mut self, x: &T) -> Result<()> {
        let start = self.payload.len();
        if let Err(e) = self.session.codec.encode(x, &mut self.payload) {
            self.payload.truncate(start);
            return Err(self.unreadable(self.records, format!("it does not encode: {e}")));
        }
        let len = self.payload.len() - start;
        if len > self.frame_limit {
            self.payload.truncate(start);
            return Err(self.unreadable(
                self.records,
                format!(
                    "it encodes to {len} bytes, more than a checkpoint frame may hold ({} \
                     bytes, the reader's limit); split such records into smaller ones",
                    self.frame_limit
                ),
            ));
        }
        if self.payload.len() > self.frame_limit {
            // The record fits a frame of its own: close the frame before it.
            let own = self.payload.split_off(start);
            self.flush_frame()?;
            self.payload = own;
        }
        self.frame_records += 1;
        self.records += 1;
        if self.verify {
            self.ends.push(self.payload.len() as u32);
        }
        if self.payload.len() >= FRAME_TARGET.min(self.frame_limit)
            || self.frame_records == u32::MAX
        {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.frame_records == 0 {
            return Ok(());
        }
        if self.verify {
            // The writer accepts only what the reader reads back: every record must decode
            // from exactly its own bytes. A failure fails the write before any rename.
            if let Err((i, why)) = self.session.codec.verify_frame(&self.payload, &self.ends) {
                let index = self.records - u64::from(self.frame_records) + i as u64;
                return Err(self.unreadable(index, why));
            }
            self.ends.clear();
        }
        if self.frames == u32::MAX - 1 {
            return Err(self.unreadable(
                self.records,
                format!("a part file holds at most {} frames", u32::MAX - 1),
            ));
        }
        let payload = std::mem::take(&mut self.payload);
        let mut scratch = std::mem::take(&mut self.out);
        let body = frame_body(&payload, self.session.app.compression, &mut scratch);
        let r = if body.len() > MAX_FRAME_BYTES as usize {
            Err(self.unreadable(
                self.records,
                format!(
                    "the compressed frame takes {} bytes, more than a reader accepts ({})",
                    body.len(),
                    MAX_FRAME_BYTES
                ),
            ))
        } else {
            let header = frame_header(body, self.frame_records);
            // Header and body as two writes: no copy of the body into a frame buffer.
            self.write_bytes(&header)
                .and_then(|()| self.write_bytes(body))
        };
        self.out = scratch;
        self.payload = payload;
        self.payload.clear();
        self.frame_records = 0;
        self.frames += 1;
        r
    }

    /// Last frame, trailer, flush, fsync, no-replace rename to `part-NNNNN`.
    fn finish(&mut self) -> Result<()> {
        self.flush_frame()?;
        let trailer = encode_trailer(self.records, self.frames);
        self.write_bytes(&trailer)?;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| Error::Internal("partition writer finished twice".into()))?;
        file.flush()
            .map_err(|e| Error::io("flush", &self.temp, e))?;
        // Crash guard: the part's bytes are durable before its final name exists, so a
        // manifest can never name a part whose data a crash could still lose.
        if self.session.app.fsync {
            file.sync().map_err(|e| Error::io("fsync", &self.temp, e))?;
        }
        drop(file);
        let session = &self.session;
        let final_path = part_path(&session.dir, self.split);
        // No-replace: a part written by an earlier attempt is never silently overwritten.
        session.rename(&self.temp, &final_path)?;
        self.finished = true;
        session.parts.lock().done[self.split] = Some(PartInfo {
            file: part_name(self.split),
            bytes: self.bytes,
            records: self.records,
            crc32c: self.crc,
        });
        session.ctx.inner.emit(Event::CheckpointPartitionWritten {
            rdd_id: session.rdd_id,
            partition: self.split,
            records: self.records,
            bytes: self.bytes,
        });
        Ok(())
    }
}

impl<T: Data> Drop for PartWriter<T> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // The consumer stopped early (take) or an error ended the partition: remove the temp
        // file and let the completion step compute the partition again.
        drop(self.file.take());
        let _ = self.session.storage().remove_file(&self.temp);
        self.session.parts.lock().claimed[self.split] = false;
    }
}

/// The tee: passes records through and writes them to the partition file; the file is
/// committed when the source is exhausted.
pub(crate) fn tee<T: Data>(
    session: Arc<WriteSession<T>>,
    split: usize,
    tc: &TaskContext,
    source: PartitionIter<T>,
) -> PartitionIter<T> {
    match session.begin_partition(split) {
        Ok(Some(writer)) => Box::new(Tee {
            source,
            writer: Some(writer),
            tc: tc.clone(),
            ready: VecDeque::new(),
            batch: 1,
        }),
        Ok(None) => source,
        Err(e) => {
            tc.fail(e);
            boxed(std::iter::empty())
        }
    }
}

/// The largest batch the tee pulls from its source before encoding it.
const TEE_BATCH: usize = 256;

/// Pulls records from the source in batches, encodes a batch in one tight loop, then hands
/// its records on by move (no clone).
///
/// Why batches: encoding each record right after computing it interleaves two very
/// different loops; measured on a CPU-heavy `map`, that costs about 35% more than the
/// computation alone, against about 7% when a batch is computed first and then encoded
/// (varint branches no longer disturb the user's arithmetic). Batches start at one record
/// and double up to [`TEE_BATCH`], so `take(1)` still computes exactly one record.
struct Tee<T: Data> {
    source: PartitionIter<T>,
    writer: Option<PartWriter<T>>,
    tc: TaskContext,
    ready: VecDeque<T>,
    batch: usize,
}

impl<T: Data> Tee<T> {
    /// Pulls and encodes the next batch; commits the file when the source is exhausted.
    fn fill(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let mut exhausted = false;
        for _ in 0..self.batch {
            match self.source.next() {
                Some(x) => self.ready.push_back(x),
                None => {
                    exhausted = true;
                    break;
                }
            }
        }
        self.batch = (self.batch * 2).min(TEE_BATCH);
        for x in &self.ready {
            if let Err(e) = writer.push(x) {
                self.tc.fail(e);
                self.writer = None;
                self.ready.clear();
                return;
            }
        }
        if exhausted {
            // Only a partition that was computed without error is committed.
            if !self.tc.has_failed() {
                if let Err(e) = writer.finish() {
                    self.tc.fail(e);
                    self.ready.clear();
                }
            }
            self.writer = None;
        }
    }
}

impl<T: Data> Sealed for Tee<T> {}

impl<T: Data> PartitionIterator<T> for Tee<T> {
    /// Drains the source in batches, encoding each batch in one loop before pushing it on
    /// (by move), and commits the file at the end. After an error the task has failed: the
    /// rest of the source is drained and dropped.
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        let Tee {
            source,
            writer,
            tc,
            ready,
            batch: _,
        } = *self;
        // What a partial pull already encoded.
        if !ready.is_empty() {
            sink(&mut ready.into_iter().collect());
        }
        let Some(mut writer) = writer else {
            return; // finished or failed while pulled
        };
        let mut failed = false;
        // The last batch is held back until the file is committed, so a consumer never
        // sees the end of a partition whose file then fails.
        let mut held: Vec<T> = Vec::new();
        source.drain_batches(&mut |b| {
            if failed {
                b.clear();
                return;
            }
            if let Err(e) = b.iter().try_for_each(|x| writer.push(x)) {
                tc.fail(e);
                failed = true;
                b.clear();
                return;
            }
            if !held.is_empty() {
                sink(&mut held);
                held.clear();
            }
            std::mem::swap(&mut held, b);
        });
        // Only a partition that was computed without error is committed.
        if !failed && !tc.has_failed() {
            match writer.finish() {
                Ok(()) => {
                    if !held.is_empty() {
                        sink(&mut held);
                    }
                }
                Err(e) => tc.fail(e),
            }
        }
        // An unfinished writer removes its temp file when dropped.
    }
}

impl<T: Data> Iterator for Tee<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.ready.is_empty() {
            self.fill();
        }
        self.ready.pop_front()
    }

    /// The source's, plus what is encoded and waiting: a join whose build side is a
    /// just-marked RDD sizes its table from it instead of growing it from empty.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let ready = self.ready.len();
        if self.writer.is_none() {
            return (ready, Some(ready)); // finished or failed: only `ready` is left
        }
        let (low, high) = self.source.size_hint();
        (
            low.saturating_add(ready),
            high.and_then(|h| h.checked_add(ready)),
        )
    }
}

/// What a `ReliableCheckpointRdd` reads: a verified manifest and its folder.
pub(crate) struct CheckpointFiles<T> {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    manifest: ManifestBody,
    codec: Arc<dyn Codec<T>>,
    /// This RDD reads the folder: nothing deletes it meanwhile (see `live`). Declared before
    /// `_app`, so a requested deletion happens before the app folder may go.
    _reader: Reader,
    /// For a checkpoint this context wrote: its app folder, kept (and locked) while read.
    _app: Option<Arc<AppDir>>,
}

/// `ReliableCheckpointRdd`: reads the committed part files of one checkpoint.
pub(crate) struct ReliableCheckpointRdd<T> {
    files: Arc<CheckpointFiles<T>>,
    /// The checkpointed node's partitioner, or the one its manifest records.
    partitioner: Option<crate::Partitioner>,
}

impl<T: Data> Compute<T> for ReliableCheckpointRdd<T> {
    fn name(&self) -> &'static str {
        "ReliableCheckpointRdd"
    }
    fn num_partitions(&self) -> usize {
        self.files.manifest.num_partitions
    }
    fn partitioner(&self) -> Option<crate::Partitioner> {
        self.partitioner.clone()
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<PartitionIter<T>> {
        let reader = PartReader::open(self.files.clone(), split, tc.clone())?;
        Ok(Box::new(reader))
    }
}

/// Streams one part file, verifying as it goes.
struct PartReader<T> {
    files: Arc<CheckpointFiles<T>>,
    split: usize,
    path: PathBuf,
    reader: Option<BufReader<Box<dyn Read + Send>>>,
    compression: Compression,
    offset: u64,
    crc: u32,
    records: u64,
    /// The record count the (verified) manifest gives for this part.
    expected_records: u64,
    frames: u32,
    buffer: std::vec::IntoIter<T>,
    payload: Vec<u8>,
    scratch: Vec<u8>,
    tc: TaskContext,
}

impl<T: Data> PartReader<T> {
    fn open(files: Arc<CheckpointFiles<T>>, split: usize, tc: TaskContext) -> Result<Self> {
        let path = part_path(&files.dir, split);
        let expected = files
            .manifest
            .parts
            .get(split)
            .ok_or_else(|| {
                Error::corrupt(&files.dir, format!("no partition {split} in the manifest"))
            })?
            .clone();
        check_part_len(files.storage.as_ref(), &path, split, expected.bytes)?;
        let raw = files
            .storage
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        // Small: frame bodies (64 KiB) are larger, so they bypass it and are read straight into
        // the frame buffer; headers and trailers are served from it.
        let mut reader = BufReader::with_capacity(8 * 1024, raw);
        let (header, header_bytes) = PartHeader::read(&mut reader, &path)?;
        check_header(&header, &files.manifest, split, &path)?;
        Ok(PartReader {
            split,
            crc: crc32c::crc32c(&header_bytes),
            offset: header_bytes.len() as u64,
            compression: header.compression,
            files,
            path,
            reader: Some(reader),
            records: 0,
            expected_records: expected.records,
            frames: 0,
            buffer: Vec::new().into_iter(),
            payload: Vec::new(),
            scratch: Vec::new(),
            tc,
        })
    }

    /// Reads the next frame into the buffer; `Ok(false)` at the verified end.
    fn refill(&mut self) -> Result<bool> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        match read_frame(
            reader,
            &self.path,
            self.offset,
            self.files.manifest.parts[self.split].bytes,
            self.compression,
            &mut self.crc,
            &mut self.payload,
            &mut self.scratch,
        )? {
            FrameOrEnd::Frame(records, body_len) => {
                let at = self.offset;
                self.offset += (format::FRAME_HEADER + body_len) as u64;
                let items = self
                    .files
                    .codec
                    .decode_frame(&self.payload, records)
                    .map_err(|m| {
                        Error::corrupt(
                            &self.path,
                            format!("partition {}: frame at offset {at}: {m}", self.split),
                        )
                    })?;
                self.records += u64::from(records);
                self.frames += 1;
                self.buffer = items.into_iter();
                Ok(true)
            }
            FrameOrEnd::End(total, frames) => {
                self.reader = None;
                let expected = &self.files.manifest.parts[self.split];
                if total != self.records || frames != self.frames {
                    return Err(Error::corrupt(
                        &self.path,
                        format!(
                            "partition {}: trailer counts {total} records in {frames} frames, read {} in {}",
                            self.split, self.records, self.frames
                        ),
                    ));
                }
                if total != expected.records {
                    return Err(Error::corrupt(
                        &self.path,
                        format!(
                            "partition {}: {total} records, the manifest records {}",
                            self.split, expected.records
                        ),
                    ));
                }
                if self.crc != expected.crc32c {
                    return Err(Error::corrupt(
                        &self.path,
                        format!(
                            "partition {}: file checksum {:08x} differs from the manifest's {:08x}",
                            self.split, self.crc, expected.crc32c
                        ),
                    ));
                }
                Ok(false)
            }
        }
    }
}

impl<T: Data> PartReader<T> {
    /// Decodes the next frame into the buffer: false at the end or after an error (then
    /// recorded in the task).
    fn refill_or_fail(&mut self) -> bool {
        match self.refill() {
            Ok(more) => more,
            Err(e) => {
                self.reader = None;
                self.tc.fail(e);
                false
            }
        }
    }
}

impl<T: Data> Sealed for PartReader<T> {}

impl<T: Data> PartitionIterator<T> for PartReader<T> {
    fn drain_batches(mut self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        let mut out = Batcher::new(sink);
        loop {
            self.buffer.by_ref().for_each(|x| out.push(x));
            if !self.refill_or_fail() {
                break;
            }
        }
        out.finish();
    }
}

impl<T: Data> Iterator for PartReader<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.buffer.next() {
                return Some(x);
            }
            if !self.refill_or_fail() {
                return None;
            }
        }
    }

    /// Exact, from the manifest's record count: consumers size their tables from it (a join
    /// building its table from a checkpoint grew it from empty, and inserting keys in
    /// another table's order into a growing table of the same hash function clusters
    /// them: 5x the cost of the build). A damaged file ends the stream early, with the
    /// error recorded and the task failed.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.expected_records.saturating_sub(self.records) as usize + self.buffer.len();
        (left, Some(left))
    }
}

/// Fails unless the part file at `path` has the length the manifest records: a truncated or
/// extended file is caught before a byte of it is read.
fn check_part_len(storage: &dyn Storage, path: &Path, split: usize, expected: u64) -> Result<()> {
    let len = storage.len(path).map_err(|e| Error::io("open", path, e))?;
    if len != expected {
        return Err(Error::corrupt(
            path,
            format!(
                "partition {split}: length mismatch: the manifest records {expected} bytes, the file has {len}"
            ),
        ));
    }
    Ok(())
}

fn check_header(h: &PartHeader, m: &ManifestBody, split: usize, path: &Path) -> Result<()> {
    if h.partition as usize != split {
        return Err(Error::corrupt(
            path,
            format!(
                "holds partition {} where partition {split} was expected (a part file copied over another)",
                h.partition
            ),
        ));
    }
    if h.write_id != m.write_id || h.rdd_id != m.rdd_id {
        return Err(Error::corrupt(
            path,
            format!(
                "partition {split}: written by another checkpoint (rdd {}, write {:016x}) than the manifest's (rdd {}, write {:016x})",
                h.rdd_id, h.write_id, m.rdd_id, m.write_id
            ),
        ));
    }
    if h.type_name != m.element_type {
        return Err(Error::TypeMismatch {
            path: path.to_path_buf(),
            expected: m.element_type.clone(),
            found: h.type_name.clone(),
            difference: None,
        });
    }
    Ok(())
}

/// Builds the checkpoint RDD that replaces a freshly committed node's lineage. Its
/// partitioner is the node's own: this build placed the keys, so it is trusted.
pub(crate) fn checkpoint_rdd<T: Data>(
    node: &RddNode<T>,
    session: &WriteSession<T>,
    manifest: ManifestBody,
    codec: Arc<dyn Codec<T>>,
    site: CallSite,
) -> Rdd<T> {
    let reader = Reader::register(&session.dir);
    if node.ctx.inner.config.clean_checkpoints {
        reader.delete_when_unread(session.app.storage.clone());
    }
    let files = Arc::new(CheckpointFiles {
        dir: session.dir.clone(),
        storage: session.app.storage.clone(),
        manifest,
        codec,
        _reader: reader,
        _app: Some(session.app.clone()),
    });
    new_checkpoint_node(&node.ctx, files, node.partitioner.clone(), None, site)
}

fn new_checkpoint_node<T: Data>(
    ctx: &Context,
    files: Arc<CheckpointFiles<T>>,
    partitioner: Option<crate::Partitioner>,
    scan: Option<PlacementScan<T>>,
    site: CallSite,
) -> Rdd<T> {
    let path = files.dir.clone();
    let rdd = ReliableCheckpointRdd { files, partitioner };
    let mut node = RddNode::new(ctx.clone(), site, Arc::new(rdd));
    node.checkpoint = CheckpointCell::for_checkpoint_node(Some(path));
    node.placement = scan.map(|p| Arc::new(PlacementGate::new(node.id, p)));
    Rdd::from_node(node)
}

/// Streams every record of a checkpoint, fully verified as any read is, through `check`
/// (the placement check of a reopened checkpoint); stops at the first record it rejects.
fn scan_records<T: Data>(
    files: &Arc<CheckpointFiles<T>>,
    ctx: &Context,
    check: &mut RecordCheck<'_, T>,
) -> Result<std::result::Result<(), String>> {
    for split in 0..files.manifest.num_partitions {
        let tc = TaskContext::detached(ctx);
        let mut reader = PartReader::open(files.clone(), split, tc.clone())?;
        for record in reader.by_ref() {
            if let Err(why) = check(split, &record) {
                return Ok(Err(why));
            }
        }
        if let Some(e) = tc.take_failure() {
            return Err(e);
        }
    }
    Ok(Ok(()))
}

/// `Context::open_checkpoint`: verifies a committed checkpoint folder and returns an RDD
/// reading it.
pub(crate) fn open_checkpoint<T: Data>(
    ctx: &Context,
    path: &Path,
    codec: Arc<dyn Codec<T>>,
    site: CallSite,
) -> Result<Rdd<T>> {
    let storage: Arc<dyn Storage> = ctx.inner.config.storage.clone();
    // Registered before anything is checked: a cleanup that removes the folder has either
    // done so already (then it is missing below) or waits for this reader.
    let reader = Reader::register(path);
    let names = storage.list(path).map_err(|e| Error::io("open", path, e))?;
    if !names.iter().any(|n| n == MANIFEST) {
        return Err(Error::NotCommitted {
            path: path.to_path_buf(),
        });
    }
    let manifest_path = path.join(MANIFEST);
    let manifest = read_manifest(storage.as_ref(), &manifest_path)?;
    check_element_type(&manifest, codec.as_ref(), &manifest_path)?;
    for (i, part) in manifest.parts.iter().enumerate() {
        if !names.contains(&part.file) {
            return Err(Error::corrupt(
                path.join(&part.file),
                format!("partition {i}: part file is missing"),
            ));
        }
    }
    if let Some(extra) = names
        .iter()
        .find(|n| n.starts_with("part-") && !manifest.parts.iter().any(|p| &p.file == *n))
    {
        return Err(Error::corrupt(
            path.join(extra),
            format!(
                "unexpected part file: the manifest lists {} partitions",
                manifest.num_partitions
            ),
        ));
    }
    for (i, part) in manifest.parts.iter().enumerate() {
        check_part_len(storage.as_ref(), &path.join(&part.file), i, part.bytes)?;
    }
    let partitioner = manifest.partitioner.clone();
    let files = Arc::new(CheckpointFiles {
        dir: path.to_path_buf(),
        storage,
        manifest,
        codec,
        _reader: reader,
        _app: None,
    });
    // Another build wrote it, perhaps: its placement is checked before it is relied on.
    let scan: Option<PlacementScan<T>> = partitioner.as_ref().map(|_| {
        let scan_files = files.clone();
        let scan_ctx = ctx.clone();
        Box::new(move |check: &mut RecordCheck<'_, T>| scan_records(&scan_files, &scan_ctx, check))
            as PlacementScan<T>
    });
    Ok(new_checkpoint_node(ctx, files, partitioner, scan, site))
}

/// Checks that the checkpoint holds elements of the codec's type. When both the manifest
/// (format 2) and this build can describe the type's structure, the layouts decide: a type
/// whose name is unchanged but whose fields or variants changed is a mismatch, and a type
/// that moved to another module with an unchanged layout reads fine. Otherwise (format 1,
/// or a type that cannot be traced) the type names must be equal.
fn check_element_type<T>(manifest: &ManifestBody, codec: &dyn Codec<T>, path: &Path) -> Result<()> {
    let mismatch = |difference| Error::TypeMismatch {
        path: path.to_path_buf(),
        expected: codec.type_name().to_string(),
        found: manifest.element_type.clone(),
        difference,
    };
    match (&manifest.element_layout, codec.layout()) {
        (Some(written), Some(read)) => {
            let written = Layout::from_text(written.clone());
            if written != read {
                return Err(mismatch(Some(first_difference(&written, &read))));
            }
            Ok(())
        }
        _ if manifest.element_type != codec.type_name() => Err(mismatch(None)),
        _ => Ok(()),
    }
}
