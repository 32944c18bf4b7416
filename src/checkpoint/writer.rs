//! The checkpoint writer: one write session per claimed RDD, a part writer per partition
//! (temporary name, frames, trailer, fsync, rename) and the tee that encodes each record
//! while the job computes it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::crc;
use super::format::{
    self, encode_trailer, frame_body, frame_header, part_name, part_path, ManifestBody, PartHeader,
    PartInfo, FORMAT_VERSION, FRAME_TARGET, MANIFEST, MAX_FRAME_BYTES,
};
use super::series::SeriesTag;
use super::{AppDir, Codec, ObjectWriter, Storage, StorageFile};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::rdd::iter::{boxed, PartitionIterator, Sealed};
use crate::rdd::node::{BoxedPartitionIter, RddNode};
use crate::scheduler::TaskContext;
use crate::Data;

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
    /// Whether this is a checkpoint (its writes are reported as checkpoint events) rather
    /// than an output in the checkpoint format.
    is_checkpoint: bool,
    /// This process committed the manifest (process 0 of a cluster, before the others
    /// heard of it): an abort then removes nothing.
    committed: AtomicBool,
    /// This attempt's manifest was put in place (renamed or published): from then on a
    /// reader of this process may have opened the folder (a series' `latest()`,
    /// `open_checkpoint`), so an abort of a checkpoint leaves its parts to go with the last
    /// reader.
    published: AtomicBool,
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
        check_type_name(codec.as_ref())?;
        let (dir, write_id) = create_attempt_dir(&app, node.id)?;
        Ok(Self::start(node, app, codec, series, dir, write_id, true))
    }

    /// The write into the attempt folder of `write_id` that process 0 of a cluster created
    /// (its [`WriteSession::begin`]): this process writes the parts of the partitions it
    /// owns there. The folder must be visible here; a checkpoint directory that is not
    /// shared storage is an error saying so.
    pub(crate) fn adopt(
        node: &RddNode<T>,
        app: Arc<AppDir>,
        codec: Arc<dyn Codec<T>>,
        series: Option<Arc<SeriesTag>>,
        write_id: u64,
    ) -> Result<Arc<Self>> {
        check_type_name(codec.as_ref())?;
        let dir = app.rdd_dir(node.id, write_id);
        match app.storage.list(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Cluster {
                    process: None,
                    message: format!(
                        "the checkpoint folder process 0 created, {}, is not visible here \
                         ({e}): in cluster mode the checkpoint directory must be storage every \
                         process shares (one filesystem, or an object store)",
                        dir.display()
                    ),
                })
            }
            Err(e) => return Err(Error::io("list", &dir, e)),
        }
        Ok(Self::start(node, app, codec, series, dir, write_id, true))
    }

    /// A write into the new folder `dir` (created here, exclusively: an existing folder is
    /// an `AlreadyExists` error naming it), for an output in the checkpoint format.
    pub(crate) fn begin_at(
        node: &RddNode<T>,
        app: Arc<AppDir>,
        codec: Arc<dyn Codec<T>>,
        dir: &Path,
    ) -> Result<Arc<Self>> {
        check_type_name(codec.as_ref())?;
        app.storage
            .create_dir(dir)
            .map_err(|e| Error::io("create folder", dir, e))?;
        let write_id = new_write_id();
        Ok(Self::start(
            node,
            app,
            codec,
            None,
            dir.to_path_buf(),
            write_id,
            false,
        ))
    }

    fn start(
        node: &RddNode<T>,
        app: Arc<AppDir>,
        codec: Arc<dyn Codec<T>>,
        series: Option<Arc<SeriesTag>>,
        dir: PathBuf,
        write_id: u64,
        is_checkpoint: bool,
    ) -> Arc<Self> {
        let n = node.num_partitions;
        Arc::new(WriteSession {
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
            is_checkpoint,
            committed: AtomicBool::new(false),
            published: AtomicBool::new(false),
        })
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

    /// Starts an object of this attempt on a store without rename, remembering it for the
    /// abort; `None` on a filesystem.
    fn create_object(&self, path: &Path) -> Option<Result<Box<dyn ObjectWriter>>> {
        let object = self.storage().create_object(path)?;
        self.created.lock().push(path.to_path_buf());
        Some(object.map_err(|e| Error::io("create", path, e)))
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

    /// The write id every part header and the manifest record.
    pub(crate) fn write_id(&self) -> u64 {
        self.write_id
    }

    /// Whether the checkpoint is a restart point that its series retains, never
    /// `clean_checkpoints`: a stream's state or input log (its commits name them), or a
    /// [`crate::Context::checkpointer`]'s step under a given app id (the next run resumes
    /// from it). Under a generated app id, no later run can open a series' steps.
    pub(crate) fn is_restart_point(&self, generated_app_id: bool) -> bool {
        self.series
            .as_ref()
            .is_some_and(|tag| tag.dest.is_some() || !generated_app_id)
    }

    /// The app folder the attempt writes in.
    pub(crate) fn app(&self) -> &Arc<AppDir> {
        &self.app
    }

    fn storage(&self) -> &dyn Storage {
        self.app.storage.as_ref()
    }

    /// The partitions not written yet, of those this process writes (in a cluster, the
    /// ones it owns).
    pub(crate) fn missing_partitions(&self) -> Vec<usize> {
        let exec = self.ctx.inner.executor.as_ref();
        let parts = self.parts.lock();
        (0..self.num_partitions)
            .filter(|&p| parts.done[p].is_none() && exec.owns(p))
            .collect()
    }

    /// Starts writing partition `split`, unless another consumer in this job already is.
    fn begin_partition(self: &Arc<Self>, split: usize) -> Result<Option<PartWriter<T>>> {
        // In a cluster a partition's part is written by its owner only (another process
        // computing it for a narrow dependency leaves it alone), so no two processes ever
        // write one part.
        if !self.ctx.inner.executor.owns(split) {
            return Ok(None);
        }
        {
            let mut parts = self.parts.lock();
            if parts.claimed[split] || parts.done[split].is_some() {
                return Ok(None);
            }
            parts.claimed[split] = true;
        }
        // On an object store the part goes straight to its key (unique to the attempt's
        // folder) and appears whole when published; on a filesystem, a temp file renamed.
        let final_path = part_path(&self.dir, split);
        let opened = match self.create_object(&final_path) {
            Some(object) => object.map(|o| (final_path, Out::Object(o))),
            None => {
                let temp = self
                    .dir
                    .join(format!(".{}.{}.tmp", part_name(split), self.attempt));
                self.create_file(&temp).map(|f| (temp, Out::File(f)))
            }
        };
        let (temp, file) = match opened {
            Ok(o) => o,
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
            verify: self.app.verify && !self.codec.exact(),
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
        let layout = self.codec.layout();
        if layout.is_none() {
            super::layout::warn_untraced(self.codec.type_name());
        }
        let manifest = ManifestBody {
            format: format::FORMAT_NAME.to_string(),
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
            element_layout: layout.map(|l| l.text().to_string()),
            written_at: Some(
                humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            ),
            series: self.series.as_ref().map(|t| t.entry.clone()),
        };
        let bytes = manifest.encode()?;
        let final_path = self.dir.join(MANIFEST);
        if let Some(object) = self.create_object(&final_path) {
            // A holder whose lease lapsed (a stall past its time to live) publishes nothing:
            // another process may own the folder now, and its cleanup may take these parts.
            self.app.check_still_owned()?;
            // The commit point on an object store: one conditional PUT, never replacing.
            let mut o = object?;
            o.write_all(&bytes)
                .map_err(|e| Error::io("write", &final_path, e))?;
            if let Err(e) = o.publish(true) {
                self.settle_ambiguous_commit(&final_path, &bytes, e)?;
            }
            self.published.store(true, Ordering::Release);
            self.confirm_parts_after_commit(&final_path)?;
            return Ok(self.committed(manifest));
        }
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
        // The commit point. No-replace: an existing manifest is never overwritten.
        self.rename(&temp, &final_path)?;
        self.published.store(true, Ordering::Release);
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
        Ok(self.committed(manifest))
    }

    /// Commits in a cluster: every process sends process 0 the metadata of the parts it
    /// wrote (the partitions it owns), process 0 commits the manifest naming them all
    /// ([`WriteSession::commit`]) and sends it to every process, which returns it. When
    /// anything fails anywhere, every process fails; a manifest process 0 committed stays
    /// (this attempt no longer removes anything of it), as whatever may have read it.
    pub(crate) fn commit_in_cluster(&self, job_id: usize) -> Result<ManifestBody> {
        use crate::scheduler::{all_gather, StageKey};
        let inner = &self.ctx.inner;
        let exec = inner.executor.as_ref();
        let n = self.num_partitions;
        let mine: Result<Vec<(usize, PartInfo)>> = {
            let parts = self.parts.lock();
            (0..n)
                .filter(|&p| exec.owns(p))
                .map(|p| {
                    let info = parts.done[p].clone().ok_or_else(|| {
                        Error::Internal(format!("partition {p} missing at checkpoint commit"))
                    })?;
                    Ok((p, info))
                })
                .collect()
        };
        let body = mine.and_then(|m| {
            postcard::to_allocvec(&m)
                .map_err(|e| Error::Internal(format!("encoding part metadata: {e}")))
        });
        let step = |name: &str| {
            StageKey::agreement(
                job_id,
                inner.new_stage_id(),
                self.rdd_id,
                name,
                &[self.write_id],
            )
        };
        let bodies = all_gather(exec, step("checkpoint parts"), body)?;
        let mut ours = None;
        let committed = if exec.process() == 0 {
            self.take_parts(&bodies).and_then(|()| {
                let manifest = self.commit()?;
                // Committed: from here on an abort of this attempt removes nothing.
                self.committed.store(true, Ordering::Release);
                self.created.lock().clear();
                let bytes = manifest.encode()?;
                ours = Some(manifest);
                Ok(bytes)
            })
        } else {
            Ok(Vec::new())
        };
        let bodies = all_gather(exec, step("checkpoint commit"), committed)?;
        if let Some(manifest) = ours {
            return Ok(manifest);
        }
        let path = self.dir.join(MANIFEST);
        match ManifestBody::decode(&bodies[0], &path) {
            Ok(m) if m.write_id == self.write_id && m.parts.len() == n => Ok(self.committed(m)),
            Ok(m) => Err(self.diverged(format!(
                "process 0 committed write {:016x} with {} parts, this process wrote {:016x} \
                 with {n}",
                m.write_id,
                m.parts.len(),
                self.write_id
            ))),
            Err(e) => {
                Err(self.diverged(format!("process 0's manifest does not read back here: {e}")))
            }
        }
    }

    /// Process 0 of a cluster: records the parts every other process wrote, as their
    /// `bodies` (by source) say.
    fn take_parts(&self, bodies: &[Vec<u8>]) -> Result<()> {
        let exec = self.ctx.inner.executor.as_ref();
        let mut parts = self.parts.lock();
        for (source, body) in bodies.iter().enumerate().skip(1) {
            let infos: Vec<(usize, PartInfo)> = postcard::from_bytes(body).map_err(|e| {
                self.diverged(format!(
                    "process {source}'s part metadata does not read back here: {e}"
                ))
            })?;
            for (p, info) in infos {
                if p >= self.num_partitions || exec.owner(p) != source {
                    return Err(self.diverged(format!(
                        "process {source} reports a part of partition {p}, which it does not \
                         own"
                    )));
                }
                parts.done[p] = Some(info);
            }
        }
        Ok(())
    }

    /// Ends the cluster after the processes disagreed about this checkpoint.
    fn diverged(&self, message: String) -> Error {
        self.ctx.inner.executor.fail(&message);
        Error::Cluster {
            process: None,
            message,
        }
    }

    /// On an object store, after the manifest is published: every part it names is still
    /// there. A writer that stalled between its lease check and the PUT for longer than the
    /// cleanup grace period may have had its parts removed by another process's cleanup;
    /// then the manifest is withdrawn and the commit fails, instead of reporting a
    /// checkpoint whose data is gone.
    fn confirm_parts_after_commit(&self, manifest: &Path) -> Result<()> {
        let names = self
            .storage()
            .list(&self.dir)
            .map_err(|e| Error::io("list", &self.dir, e))?;
        let missing: Vec<String> = (0..self.num_partitions)
            .map(part_name)
            .filter(|p| !names.contains(p))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let _ = self.storage().remove_file(manifest);
        Err(Error::io(
            "commit",
            manifest,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} of this attempt's parts ({}) were removed while it stalled before \
                     committing (cleanup by another process after the grace period); the \
                     manifest is withdrawn and the checkpoint will be written again",
                    missing.len(),
                    missing.join(", ")
                ),
            ),
        ))
    }

    /// Settles a manifest PUT that failed: a request whose answer was lost may have been
    /// applied (and the client's retry of it then finds the object: `AlreadyExists`). The
    /// manifest is read back: holding exactly this attempt's bytes, the commit happened;
    /// holding another's, a writer this attempt raced won, and the error says so; absent,
    /// the commit did not happen and the PUT's error stands.
    fn settle_ambiguous_commit(
        &self,
        path: &Path,
        ours: &[u8],
        failed: std::io::Error,
    ) -> Result<()> {
        let mut found = Vec::new();
        let read = self
            .storage()
            .open(path)
            .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut found));
        match read {
            Ok(_) if found == ours => Ok(()),
            Ok(_) => {
                // Not ours to remove when this attempt aborts.
                self.created.lock().retain(|p| p != path);
                let winner = ManifestBody::decode(&found, path)
                    .map(|m| format!("write {:016x}", m.write_id))
                    .unwrap_or_else(|e| format!("unreadable: {e}"));
                Err(Error::io(
                    "commit",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!(
                            "another writer committed a manifest here first ({winner}); this \
                             attempt ({:016x}) is discarded",
                            self.write_id
                        ),
                    ),
                ))
            }
            Err(_) => Err(Error::io("commit", path, failed)),
        }
    }

    /// Reports the commit of `manifest`.
    fn committed(&self, manifest: ManifestBody) -> ManifestBody {
        if self.is_checkpoint {
            let bytes_total: u64 = manifest.parts.iter().map(|p| p.bytes).sum();
            self.ctx.inner.emit(Event::CheckpointCommitted {
                rdd_id: self.rdd_id,
                path: self.dir.clone(),
                bytes: bytes_total,
            });
        }
        manifest
    }

    /// Removes the files this attempt created, then its folder if nothing else is in it,
    /// and makes the removal durable. Nothing outside this attempt's folder is touched.
    ///
    /// A checkpoint whose manifest was put in place before the commit failed (an fsync
    /// after the rename) may have been opened since by a reader of this process (a
    /// series' `latest()`, `open_checkpoint` on another thread). Its manifest is withdrawn
    /// at once, so that nothing opens it any more (no later run resumes from it), and the
    /// folder goes with the last reader, at once (waited for) when there is none. Best
    /// effort, like every removal: on a storage that fails to remove the manifest (or a
    /// crash before the removal is durable) the folder stays whole and committed, and a
    /// warning says so.
    pub(crate) fn abort(&self) {
        let storage = self.storage();
        if self.is_checkpoint
            && self.published.load(Ordering::Acquire)
            && !self.committed.load(Ordering::Acquire)
        {
            self.created.lock().clear();
            let manifest = self.dir.join(MANIFEST);
            let withdrawn = storage.remove_file(&manifest).and_then(|()| {
                if self.app.fsync {
                    storage.sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = withdrawn {
                tracing::warn!(
                    path = %manifest.display(),
                    error = %e,
                    "the manifest of a checkpoint whose commit failed could not be withdrawn: \
                     the folder may stay committed, readable as a checkpoint"
                );
            }
            let release = super::live::delete_when_unread(&self.dir, self.app.storage.clone());
            if release == super::live::Release::Started {
                super::live::wait_for_removals(Some(&self.dir));
                if self.app.fsync {
                    let _ = storage.sync_dir(self.app.dir());
                }
            }
            return;
        }
        let mut created = std::mem::take(&mut *self.created.lock());
        if !self.app.is_owner() {
            // A process of a cluster other than process 0 removes its unfinished temp files
            // only: once its parts are complete, process 0 may have committed a manifest
            // naming them (this process can fail after the commit, before hearing of it).
            // Process 0's start-up cleanup removes parts no manifest names.
            created.retain(|p| p.extension().is_some_and(|e| e == "tmp"));
        }
        for path in created.iter().rev() {
            let _ = storage.remove_file(path);
        }
        if self.app.is_owner()
            && self.ctx.inner.executor.processes() > 1
            && !self.committed.load(Ordering::Acquire)
        {
            // Process 0 of a cluster, which alone commits: no manifest is in the folder, so
            // the parts the other processes left there (see above) go with it.
            let _ = storage.remove_dir_all(&self.dir);
        }
        let _ = storage.remove_dir(&self.dir);
        if self.app.fsync {
            let _ = storage.sync_dir(self.app.dir());
        }
    }
}

/// A part file header holds the element type's name in at most `u16::MAX` bytes.
fn check_type_name<T>(codec: &dyn Codec<T>) -> Result<()> {
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
    Ok(())
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

/// Where a partition's bytes go: a temp file (renamed at the end) or an object (published).
enum Out {
    File(Box<dyn StorageFile>),
    Object(Box<dyn ObjectWriter>),
}

/// Writes one partition file as records pass through the tee.
struct PartWriter<T: Data> {
    session: Arc<WriteSession<T>>,
    split: usize,
    /// The temp file (or, on an object store, the object) being written.
    temp: PathBuf,
    file: Option<Out>,
    payload: Vec<u8>,
    out: Vec<u8>,
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
        self.write_unsummed(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        Ok(())
    }

    /// [`write_bytes`](Self::write_bytes) without adding the bytes to the file's CRC: the
    /// caller accounts for them.
    fn write_unsummed(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("partition writer used after close".into()))?;
        match file {
            Out::File(f) => f.write_all(bytes),
            Out::Object(o) => o.write_all(bytes),
        }
        .map_err(|e| Error::io("write", &self.temp, e))?;
        self.bytes += bytes.len() as u64;
        if self.session.app.fsync && self.bytes >= self.next_writeback {
            // Start writing back what is written so far, so the fsync at the end of the
            // partition finds little left and the disk works while the task computes.
            if let Out::File(f) = file {
                f.start_writeback();
            }
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

    /// Encodes a batch of records. Records of a bounded size (the fixed-width codec, which
    /// needs no verification) are encoded a frame's worth at a time in one call; others one
    /// by one ([`PartWriter::push`]).
    fn push_all(&mut self, xs: &[T]) -> Result<()> {
        let limit = FRAME_TARGET.min(self.frame_limit);
        let max = match self.session.codec.max_record_bytes() {
            Some(max) if !self.verify && (1..=limit).contains(&max) => max,
            _ => return xs.iter().try_for_each(|x| self.push(x)),
        };
        let mut rest = xs;
        while !rest.is_empty() {
            let room = limit.saturating_sub(self.payload.len()) / max;
            if room == 0 {
                self.flush_frame()?;
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            if let Err(e) = self.session.codec.encode_all(now, &mut self.payload) {
                return Err(self.unreadable(self.records, format!("it does not encode: {e}")));
            }
            // At most `limit` / `max` records, so far below u32::MAX.
            self.frame_records += now.len() as u32;
            self.records += now.len() as u64;
            rest = later;
        }
        if self.payload.len() + max > limit {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn push(&mut self, x: &T) -> Result<()> {
        let start = self.payload.len();
        let codec = &self.session.codec;
        // The writer accepts only what the reader reads back as the value written: when
        // verifying, every record is decoded again and the value read back compared. A
        // failure fails the write before any rename.
        let encoded = if self.verify {
            codec.encode_checked(x, &mut self.payload)
        } else {
            codec
                .encode(x, &mut self.payload)
                .map_err(|e| format!("it does not encode: {e}"))
        };
        if let Err(why) = encoded {
            self.payload.truncate(start);
            return Err(self.unreadable(self.records, why));
        }
        let len = self.payload.len() - start;
        if len > self.frame_limit {
            self.payload.truncate(start);
            return Err(self.unreadable(
                self.records,
                format!(
                    "it encodes to {len} bytes, more than a checkpoint frame may hold ({} \
                     bytes: {}); split such records into smaller ones",
                    self.frame_limit,
                    if self.frame_limit < MAX_FRAME_BYTES as usize {
                        "the limit set with ContextBuilder::checkpoint_frame_limit"
                    } else {
                        "the most any reader accepts"
                    }
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
            // Header and body as two writes: no copy of the body into a frame buffer. One
            // CRC pass over the body (the frame's, in `frame_header`): the file's CRC
            // follows from it.
            self.write_unsummed(&header)
                .and_then(|()| self.write_unsummed(body))
                .map(|()| self.crc = crc::extend_over_frame(self.crc, &header, body.len()))
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
        let out = self
            .file
            .take()
            .ok_or_else(|| Error::Internal("partition writer finished twice".into()))?;
        let session = &self.session;
        match out {
            // The object appears whole at its attempt-unique key.
            Out::Object(o) => o
                .publish(false)
                .map_err(|e| Error::io("write", &self.temp, e))?,
            Out::File(mut file) => {
                file.flush()
                    .map_err(|e| Error::io("flush", &self.temp, e))?;
                // Crash guard: the part's bytes are durable before its final name exists,
                // so a manifest can never name a part whose data a crash could still lose.
                if session.app.fsync {
                    file.sync().map_err(|e| Error::io("fsync", &self.temp, e))?;
                }
                drop(file);
                let final_path = part_path(&session.dir, self.split);
                // No-replace: a part written by an earlier attempt is never silently
                // overwritten.
                session.rename(&self.temp, &final_path)?;
            }
        }
        self.finished = true;
        session.parts.lock().done[self.split] = Some(PartInfo {
            file: part_name(self.split),
            bytes: self.bytes,
            records: self.records,
            crc32c: self.crc,
        });
        if session.is_checkpoint {
            session.ctx.inner.emit(Event::CheckpointPartitionWritten {
                rdd_id: session.rdd_id,
                partition: self.split,
                records: self.records,
                bytes: self.bytes,
            });
        }
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
    source: BoxedPartitionIter<T>,
) -> BoxedPartitionIter<T> {
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
    source: BoxedPartitionIter<T>,
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
        let (a, b) = self.ready.as_slices();
        if let Err(e) = writer.push_all(a).and_then(|()| writer.push_all(b)) {
            self.tc.fail(e);
            self.writer = None;
            self.ready.clear();
            return;
        }
        if exhausted {
            // Only a partition that was computed without error is committed.
            if !self.tc.has_failed()
                && let Err(e) = writer.finish()
            {
                self.tc.fail(e);
                self.ready.clear();
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
            if let Err(e) = writer.push_all(b) {
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
