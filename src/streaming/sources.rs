//! Input streams: a queue of RDDs and new files in a folder. Each records in the batch's
//! plan exactly what it read (a replay token), so a replayed batch reads the same input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::meta::{FileEntry, ReplayToken, SourcePosition, StreamDir};
use super::{BatchId, BatchRun, DStream, StreamingContext};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{Data, Rdd};

/// A source as the driver sees it, untyped.
pub(crate) trait SourceOps: Send + Sync {
    fn name(&self) -> &str;
    /// Gives the source the stream's checkpoint folder when the stream starts
    /// (`newest_plan`: the newest batch planned in it).
    fn attach(
        &self,
        _meta: &StreamDir,
        _ctx: &Context,
        _newest_plan: Option<BatchId>,
    ) -> Result<()> {
        Ok(())
    }
    /// What batch `batch` reads, from the current position (which does not move yet).
    fn plan(&self, ctx: &Context, batch: BatchId) -> Result<ReplayToken>;
    /// Moves the position past a batch that read `token` (after the batch committed, or
    /// while recovery replays it).
    fn advance(&self, token: &ReplayToken);
    /// The position after the last batch.
    fn position(&self) -> SourcePosition;
    /// Restores the position recorded in a commit (`None`: the start).
    fn restore(&self, position: Option<&SourcePosition>) -> Result<()>;
    /// The folder a file source reads.
    fn folder(&self) -> Option<&Path> {
        None
    }
    /// Removes what the source keeps for batches older than `low_water` (run after a
    /// commit with that low water is durable).
    fn retain(&self, _low_water: BatchId) {}
    /// Starts background work (a socket's receiver) when the stream starts.
    fn start(&self) -> Result<()> {
        Ok(())
    }
    /// Stops background work (the stream is dropped).
    fn shutdown(&self) {}
}

/// A queue of RDDs for tests and demos: batch after batch, the stream reads the next RDD
/// in the queue (one per batch; an empty batch when none is left). RDDs are kept, never
/// popped, so a recovered stream replays a batch by its index into the queue: rebuild the
/// queue with the same RDDs in `get_or_create`'s build function.
///
/// Clones share one queue: push from the test while the stream runs.
pub struct RddQueue<T: Data> {
    rdds: Arc<Mutex<Vec<Rdd<T>>>>,
}

impl<T: Data> Clone for RddQueue<T> {
    fn clone(&self) -> Self {
        RddQueue {
            rdds: self.rdds.clone(),
        }
    }
}

impl<T: Data> fmt::Debug for RddQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RddQueue")
            .field("len", &self.rdds.lock().len())
            .finish()
    }
}

impl<T: Data> Default for RddQueue<T> {
    fn default() -> Self {
        RddQueue::new()
    }
}

impl<T: Data> RddQueue<T> {
    /// An empty queue.
    pub fn new() -> RddQueue<T> {
        RddQueue {
            rdds: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A queue holding `rdds`, in order.
    pub fn from_rdds(rdds: impl IntoIterator<Item = Rdd<T>>) -> RddQueue<T> {
        let q = RddQueue::new();
        q.rdds.lock().extend(rdds);
        q
    }

    /// Appends an RDD: read by the first batch that finds it.
    pub fn push(&self, rdd: Rdd<T>) {
        self.rdds.lock().push(rdd);
    }

    /// How many RDDs were pushed.
    pub fn len(&self) -> usize {
        self.rdds.lock().len()
    }

    /// Whether none was pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct QueueSource<T: Data> {
    name: String,
    queue: RddQueue<T>,
    next: Mutex<u64>,
}

impl<T: Data> SourceOps for QueueSource<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan(&self, _ctx: &Context, _batch: BatchId) -> Result<ReplayToken> {
        let from = *self.next.lock();
        let to = if (from as usize) < self.queue.len() {
            from + 1
        } else {
            from
        };
        Ok(ReplayToken::Queue { from, to })
    }

    fn advance(&self, token: &ReplayToken) {
        if let ReplayToken::Queue { to, .. } = token {
            *self.next.lock() = *to;
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Queue {
            next: *self.next.lock(),
        }
    }

    fn restore(&self, position: Option<&SourcePosition>) -> Result<()> {
        *self.next.lock() = match position {
            None => 0,
            Some(SourcePosition::Queue { next }) => *next,
            Some(other) => return Err(wrong_kind(&self.name, other)),
        };
        Ok(())
    }
}

impl<T: Data> QueueSource<T> {
    fn rdd(&self, run: &BatchRun<'_>) -> Result<Rdd<T>> {
        match token(run, &self.name)? {
            ReplayToken::Queue { from, to } if from < to => {
                let rdds = self.queue.rdds.lock();
                rdds.get(*from as usize).cloned().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "queue stream `{}`: batch {} was planned with the queue's RDD #{from}, \
                         but the queue holds {} RDDs; a recovered stream needs the same queue",
                        self.name,
                        run.batch.id,
                        rdds.len()
                    ))
                })
            }
            ReplayToken::Queue { .. } => Ok(run.ctx.empty()),
            other => Err(wrong_token(&self.name, other)),
        }
    }
}

pub(crate) fn token<'a>(run: &'a BatchRun<'_>, name: &str) -> Result<&'a ReplayToken> {
    run.tokens.get(name).ok_or_else(|| {
        Error::Internal(format!(
            "batch {} has no replay token for source `{name}`",
            run.batch.id
        ))
    })
}

pub(crate) fn wrong_kind(name: &str, found: &SourcePosition) -> Error {
    Error::InvalidArgument(format!(
        "source `{name}`: the recorded position {found:?} belongs to another kind of source"
    ))
}

pub(crate) fn wrong_token(name: &str, found: &ReplayToken) -> Error {
    Error::InvalidArgument(format!(
        "source `{name}`: the recorded input {found:?} belongs to another kind of source"
    ))
}

/// New files in a folder (`text_file_stream`).
struct FolderSource {
    name: String,
    dir: PathBuf,
    seen: Mutex<BTreeSet<String>>,
}

impl FolderSource {
    /// The files a batch would read now: regular files not seen before, in name order,
    /// without names starting with `.` or `_` (files still being written elsewhere are
    /// expected to be moved in whole, as in Spark).
    fn new_files(&self) -> Result<Vec<String>> {
        let seen = self.seen.lock();
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &self.dir, e))?;
            let os_name = entry.file_name();
            if os_name.to_string_lossy().starts_with(['.', '_']) {
                continue;
            }
            let Ok(name) = os_name.into_string() else {
                return Err(Error::io(
                    "plan",
                    entry.path(),
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file name is not UTF-8, and a plan records names as text: \
                         rename the file (or give it a name starting with `_` to skip it)",
                    ),
                ));
            };
            // `metadata` follows symbolic links: a link to a file is read as the file.
            if !seen.contains(&name) && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads the first `len` bytes of `name` (all of it when `None`) and their checksum.
    fn read(&self, name: &str, len: Option<u64>) -> Result<(Vec<u8>, u32)> {
        let path = self.dir.join(name);
        let mut bytes = Vec::new();
        let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        match len {
            Some(n) => file.take(n).read_to_end(&mut bytes),
            None => (&file).read_to_end(&mut bytes),
        }
        .map_err(|e| Error::io("read", &path, e))?;
        let crc = crc32c::crc32c(&bytes);
        Ok((bytes, crc))
    }

    fn rdd(&self, run: &BatchRun<'_>) -> Result<Rdd<String>> {
        let files = match token(run, &self.name)? {
            ReplayToken::Files { files } => files,
            other => return Err(wrong_token(&self.name, other)),
        };
        let mut lines = Vec::new();
        for f in files {
            let (bytes, crc) = self.read(&f.name, Some(f.len))?;
            let path = self.dir.join(&f.name);
            if bytes.len() as u64 != f.len || crc != f.crc32c {
                return Err(Error::DataMismatch {
                    rdd_id: 0,
                    partition: 0,
                    message: format!(
                        "text file stream `{}`: {} changed since batch {} read it (recorded \
                         {} bytes, CRC-32C {:08x}; found {} bytes, {crc:08x}); a replayed \
                         batch must read the same bytes: leave input files unchanged until \
                         their batch is committed",
                        self.name,
                        path.display(),
                        run.batch.id,
                        f.len,
                        f.crc32c,
                        bytes.len()
                    ),
                });
            }
            let text = decode(&path, bytes)?;
            lines.extend(text.lines().map(str::to_string));
        }
        // One partition per file read: the same input gives the same partitions whatever
        // the thread count of the run that replays it.
        Ok(run.ctx.parallelize(lines, files.len().max(1)))
    }
}

/// A file's bytes as text, or an error naming the file and the line of the first invalid
/// byte.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::Parse {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            message: format!(
                "not UTF-8 ({}): a text file stream reads UTF-8 text; fix the file or move \
                 it away, and the stream goes on",
                e.utf8_error()
            ),
        }
    })
}

impl SourceOps for FolderSource {
    fn folder(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn plan(&self, _ctx: &Context, _batch: BatchId) -> Result<ReplayToken> {
        let mut files = Vec::new();
        for name in self.new_files()? {
            let (bytes, crc32c) = self.read(&name, None)?;
            // Checked before the plan is written: a plan the batch cannot run would stop
            // the stream for good, while an error here lets the user fix the file.
            decode(&self.dir.join(&name), bytes.clone())?;
            files.push(FileEntry {
                name,
                len: bytes.len() as u64,
                crc32c,
            });
        }
        Ok(ReplayToken::Files { files })
    }

    fn advance(&self, token: &ReplayToken) {
        if let ReplayToken::Files { files } = token {
            self.seen
                .lock()
                .extend(files.iter().map(|f| f.name.clone()));
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Files {
            seen: self.seen.lock().clone(),
        }
    }

    fn restore(&self, position: Option<&SourcePosition>) -> Result<()> {
        *self.seen.lock() = match position {
            None => BTreeSet::new(),
            Some(SourcePosition::Files { seen }) => seen.clone(),
            Some(other) => return Err(wrong_kind(&self.name, other)),
        };
        Ok(())
    }
}

impl StreamingContext {
    /// A stream of the RDDs of `queue`, one per batch (an empty batch when the queue has no
    /// unread RDD). `name` must be unique in the stream and stable across restarts: a
    /// recovered stream finds its position by it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flintlock::streaming::{ManualClock, RddQueue, StreamingContext, Until};
    /// use flintlock::Context;
    /// let ctx = Context::new();
    /// let queue = RddQueue::from_rdds([ctx.parallelize(vec![1, 2], 1), ctx.parallelize(vec![3], 1)]);
    /// let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    /// let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let out = seen.clone();
    /// ssc.queue_stream("numbers", queue).map(|x| x * 10).foreach_rdd("print", move |rdd, batch| {
    ///     out.lock().unwrap().push((batch.id, rdd.collect()?));
    ///     Ok(())
    /// });
    /// ssc.run(Until::Batches(3))?;
    /// assert_eq!(*seen.lock().unwrap(), vec![(0, vec![10, 20]), (1, vec![30]), (2, vec![])]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    pub fn queue_stream<T: Data>(&mut self, name: &str, queue: RddQueue<T>) -> DStream<T> {
        let source = Arc::new(QueueSource {
            name: name.to_string(),
            queue,
            next: Mutex::new(0),
        });
        let s = source.clone();
        self.add_source(name, "queue_stream", None, source, move |run| s.rdd(run))
    }

    /// A stream of the lines of the new files in folder `dir`: each batch reads the files
    /// that appeared since the previous one (in name order; names starting with `.` or `_`
    /// are skipped, so write a file elsewhere or under such a name and rename it in). The
    /// plan records each file's name, length and CRC-32C: a replayed batch reads exactly
    /// those bytes, and a file changed since is an error, never silently other input. The
    /// folder is part of the recorded graph: a restart reading another folder is refused.
    ///
    /// Each name is read once: a file written again under a name already read, or bytes
    /// appended to it, are not read. Symbolic links to files are followed; a name that is
    /// not UTF-8, or a file that is not UTF-8 text, is an error when the batch is planned
    /// (nothing is planned: fix or move the file and run again).
    ///
    /// The source remembers every file name it read (in each commit), so move processed
    /// files away to keep that list short, but only those a restart no longer reads:
    /// [`StreamingContext::files_needed_for_recovery`] names the others.
    #[track_caller]
    pub fn text_file_stream(&mut self, name: &str, dir: impl AsRef<Path>) -> DStream<String> {
        let dir = dir.as_ref();
        let folder = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let source = Arc::new(FolderSource {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            seen: Mutex::new(BTreeSet::new()),
        });
        let s = source.clone();
        let input = Some(folder.to_string_lossy().into_owned());
        self.add_source(name, "text_file_stream", input, source, move |run| {
            s.rdd(run)
        })
    }
}

impl StreamingContext {
    /// The files of text file stream `source` that a restart from the checkpoint folder may
    /// read again: those of the batches from the newest commit's low water on (the oldest
    /// batch whose plan recovery replays) and of a planned, uncommitted batch. Every other
    /// file the source has read may be moved away or deleted. Without a checkpoint folder
    /// nothing is replayed and the set is empty.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `source` is not a text file stream of this stream;
    /// I/O and format errors reading the log.
    pub fn files_needed_for_recovery(&self, source: &str) -> Result<BTreeSet<PathBuf>> {
        let sources = self.graph.inner.lock().sources.clone();
        let folder = sources
            .iter()
            .find(|s| s.name() == source)
            .and_then(|s| s.folder().map(Path::to_path_buf))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "this stream has no text file stream named `{source}`"
                ))
            })?;
        let mut needed = BTreeSet::new();
        let Some(meta) = &self.meta else {
            return Ok(needed);
        };
        let (plans, commits) = meta.log()?;
        let low = match commits.last() {
            Some(&c) => meta.read_commit(c)?.low_water,
            None => 0,
        };
        for &b in plans.iter().filter(|&&b| b >= low) {
            if let Some(ReplayToken::Files { files }) = meta.read_plan(b)?.sources.get(source) {
                needed.extend(files.iter().map(|f| folder.join(&f.name)));
            }
        }
        Ok(needed)
    }
}

/// Every source's token for batch `batch`.
pub(crate) fn plan_all(
    sources: &[Arc<dyn SourceOps>],
    ctx: &Context,
    batch: BatchId,
) -> Result<BTreeMap<String, ReplayToken>> {
    sources
        .iter()
        .map(|s| Ok((s.name().to_string(), s.plan(ctx, batch)?)))
        .collect()
}
