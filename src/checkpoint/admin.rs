//! Working on checkpoint folders without knowing the element type: what the `flintlock`
//! command-line tool does (`list`, `verify`, `show`, `gc`), as functions that return
//! reports (serde-serializable, for `--json`).
//!
//! Nothing here deletes a folder that a live process holds: `gc` works only in app folders
//! whose lock it can take, and only in folders flintlock made (see the app marker in
//! [`crate::checkpoint::format`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::format::{ManifestBody, PartFile, MANIFEST};
use super::series::{computations, read_manifest, scan};
use super::{
    clean_app_folder, is_app_folder, is_attempt_name, live, visit, DefaultStorage, Storage, Visit,
};
use crate::error::{Error, Result};

/// One checkpoint folder as `list` sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointInfo {
    /// The folder.
    pub path: PathBuf,
    /// `committed` (a verified manifest), `uncommitted` (no manifest: an interrupted write
    /// or one in progress) or `damaged` (a manifest that does not verify).
    pub status: &'static str,
    /// The series and step, for checkpoints of a named series.
    pub series: Option<String>,
    /// The step within the series.
    pub step: Option<u64>,
    /// The element type's name.
    pub element_type: Option<String>,
    /// Partitions (part files).
    pub partitions: Option<usize>,
    /// Records in all parts.
    pub records: Option<u64>,
    /// Bytes of all part files.
    pub bytes: Option<u64>,
    /// When the manifest was written (UTC).
    pub written_at: Option<String>,
    /// What is wrong, for a damaged checkpoint.
    pub problem: Option<String>,
}

/// One app folder as `list` sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppInfo {
    /// The app id (the folder's name).
    pub app: String,
    /// The folder.
    pub path: PathBuf,
    /// Whether a live process holds the app's lock.
    pub locked: bool,
    /// Its checkpoint folders, by name.
    pub checkpoints: Vec<CheckpointInfo>,
}

/// Every flintlock app folder under the checkpoint directory `dir`, with its checkpoints;
/// or, when `dir` is itself an app folder, that one. Reads manifests only.
///
/// # Errors
/// When `dir` cannot be listed.
pub fn list(dir: &Path) -> Result<Vec<AppInfo>> {
    let storage = DefaultStorage::default();
    let mut apps = Vec::new();
    let candidates: Vec<(String, PathBuf)> = if is_app_folder(&storage, dir) {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        vec![(name.into_owned(), dir.to_path_buf())]
    } else {
        let names = storage.list(dir).map_err(|e| Error::io("list", dir, e))?;
        names
            .into_iter()
            .map(|n| (n.clone(), dir.join(n)))
            .collect()
    };
    for (name, path) in candidates {
        if !is_app_folder(&storage, &path) {
            continue;
        }
        let locked = matches!(visit(&storage, &path, true, || ())?, Visit::Owned);
        let checkpoints = checkpoints_of(&storage, &path);
        apps.push(AppInfo {
            app: name,
            path,
            locked,
            checkpoints,
        });
    }
    Ok(apps)
}

/// The checkpoint folders of one app folder, by name.
fn checkpoints_of(storage: &dyn Storage, app: &Path) -> Vec<CheckpointInfo> {
    storage
        .list(app)
        .unwrap_or_default()
        .into_iter()
        .filter(|entry| is_attempt_name(entry))
        .map(|entry| app.join(entry))
        // An app folder nested in this one (another app's checkpoint_dir) is not its own.
        .filter(|path| !is_app_folder(storage, path))
        .map(|path| describe(storage, &path))
        .collect()
}

fn describe(storage: &dyn Storage, path: &Path) -> CheckpointInfo {
    let mut info = CheckpointInfo {
        path: path.to_path_buf(),
        status: "uncommitted",
        series: None,
        step: None,
        element_type: None,
        partitions: None,
        records: None,
        bytes: None,
        written_at: None,
        problem: None,
    };
    let has_manifest = storage
        .list(path)
        .is_ok_and(|names| names.iter().any(|n| n == MANIFEST));
    if !has_manifest {
        return info;
    }
    match read_manifest(storage, &path.join(MANIFEST)) {
        Ok(m) => {
            info.status = "committed";
            info.series = m.series.as_ref().map(|s| s.name.clone());
            info.step = m.series.as_ref().map(|s| s.step);
            info.element_type = Some(m.element_type.clone());
            info.partitions = Some(m.num_partitions);
            info.records = Some(m.parts.iter().map(|p| p.records).sum());
            info.bytes = Some(m.parts.iter().map(|p| p.bytes).sum());
            info.written_at = m.written_at;
        }
        Err(e) => {
            info.status = "damaged";
            info.problem = Some(e.to_string());
        }
    }
    info
}

/// What `verify` found in one checkpoint folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The folder.
    pub path: PathBuf,
    /// Part files read, each completely.
    pub parts_checked: usize,
    /// Records counted in them.
    pub records: u64,
    /// Whether the folder has a manifest (false: an interrupted write, or not a checkpoint
    /// folder at all).
    pub committed: bool,
    /// Every problem found, each naming the file (and offset where it applies). Empty when
    /// the checkpoint is intact.
    pub problems: Vec<String>,
}

/// Verifies a checkpoint folder completely: the manifest's checksum and fields, and every
/// byte of every part file (header, every frame's checksum, trailer counts, whole-file
/// length, record count and checksum against the manifest; no unlisted part files). Records
/// are not decoded (that needs the element type).
///
/// # Errors
/// Only when the folder cannot be listed; damage is reported in the report.
pub fn verify(path: &Path) -> Result<VerifyReport> {
    let storage = DefaultStorage::default();
    let names = storage.list(path).map_err(|e| Error::io("list", path, e))?;
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        parts_checked: 0,
        records: 0,
        committed: names.iter().any(|n| n == MANIFEST),
        problems: Vec::new(),
    };
    if !report.committed {
        report.problems.push(
            Error::NotCommitted {
                path: path.to_path_buf(),
            }
            .to_string(),
        );
        return Ok(report);
    }
    let manifest = match read_manifest(&storage, &path.join(MANIFEST)) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };
    for (i, part) in manifest.parts.iter().enumerate() {
        let file = path.join(&part.file);
        match check_part(&storage, &manifest, i, &file) {
            Ok(records) => {
                report.parts_checked += 1;
                report.records += records;
            }
            Err(e) => report.problems.push(e.to_string()),
        }
    }
    for extra in names
        .iter()
        .filter(|n| n.starts_with("part-") && !manifest.parts.iter().any(|p| &p.file == *n))
    {
        report.problems.push(format!(
            "{}: a part file the manifest does not list",
            path.join(extra).display()
        ));
    }
    Ok(report)
}

/// Checks part file `i` of the checkpoint `m` describes completely; returns its records.
pub(crate) fn check_part(
    storage: &dyn Storage,
    m: &ManifestBody,
    i: usize,
    file: &Path,
) -> Result<u64> {
    let mut bytes = Vec::new();
    storage
        .open(file)
        .and_then(|mut r| std::io::Read::read_to_end(&mut r, &mut bytes))
        .map_err(|e| Error::io("read", file, e))?;
    let info = &m.parts[i];
    if bytes.len() as u64 != info.bytes {
        return Err(Error::corrupt(
            file,
            format!(
                "length mismatch: the manifest records {} bytes, the file has {}",
                info.bytes,
                bytes.len()
            ),
        ));
    }
    // Frame by frame first: a damaged frame is named with its offset.
    let part = PartFile::decode(&bytes, file)?;
    if crc32c::crc32c(&bytes) != info.crc32c {
        return Err(Error::corrupt(
            file,
            "file checksum differs from the manifest's",
        ));
    }
    if part.header.partition as usize != i
        || part.header.write_id != m.write_id
        || part.header.type_name != m.element_type
    {
        return Err(Error::corrupt(
            file,
            "its header names another partition, write or element type than the manifest",
        ));
    }
    let records: u64 = part.frames.iter().map(|f| u64::from(f.0)).sum();
    if records != info.records {
        return Err(Error::corrupt(
            file,
            format!("{records} records, the manifest records {}", info.records),
        ));
    }
    Ok(records)
}

/// The manifest of a checkpoint folder, verified (`show`).
///
/// # Errors
/// [`Error::NotCommitted`] without a manifest; the manifest's own errors.
pub fn show(path: &Path) -> Result<ManifestBody> {
    let manifest = path.join(MANIFEST);
    let storage = DefaultStorage::default();
    if storage.len(&manifest).is_err() {
        return Err(Error::NotCommitted {
            path: path.to_path_buf(),
        });
    }
    read_manifest(&storage, &manifest)
}

/// One folder `gc` removed (or would remove, with `dry_run`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Removal {
    /// The folder or file.
    pub path: PathBuf,
    /// Why: `uncommitted leftover` or `beyond keep` (with the series).
    pub reason: String,
}

/// What `gc` did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GcReport {
    /// What it removed (or would remove, with `dry_run`).
    pub removed: Vec<Removal>,
    /// App folders it left alone because a live process holds them.
    pub skipped_locked: Vec<PathBuf>,
    /// A stream's state and input-log folders (`<stream>/state/<op>`,
    /// `<stream>/input/<source>`), where `keep` was not applied: the stream's commits name
    /// the steps a restart reads, and the stream removes the others itself. Their
    /// uncommitted leftovers were collected as anywhere else.
    pub kept_for_streams: Vec<PathBuf>,
}

/// Collects garbage under the checkpoint directory `dir` (or in `dir` itself, when it is an
/// app folder): in every app folder whose lock is free (no live process holds it), the
/// uncommitted leftovers of dead owners, and with `keep`, all but the newest `keep`
/// checkpoints of each computation of a series (a series name reused with another element
/// type or other meta is counted on its own). Folders a live process holds, and folders
/// flintlock did not make, are never touched; in a stream's state and input-log folders,
/// `keep` is not applied (the stream retains what its commits name). With `dry_run`,
/// reports without removing.
///
/// # Errors
/// When `dir` cannot be listed.
pub fn gc(dir: &Path, keep: Option<usize>, dry_run: bool) -> Result<GcReport> {
    let storage = DefaultStorage::default();
    let mut report = GcReport::default();
    for app in list(dir)? {
        // A stream's steps are retained by its commits, not by count: the newest step may be
        // one the newest commit does not name yet (written, then the process died).
        let stream_owned = crate::streaming::meta::is_stream_owned(&storage, &live::key(&app.path));
        if stream_owned && keep.is_some() {
            report.kept_for_streams.push(app.path.clone());
        }
        let keep = keep.filter(|_| !stream_owned);
        // Both locks are held while we work: a process starting on this app waits for us,
        // then finds the result. The folder is read again under them: `list` was earlier.
        let visited = visit(&storage, &app.path, true, || {
            let found = removals(&storage, &app.path, keep);
            if !dry_run {
                clean_app_folder(&storage, &app.path);
                for r in &found {
                    if storage.list(&r.path).is_ok_and(|names| !names.is_empty()) {
                        let owned: std::sync::Arc<dyn Storage> =
                            std::sync::Arc::new(DefaultStorage::default());
                        let _ = live::delete_when_unread(&r.path, owned);
                    }
                }
                // Done before the locks go, and before the report says so.
                live::wait_for_removals(Some(&app.path));
            }
            found
        })?;
        match visited {
            Visit::Unowned(found) => report.removed.extend(found),
            Visit::Owned | Visit::Busy => report.skipped_locked.push(app.path),
        }
    }
    Ok(report)
}

/// What `gc` removes from one app folder: uncommitted leftovers, and with `keep` all but
/// the newest `keep` checkpoints of each computation of a series.
fn removals(storage: &dyn Storage, app: &Path, keep: Option<usize>) -> Vec<Removal> {
    let mut removed: Vec<Removal> = checkpoints_of(storage, app)
        .into_iter()
        .filter(|c| c.status == "uncommitted")
        // On an object store, only an attempt nothing was written to for the grace period
        // (a writer that stalled past its lease may still be filling a younger one).
        .filter(|c| storage.has_locks(app) || storage.is_abandoned(&c.path))
        .map(|c| Removal {
            path: c.path,
            reason: "uncommitted leftover of a dead owner".to_string(),
        })
        .collect();
    let (Some(keep), Ok(entries)) = (keep, scan(storage, app)) else {
        return removed;
    };
    for (series, checkpoints) in computations(&entries) {
        for c in checkpoints.into_iter().skip(keep.max(1)) {
            removed.push(Removal {
                path: c.path,
                reason: format!("beyond keep {keep}: series {series:?} step {}", c.step),
            });
        }
    }
    removed
}
