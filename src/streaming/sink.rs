//! Outputs: `foreach_rdd` (at-least-once) and sinks (exactly-once), with the built-in
//! [`FileSink`].

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::dstream::DNode;
use super::{Batch, BatchId, BatchRun};
use crate::checkpoint::format::{seal_json, unseal_json};
use crate::checkpoint::{LocalFs, Storage, StorageLock};
use crate::error::{Error, Result};
use crate::{Data, Rdd};

/// An output as the driver sees it.
pub(crate) trait OutputOps: Send + Sync {
    fn run(&self, run: &BatchRun<'_>) -> Result<()>;
}

/// Where a stream's batches go, exactly once.
///
/// The contract: [`Sink::write`] is idempotent per batch id (writing batch `b` again, with
/// the same data, changes nothing), and [`Sink::last_committed`] says which batches are
/// already written. The stream skips a batch the sink reports written and otherwise writes
/// it; since a replayed batch computes the same RDD, every batch reaches the sink exactly
/// once: **exactly-once = deterministic replay + a batch-keyed sink**.
pub trait Sink<T: Data>: Send + Sync + 'static {
    /// The newest batch id this sink has durably written, if any.
    ///
    /// # Errors
    /// When the sink's storage cannot be read; the batch then fails.
    fn last_committed(&self) -> Result<Option<BatchId>>;

    /// Writes `batch`'s RDD; writing a batch that is already written must change nothing.
    ///
    /// # Errors
    /// Any failure: the batch is not committed, and a restart writes it again.
    fn write(&self, batch: Batch, rdd: &Rdd<T>) -> Result<()>;
}

struct ForeachOutput<T: Data, F> {
    node: Arc<DNode<T>>,
    f: F,
}

impl<T, F> OutputOps for ForeachOutput<T, F>
where
    T: Data,
    F: Fn(&Rdd<T>, Batch) -> Result<()> + Send + Sync,
{
    fn run(&self, run: &BatchRun<'_>) -> Result<()> {
        if !self.node.active(run.batch.id) {
            return Ok(()); // a window between its slides
        }
        (self.f)(&self.node.rdd(run)?, run.batch)
    }
}

pub(crate) fn foreach_output<T: Data>(
    _name: &str,
    node: Arc<DNode<T>>,
    f: impl Fn(&Rdd<T>, Batch) -> Result<()> + Send + Sync + 'static,
) -> Arc<dyn OutputOps> {
    Arc::new(ForeachOutput { node, f })
}

struct SinkOutput<T: Data, S> {
    name: String,
    node: Arc<DNode<T>>,
    sink: S,
}

impl<T: Data, S: Sink<T>> OutputOps for SinkOutput<T, S> {
    fn run(&self, run: &BatchRun<'_>) -> Result<()> {
        if !self.node.active(run.batch.id) {
            return Ok(()); // a window between its slides
        }
        if let Some(last) = self.sink.last_committed()?
            && last >= run.batch.id
        {
            if run.written_upto.is_some_and(|w| last <= w) {
                return Ok(()); // written by an earlier run of this batch: exactly once
            }
            return Err(Error::InvalidArgument(format!(
                "sink `{}` already holds batch {last}, which this stream has no record \
                     of running (it is about to write batch {} for the first time): the \
                     sink holds another stream's output, or this stream's plan of that \
                     batch was lost from its checkpoint folder; give the sink an empty \
                     folder, or remove its batches from {} on",
                self.name, run.batch.id, run.batch.id
            )));
        }
        self.sink.write(run.batch, &self.node.rdd(run)?)
    }
}

pub(crate) fn sink_output<T: Data>(
    name: &str,
    node: Arc<DNode<T>>,
    sink: impl Sink<T>,
) -> Arc<dyn OutputOps> {
    Arc::new(SinkOutput {
        name: name.to_string(),
        node,
        sink,
    })
}

/// The record of a committed batch folder of a [`FileSink`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SinkManifest {
    format: String,
    version: u32,
    batch: BatchId,
    time_nanos: u64,
    parts: Vec<SinkPart>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct SinkPart {
    file: String,
    bytes: u64,
    lines: u64,
    crc32c: u32,
}

const SINK_FORMAT: &str = "flintlock-file-sink";
const SINK_VERSION: u32 = 1;
/// The file that commits a batch folder of a [`FileSink`].
pub const SINK_MANIFEST: &str = "_SUCCESS";

/// An exactly-once sink writing each batch as text, one line per element (`Display`), to
/// its own folder `<dir>/batch-<id, 20 digits>/`: a part file per partition
/// (`part-00000`, ...) and a `_SUCCESS` manifest listing them with their sizes and
/// CRC-32C. Each file is written under a temp name, fsynced and renamed without replacing;
/// `_SUCCESS` is written last and is the commit. A folder without it (a crash mid-write) is
/// removed and written again; a folder with it is never changed (but for a temp name a
/// crash left beside its files, removed when the sink is opened).
///
/// The sink locks its folder: two streams cannot write into one.
pub struct FileSink {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    fsync: bool,
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    lock: Option<Box<dyn StorageLock>>,
    /// The newest committed batch, once the folder was scanned.
    last: Option<Option<BatchId>>,
}

impl fmt::Debug for FileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSink")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileSink {
    /// A sink writing under `dir` (created when missing) on the local filesystem.
    pub fn new(dir: impl AsRef<Path>) -> FileSink {
        FileSink {
            dir: dir.as_ref().to_path_buf(),
            storage: Arc::new(LocalFs),
            fsync: true,
            state: Mutex::new(SinkState::default()),
        }
    }

    /// Writes through `storage` instead of the local filesystem (tests inject faults here).
    /// The storage must have locks: an object store (`S3Storage`, whose locks are leases)
    /// is refused with [`Error::InvalidArgument`] when the sink is first used, as is an
    /// `s3://` folder.
    pub fn with_storage(mut self, storage: Arc<dyn Storage>) -> FileSink {
        self.storage = storage;
        self
    }

    /// Whether files are fsynced (default true). Without it a power loss can lose or tear a
    /// batch that was reported written.
    pub fn fsync(mut self, fsync: bool) -> FileSink {
        self.fsync = fsync;
        self
    }

    /// The folder of batch `batch`.
    pub fn batch_dir(&self, batch: BatchId) -> PathBuf {
        self.dir.join(format!("batch-{batch:020}"))
    }

    /// Takes the folder's lock and scans it once; returns the state guard.
    fn open(&self) -> Result<parking_lot::MutexGuard<'_, SinkState>> {
        let mut st = self.state.lock();
        if st.lock.is_none() {
            // Exactly-once output rests on one writer per folder.
            super::meta::require_locks(self.storage.as_ref(), &self.dir, "a sink's folder")?;
            self.storage
                .create_dir_all(&self.dir)
                .map_err(|e| Error::io("create folder", &self.dir, e))?;
            let path = self.dir.join(".lock");
            let lock = self
                .storage
                .try_lock(&path)
                .map_err(|e| Error::io("lock", &path, e))?
                .ok_or(Error::Locked { path })?;
            st.lock = Some(lock);
        }
        if st.last.is_none() {
            let names = self
                .storage
                .list(&self.dir)
                .map_err(|e| Error::io("list", &self.dir, e))?;
            let mut last = None;
            for n in names {
                let Some(b) = n
                    .strip_prefix("batch-")
                    .and_then(|s| s.parse::<BatchId>().ok())
                else {
                    continue;
                };
                let dir = self.batch_dir(b);
                let inner = self.listing(&dir)?.unwrap_or_default();
                if holds_manifest(&inner) {
                    last = last.max(Some(b));
                    // A crash between the hard link and the unlink of a no-replace rename
                    // leaves the temp name in a committed folder (we hold the lock: no
                    // write is live).
                    for t in inner.iter().filter(|n| n.ends_with(".tmp")) {
                        let _ = self.storage.remove_file(&dir.join(t));
                    }
                }
            }
            st.last = Some(last);
        }
        Ok(st)
    }

    /// The names in `dir`, `None` when there is no such folder. Any other failure to list
    /// it is an error: taken for "no folder", one failed listing (too many open files, an
    /// I/O error, a store's timeout) made a committed batch look uncommitted, and `write`
    /// then removed it to write it again.
    fn listing(&self, dir: &Path) -> Result<Option<Vec<String>>> {
        match self.storage.list(dir) {
            Ok(names) => Ok(Some(names)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io("list", dir, e)),
        }
    }

    fn is_committed(&self, batch: BatchId) -> Result<bool> {
        let names = self.listing(&self.batch_dir(batch))?;
        Ok(names.is_some_and(|names| holds_manifest(&names)))
    }

    /// Reads back the lines of committed batch `batch`, verifying every part against the
    /// manifest: what a downstream reader of the sink does. `None` when the batch is not
    /// committed.
    ///
    /// # Errors
    /// A damaged manifest or part file ([`Error::CorruptCheckpoint`]), an I/O error.
    pub fn read_batch(&self, batch: BatchId) -> Result<Option<Vec<String>>> {
        let dir = self.batch_dir(batch);
        if !self.is_committed(batch)? {
            return Ok(None);
        }
        let path = dir.join(SINK_MANIFEST);
        let bytes = read_all(self.storage.as_ref(), &path)?;
        let body = unseal_json("sink", &bytes, &path)?;
        let m: SinkManifest = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(&path, format!("sink manifest does not parse: {e}")))?;
        if m.format != SINK_FORMAT || m.version > SINK_VERSION || m.batch != batch {
            return Err(Error::corrupt(
                &path,
                "not this sink's manifest of this batch",
            ));
        }
        let mut lines = Vec::new();
        for p in &m.parts {
            let file = dir.join(&p.file);
            let data = read_all(self.storage.as_ref(), &file)?;
            if data.len() as u64 != p.bytes || crc32c::crc32c(&data) != p.crc32c {
                return Err(Error::corrupt(
                    &file,
                    "size or checksum differs from the manifest",
                ));
            }
            let text = String::from_utf8(data).map_err(|_| Error::corrupt(&file, "not UTF-8"))?;
            let before = lines.len();
            lines.extend(text.lines().map(str::to_string));
            if (lines.len() - before) as u64 != p.lines {
                return Err(Error::corrupt(
                    &file,
                    format!(
                        "{} lines, the manifest records {}",
                        lines.len() - before,
                        p.lines
                    ),
                ));
            }
        }
        Ok(Some(lines))
    }

    /// Writes one durable file of the batch folder (temp, fsync, no-replace rename).
    fn write_file(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        static TEMP: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let target = dir.join(name);
        let mut f = self
            .storage
            .create_new(&temp)
            .map_err(|e| Error::io("create", &temp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.flush())
            .map_err(|e| Error::io("write", &temp, e))?;
        if self.fsync {
            f.sync().map_err(|e| Error::io("fsync", &temp, e))?;
        }
        drop(f);
        self.storage
            .rename_no_replace(&temp, &target)
            .map_err(|e| Error::io("rename", &target, e))
    }
}

/// Whether a batch folder's names include the sink's manifest: the batch is committed.
fn holds_manifest(names: &[String]) -> bool {
    names.iter().any(|n| n == SINK_MANIFEST)
}

fn read_all(storage: &dyn Storage, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    storage
        .open(path)
        .and_then(|mut r| r.read_to_end(&mut bytes))
        .map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

impl<T: Data + fmt::Display> Sink<T> for FileSink {
    fn last_committed(&self) -> Result<Option<BatchId>> {
        Ok(self.open()?.last.flatten())
    }

    fn write(&self, batch: Batch, rdd: &Rdd<T>) -> Result<()> {
        let mut st = self.open()?;
        let dir = self.batch_dir(batch.id);
        // One listing decides both: committed (nothing to do), or a folder without the
        // manifest, an interrupted write of ours (we hold the lock), removed to start over.
        match self.listing(&dir)? {
            Some(names) if holds_manifest(&names) => {
                st.last = Some(st.last.flatten().max(Some(batch.id)));
                return Ok(()); // already written: idempotent
            }
            Some(_) => self
                .storage
                .remove_dir_all(&dir)
                .map_err(|e| Error::io("remove", &dir, e))?,
            None => {}
        }
        self.storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create folder", &dir, e))?;
        // Each partition is formatted by its task; the driver writes the files in order.
        let texts = rdd
            .map_partitions_with_index(|i, it| {
                let mut text = String::new();
                let mut lines = 0u64;
                let mut broken = None;
                for x in it {
                    use std::fmt::Write as _;
                    let start = text.len();
                    let _ = write!(text, "{x}");
                    if broken.is_none() && text[start..].contains(['\n', '\r']) {
                        broken = Some(text[start..].chars().take(60).collect::<String>());
                    }
                    text.push('\n');
                    lines += 1;
                }
                std::iter::once((i, text, lines, broken))
            })
            .collect()?;
        if let Some((_, _, _, Some(element))) = texts.iter().find(|t| t.3.is_some()) {
            // Nothing is written: the folder stays uncommitted and is replaced by a retry.
            return Err(Error::InvalidArgument(format!(
                "FileSink writes one line per element, but an element of batch {} displays \
                 with a line break: {element:?}; map elements to single-line text first",
                batch.id
            )));
        }
        let mut parts = Vec::with_capacity(texts.len());
        for (i, text, lines, _) in texts {
            let file = format!("part-{i:05}");
            self.write_file(&dir, &file, text.as_bytes())?;
            parts.push(SinkPart {
                file,
                bytes: text.len() as u64,
                lines,
                crc32c: crc32c::crc32c(text.as_bytes()),
            });
        }
        // Crash guard: the part names are durable before the manifest can name them.
        if self.fsync {
            self.storage
                .sync_dir(&dir)
                .map_err(|e| Error::io("fsync folder", &dir, e))?;
        }
        let manifest = SinkManifest {
            format: SINK_FORMAT.to_string(),
            version: SINK_VERSION,
            batch: batch.id,
            time_nanos: batch.time.as_nanos() as u64,
            parts,
        };
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("cannot encode a sink manifest: {e}")))?;
        // The commit point of the batch.
        self.write_file(&dir, SINK_MANIFEST, &seal_json("sink", &body))?;
        if self.fsync {
            self.storage
                .sync_dir(&dir)
                .map_err(|e| Error::io("fsync folder", &dir, e))?;
            self.storage
                .sync_dir(&self.dir)
                .map_err(|e| Error::io("fsync folder", &self.dir, e))?;
        }
        st.last = Some(st.last.flatten().max(Some(batch.id)));
        Ok(())
    }
}
