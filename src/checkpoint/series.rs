//! Named series of checkpoints: restartable jobs (DESIGN §5).
//!
//! A [`Checkpointer`] marks an iterative job's RDD every `every` steps, records the series
//! name, step and meta pairs in each manifest, keeps the newest `keep` committed
//! checkpoints, and on a restart finds the newest one with [`Checkpointer::latest`] by
//! reading manifests only.
//!
//! Retention never deletes a checkpoint that an RDD of this process still reads (Spark's
//! `PeriodicRDDCheckpointer` does): a checkpoint beyond `keep` is removed at once when
//! nothing reads it, otherwise when its last reader is dropped (see `live`).

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::format::{ManifestBody, SeriesEntry, MANIFEST};
use super::{codec_for, live, AppDir, Storage};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::listener::Event;
use crate::{Data, Rdd};

/// What a series writes into a checkpoint it marks, and how many it keeps.
#[derive(Debug)]
pub(crate) struct SeriesTag {
    pub(crate) entry: SeriesEntry,
    pub(crate) keep: usize,
    /// The folder the checkpoint goes to instead of the context's app folder (a streaming
    /// operator's state folder). Such a series is retained by its owner, not by `keep`.
    pub(crate) dest: Option<Arc<AppDir>>,
}

/// Marks `rdd` for a reliable checkpoint written into `dest` (not the context's app folder),
/// recorded as step `step` of series `name`: a streaming operator's state checkpoint. Its
/// owner removes it; nothing else does.
#[track_caller]
pub(crate) fn mark_into<T: Data + Serialize + DeserializeOwned>(
    rdd: &Rdd<T>,
    dest: Arc<AppDir>,
    name: &str,
    step: u64,
) -> Result<()> {
    let tag = Arc::new(SeriesTag {
        entry: SeriesEntry {
            name: name.to_string(),
            step,
            meta: BTreeMap::new(),
        },
        keep: usize::MAX,
        dest: Some(dest),
    });
    rdd.node.mark_reliable(
        codec_for::<T>(),
        Some(tag),
        crate::rdd::site("streaming state"),
    )
}

/// A committed checkpoint of a series, as its manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesCheckpoint {
    /// The step it holds.
    pub step: u64,
    /// Its folder.
    pub path: PathBuf,
    /// When it was written (UTC, RFC 3339), if recorded.
    pub written_at: Option<String>,
    /// The meta pairs recorded with it.
    pub meta: BTreeMap<String, String>,
    /// Its element type's name.
    pub element_type: String,
    /// What identifies the element type: its recorded layout, else its name.
    pub(crate) type_key: String,
}

impl SeriesCheckpoint {
    /// Whether `other` belongs to the same computation: the same element type and meta.
    /// Retention counts `keep` within one computation only, so a series name reused for
    /// other data (another element type, another graph) never removes this one's
    /// checkpoints.
    fn same_computation(&self, other: &SeriesCheckpoint) -> bool {
        self.type_key == other.type_key && self.meta == other.meta
    }
}

/// A named series of checkpoints of one iterative job: made by [`Context::checkpointer`].
///
/// ```
/// use flintlock::Context;
/// # let dir = tempfile::tempdir().unwrap();
/// let ctx = Context::builder().app_id("doc-series").checkpoint_dir(dir.path()).build()?;
/// let mut cp = ctx.checkpointer::<u64>("values").every(2).keep(1).meta("seed", 7);
/// let (first, mut values) = match cp.latest()? {
///     Some((step, rdd)) => (step + 1, rdd),
///     None => (1, ctx.range(0..100, 2)),
/// };
/// for step in first..=4 {
///     values = values.map(|x| x + 1);
///     cp.update(step, &values)?;   // marks steps 2 and 4
///     values.count()?;             // the action writes a marked step
/// }
/// let (step, resumed) = cp.latest()?.expect("step 4 is committed");
/// assert_eq!(step, 4);
/// assert_eq!(resumed.collect()?, values.collect()?);
/// assert_eq!(cp.committed()?.len(), 1, "keep(1): step 2 was removed");
/// # Ok::<(), flintlock::Error>(())
/// ```
#[derive(Debug)]
pub struct Checkpointer<T> {
    ctx: Context,
    name: String,
    every: u64,
    keep: usize,
    meta: BTreeMap<String, String>,
    _elements: PhantomData<fn() -> T>,
}

impl Context {
    /// A named series of checkpoints for restartable jobs: by default it marks every step
    /// (`every(1)`) and keeps the newest 2 committed checkpoints (`keep(2)`). Checkpoints
    /// go to this context's app folder, so a restart must use the same
    /// [`crate::ContextBuilder::app_id`] and checkpoint directory to find them.
    pub fn checkpointer<T>(&self, name: impl Into<String>) -> Checkpointer<T>
    where
        T: Data + Serialize + DeserializeOwned,
    {
        Checkpointer {
            ctx: self.clone(),
            name: name.into(),
            every: 1,
            keep: 2,
            meta: BTreeMap::new(),
            _elements: PhantomData,
        }
    }
}

impl<T: Data + Serialize + DeserializeOwned> Checkpointer<T> {
    /// Marks every `n`-th step (steps that are multiples of `n`); 0 marks none.
    pub fn every(mut self, n: u64) -> Self {
        self.every = n;
        self
    }

    /// Keeps the newest `k` committed checkpoints of the series (at least 1).
    pub fn keep(mut self, k: usize) -> Self {
        self.keep = k.max(1);
        self
    }

    /// Records `key = value` in every checkpoint of the series. A resume
    /// ([`Checkpointer::latest`]) whose meta differs from the recorded one is an error: use it
    /// for what makes a checkpoint belong to this computation (the input's digest, the
    /// parameters).
    pub fn meta(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.meta.insert(key.into(), value.to_string());
        self
    }

    /// The series name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks `rdd` for a checkpoint of step `step` when `step` is a multiple of `every`; the
    /// next action on it writes the checkpoint, and after the commit the series' checkpoints
    /// beyond `keep` are removed (each once no RDD reads it). Returns whether it marked.
    ///
    /// # Errors
    /// [`Error::NoCheckpointDir`] when the context has no checkpoint directory.
    #[track_caller]
    pub fn update(&mut self, step: u64, rdd: &Rdd<T>) -> Result<bool> {
        if self.every == 0 || !step.is_multiple_of(self.every) {
            return Ok(false);
        }
        let tag = Arc::new(SeriesTag {
            entry: SeriesEntry {
                name: self.name.clone(),
                step,
                meta: self.meta.clone(),
            },
            keep: self.keep,
            dest: None,
        });
        rdd.node.mark_reliable(
            codec_for::<T>(),
            Some(tag),
            crate::rdd::site("checkpointer.update"),
        )?;
        Ok(rdd.checkpoint_state() == crate::CheckpointState::Marked)
    }

    /// The committed checkpoints of the series in this context's app folder, newest first
    /// (from their manifests; part files are not read).
    ///
    /// # Errors
    /// [`Error::NoCheckpointDir`] without a checkpoint directory; an I/O error listing it.
    pub fn committed(&self) -> Result<Vec<SeriesCheckpoint>> {
        let app = self.app()?;
        // Checkpoints this process has let go are not listed half-removed.
        live::wait_for_removals(Some(app.dir()));
        Ok(series_of(
            &scan(app.storage.as_ref(), app.dir())?,
            &self.name,
        ))
    }

    /// The newest committed step of the series and its checkpoint as an RDD (partitioner
    /// included), or `None` when the series has none: where a restarted job resumes.
    ///
    /// Only manifests are read to find it (newest step first; a step written twice: the
    /// later write). The one found is then verified completely (every frame and checksum
    /// of every part, one read of its files, records not decoded) before it is returned: a
    /// checkpoint whose manifest or part files are damaged or missing is skipped for the
    /// previous one, and [`Event::CheckpointSkipped`] says why. So is a newer checkpoint of
    /// another computation under the same name (other meta or element type), when one of
    /// this computation exists.
    ///
    /// # Errors
    /// [`Error::ResumeMismatch`] when the series has checkpoints but none with this series'
    /// meta (naming the key and both values, for the newest): a resume never continues on
    /// another computation's data. [`Error::TypeMismatch`] likewise for the element type.
    ///
    /// # In a cluster
    /// Every process must call it at the same point of the program (like an action).
    /// Process 0 finds and verifies the checkpoint as above (only it sends
    /// [`Event::CheckpointSkipped`]); every process then opens that one, so all resume from
    /// the same step (or all fail, or all start from scratch). When process 0 fails (a
    /// `ResumeMismatch`, say), the others fail with [`Error::Cluster`] naming it.
    pub fn latest(&self) -> Result<Option<(u64, Rdd<T>)>> {
        if self.ctx.inner.executor.processes() > 1 {
            return self.latest_in_cluster();
        }
        self.latest_here()
    }

    /// [`Checkpointer::latest`] in a cluster: process 0's answer, opened everywhere.
    fn latest_in_cluster(&self) -> Result<Option<(u64, Rdd<T>)>> {
        use crate::scheduler::{all_gather, StageKey};
        let inner = &self.ctx.inner;
        let exec = inner.executor.as_ref();
        let name = super::format::type_fingerprint(&self.name);
        let key =
            |step: &str| StageKey::agreement(usize::MAX, inner.new_stage_id(), 0, step, &[name]);
        // Process 0's search opens (and drops) an RDD per candidate it tries, the others
        // none: every process says how many RDD ids it drew, all continue from the
        // largest, and every process opens the one found, so that its RDD id, and every
        // id after it, is the same on all.
        let answer = if exec.process() == 0 {
            self.latest_here().map(|latest| {
                let mut body = inner.rdd_ids_drawn().to_le_bytes().to_vec();
                if let Some((step, rdd)) = latest {
                    let path = rdd.checkpoint_path().unwrap_or_default();
                    body.extend_from_slice(&step.to_le_bytes());
                    body.extend_from_slice(&path_bytes(&path));
                }
                body
            })
        } else {
            Ok(inner.rdd_ids_drawn().to_le_bytes().to_vec())
        };
        let bodies = all_gather(exec, key("checkpoint latest"), answer)?;
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let drawn = bodies.iter().filter_map(|b| b.get(..8)).map(word).max();
        inner.skip_rdd_ids_to(drawn.unwrap_or(0));
        let mut found = None;
        let opened = match bodies[0].get(8..).and_then(|b| b.split_at_checked(8)) {
            Some((step, path)) => {
                let step = word(step);
                let path = path_from_bytes(path);
                self.open_found(step, &path).map(|rdd| {
                    found = Some((step, rdd));
                })
            }
            None => Ok(()),
        };
        let opened = opened.map(|()| Vec::new());
        all_gather(exec, key("checkpoint opened"), opened)?;
        Ok(found)
    }

    /// Opens the checkpoint of step `step` at `path` that process 0 found, checking its
    /// meta as process 0 did.
    fn open_found(&self, step: u64, path: &Path) -> Result<Rdd<T>> {
        let manifest = read_manifest(self.app()?.storage.as_ref(), &path.join(MANIFEST))?;
        self.check_meta(&SeriesCheckpoint {
            step,
            path: path.to_path_buf(),
            written_at: manifest.written_at.clone(),
            meta: manifest.series.map(|s| s.meta).unwrap_or_default(),
            element_type: manifest.element_type.clone(),
            type_key: String::new(),
        })?;
        self.ctx.open_checkpoint::<T>(path)
    }

    /// [`Checkpointer::latest`] in one process (or process 0 of a cluster).
    fn latest_here(&self) -> Result<Option<(u64, Rdd<T>)>> {
        let app = self.app()?;
        let storage = app.storage.as_ref();
        live::wait_for_removals(Some(app.dir()));
        let entries = scan(storage, app.dir())?;
        for (path, manifest) in &entries {
            if let Err(e) = manifest {
                // A damaged manifest may have been this series' newest checkpoint.
                self.skipped(path, e.to_string());
            }
        }
        // The newest checkpoint of another computation is the error to report when no
        // checkpoint of this one exists; when one does, it is skipped with an event.
        let mut other_computation = None;
        for (candidate, manifest) in series_with_manifests(&entries, &self.name) {
            let opened = self
                .check_meta(&candidate)
                .and_then(|()| self.ctx.open_checkpoint::<T>(&candidate.path));
            let rdd = match opened {
                Ok(rdd) => rdd,
                Err(e @ (Error::ResumeMismatch { .. } | Error::TypeMismatch { .. })) => {
                    self.skipped(&candidate.path, e.to_string());
                    other_computation.get_or_insert(e);
                    continue;
                }
                Err(e) => {
                    self.skipped(&candidate.path, e.to_string());
                    continue;
                }
            };
            // Every byte checked before it is trusted: a damaged part would otherwise fail
            // every resume the same way while an intact older checkpoint is there.
            match verify_parts(storage, &candidate.path, manifest) {
                Ok(()) => return Ok(Some((candidate.step, rdd))),
                Err(e) => self.skipped(&candidate.path, e.to_string()),
            }
        }
        match other_computation {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn skipped(&self, path: &Path, reason: String) {
        self.ctx.inner.emit(Event::CheckpointSkipped {
            series: self.name.clone(),
            path: path.to_path_buf(),
            reason,
        });
    }

    fn check_meta(&self, c: &SeriesCheckpoint) -> Result<()> {
        let keys: std::collections::BTreeSet<&String> =
            c.meta.keys().chain(self.meta.keys()).collect();
        for key in keys {
            let (recorded, expected) = (c.meta.get(key), self.meta.get(key));
            if recorded != expected {
                return Err(Error::ResumeMismatch {
                    step: c.step,
                    path: c.path.clone(),
                    key: key.clone(),
                    recorded: recorded.cloned(),
                    expected: expected.cloned(),
                });
            }
        }
        Ok(())
    }

    fn app(&self) -> Result<Arc<AppDir>> {
        self.ctx
            .inner
            .checkpoint_dir
            .read()
            .clone()
            .ok_or(Error::NoCheckpointDir)
    }
}

/// Every checkpoint folder of an app folder with its manifest (or why it does not read),
/// newest write time first. Folders without a manifest (uncommitted) are left out.
pub(crate) fn scan(
    storage: &dyn Storage,
    app_dir: &Path,
) -> Result<Vec<(PathBuf, Result<ManifestBody>)>> {
    let names = storage
        .list(app_dir)
        .map_err(|e| Error::io("list", app_dir, e))?;
    let mut out = Vec::new();
    for name in names
        .iter()
        .filter(|n| crate::checkpoint::is_attempt_name(n))
    {
        let dir = app_dir.join(name);
        let Ok(files) = storage.list(&dir) else {
            continue;
        };
        if !files.iter().any(|f| f == MANIFEST) {
            continue;
        }
        let path = dir.join(MANIFEST);
        let manifest = read_manifest(storage, &path);
        out.push((dir, manifest));
    }
    Ok(out)
}

/// Reads and verifies one manifest file.
pub(crate) fn read_manifest(storage: &dyn Storage, path: &Path) -> Result<ManifestBody> {
    let mut bytes = Vec::new();
    storage
        .open(path)
        .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
        .map_err(|e| Error::io("read", path, e))?;
    ManifestBody::decode(&bytes, path)
}

/// Checks every part file of the checkpoint at `dir` completely (frames, checksums, counts
/// against `manifest`), without decoding records.
fn verify_parts(storage: &dyn Storage, dir: &Path, manifest: &ManifestBody) -> Result<()> {
    for (i, part) in manifest.parts.iter().enumerate() {
        super::admin::check_part(storage, manifest, i, &dir.join(&part.file))?;
    }
    Ok(())
}

/// The checkpoints of series `name` among `entries`, newest first: by step, then by write
/// time (a step written twice: the later write wins), then by folder.
fn series_of(entries: &[(PathBuf, Result<ManifestBody>)], name: &str) -> Vec<SeriesCheckpoint> {
    series_with_manifests(entries, name)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// [`series_of`], each with its manifest.
fn series_with_manifests<'a>(
    entries: &'a [(PathBuf, Result<ManifestBody>)],
    name: &str,
) -> Vec<(SeriesCheckpoint, &'a ManifestBody)> {
    let mut found: Vec<(
        SeriesCheckpoint,
        &ManifestBody,
        Option<std::time::SystemTime>,
    )> = entries
        .iter()
        .filter_map(|(path, m)| {
            let m = m.as_ref().ok()?;
            let s = m.series.as_ref().filter(|s| s.name == name)?;
            let written = m
                .written_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok());
            let checkpoint = SeriesCheckpoint {
                step: s.step,
                path: path.clone(),
                written_at: m.written_at.clone(),
                meta: s.meta.clone(),
                element_type: m.element_type.clone(),
                type_key: m
                    .element_layout
                    .clone()
                    .unwrap_or_else(|| m.element_type.clone()),
            };
            Some((checkpoint, m, written))
        })
        .collect();
    found.sort_by(|(a, _, at), (b, _, bt)| (b.step, bt, &b.path).cmp(&(a.step, at, &a.path)));
    found.into_iter().map(|(c, m, _)| (c, m)).collect()
}

/// After the commit of `committed`, a checkpoint of series `tag`: removes the checkpoints of
/// the same computation (series name, element type and meta) beyond the newest `keep`, each
/// at once when nothing reads it, else when its last reader goes. Best effort: a listing
/// error leaves everything in place.
///
/// The checkpoint just committed always stays, even when an earlier run left higher steps
/// (a job restarted from scratch without resuming): removing it would take away what the
/// job just wrote and will read next. Checkpoints of another computation under the same
/// series name are never removed here (`flintlock gc` counts them on their own).
pub(crate) fn retain(ctx: &Context, app: &Arc<AppDir>, tag: &SeriesTag, committed: Option<&Path>) {
    let Ok(entries) = scan(app.storage.as_ref(), app.dir()) else {
        return;
    };
    let series = series_of(&entries, &tag.entry.name);
    let Some(this) = series.iter().find(|c| Some(c.path.as_path()) == committed) else {
        return;
    };
    let older = series
        .iter()
        .filter(|c| c.same_computation(this))
        .skip(tag.keep)
        .filter(|c| c.path != this.path);
    for old in older {
        let deleted_now = match live::delete_when_unread(&old.path, app.storage.clone()) {
            live::Release::Started => true,
            live::Release::WhenUnread => false,
            // Released by an earlier commit, listed again while its removal runs.
            live::Release::AlreadyRemoving => continue,
        };
        ctx.inner.emit(Event::CheckpointReleased {
            series: tag.entry.name.clone(),
            step: old.step,
            path: old.path.clone(),
            deleted_now,
        });
    }
}

/// The checkpoints of each series in `entries`, grouped by computation (series name,
/// element type and meta), each group newest first: what `flintlock gc --keep` counts.
pub(crate) fn computations(
    entries: &[(PathBuf, Result<ManifestBody>)],
) -> Vec<(String, Vec<SeriesCheckpoint>)> {
    let names: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter_map(|(_, m)| Some(m.as_ref().ok()?.series.as_ref()?.name.as_str()))
        .collect();
    let mut groups: Vec<(String, Vec<SeriesCheckpoint>)> = Vec::new();
    for name in names {
        let first = groups.len();
        for c in series_of(entries, name) {
            match groups[first..]
                .iter_mut()
                .find(|(_, g)| g[0].same_computation(&c))
            {
                Some((_, g)) => g.push(c),
                None => groups.push((name.to_string(), vec![c])),
            }
        }
    }
    groups
}

/// A path's bytes, exactly (on Unix any bytes; elsewhere its UTF-8 form), to send to the
/// other processes of a cluster.
fn path_bytes(path: &Path) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned().into_bytes()
    }
}

/// The path [`path_bytes`] gave.
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    {
        PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
    }
}
