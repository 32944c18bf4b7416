//! `ReliableCheckpointRdd` (Spark's `ReliableCheckpointRDD`): reads the committed part files
//! of one checkpoint, verifying as it goes, and has no parents; it keeps the partitioner
//! recorded in the manifest. The files are written by `writer.rs`.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{part_path, FrameCursor, ManifestBody, PartHeader, MANIFEST};
use super::layout::{first_difference, Layout};
use super::live::{self, Reader};
use super::series::read_manifest;
use super::writer::WriteSession;
use super::{AppDir, CheckpointCell, Codec, Storage};
use crate::context::Context;
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::rdd::iter::{PartitionIterator, Sealed, BATCH};
use crate::rdd::node::{
    BoxedPartitionIter, CallSite, Compute, PlacementGate, PlacementScan, RddNode, RecordCheck,
};
use crate::scheduler::TaskContext;
use crate::{Data, Rdd};
/// What a `ReliableCheckpointRdd` reads: a verified manifest and its folder.
pub(crate) struct CheckpointFiles<T> {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    manifest: ManifestBody,
    codec: Arc<dyn Codec<T>>,
    /// This RDD reads the folder: nothing deletes it meanwhile (see `live`). Declared before
    /// `_app`, so a requested deletion happens before the app folder may go.
    _reader: Reader,
    /// For a checkpoint this context wrote, or opened from its own app folder: that app
    /// folder, kept (and locked) while read.
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

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<T>> {
        let reader = PartReader::open(self.files.clone(), split, tc.clone())?;
        Ok(Box::new(reader))
    }
}

/// A frame of partition `split`'s file `path`, at `offset`, whose records do not decode.
fn frame_error(path: &Path, split: usize, offset: u64, why: String) -> Error {
    Error::corrupt(
        path,
        format!("partition {split}: frame at offset {offset}: {why}"),
    )
}

/// Streams one part file, verifying as it goes.
struct PartReader<T> {
    files: Arc<CheckpointFiles<T>>,
    split: usize,
    path: PathBuf,
    /// `None` at the end or after an error.
    frames: Option<FrameCursor<BufReader<Box<dyn Read + Send>>>>,
    buffer: std::vec::IntoIter<T>,
    tc: TaskContext,
}

impl<T: Data> PartReader<T> {
    fn open(files: Arc<CheckpointFiles<T>>, split: usize, tc: TaskContext) -> Result<Self> {
        let path = part_path(&files.dir, split);
        let expected = files.manifest.parts.get(split).ok_or_else(|| {
            Error::corrupt(&files.dir, format!("no partition {split} in the manifest"))
        })?;
        check_part_len(files.storage.as_ref(), &path, split, expected.bytes)?;
        let raw = files
            .storage
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        // Small: frame bodies (64 KiB) are larger, so they bypass it and are read straight into
        // the frame buffer; headers and trailers are served from it.
        let reader = BufReader::with_capacity(8 * 1024, raw);
        let (header, frames) = FrameCursor::open(reader, &path, expected.bytes)?;
        check_header(&header, &files.manifest, split, &path)?;
        Ok(PartReader {
            split,
            files,
            path,
            frames: Some(frames),
            buffer: Vec::new().into_iter(),
            tc,
        })
    }

    /// Reads the next frame into the buffer; `Ok(false)` at the verified end.
    fn refill(&mut self) -> Result<bool> {
        let Some(frames) = self.frames.as_mut() else {
            return Ok(false);
        };
        if let Some(records) = frames.next_frame()? {
            let items = self
                .files
                .codec
                .decode_frame(frames.payload(), records)
                .map_err(|m| frame_error(&self.path, self.split, frames.frame_offset(), m))?;
            self.buffer = items.into_iter();
            return Ok(true);
        }
        let (records, crc) = (frames.records(), frames.file_crc32c());
        self.frames = None;
        let expected = &self.files.manifest.parts[self.split];
        if records != expected.records {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "partition {}: {records} records, the manifest records {}",
                    self.split, expected.records
                ),
            ));
        }
        if crc != expected.crc32c {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "partition {}: file checksum {crc:08x} differs from the manifest's {:08x}",
                    self.split, expected.crc32c
                ),
            ));
        }
        Ok(false)
    }
}

impl<T: Data> PartReader<T> {
    /// Decodes the next frame into `batch`, handing each full batch to `sink`; `Ok(false)`
    /// at the verified end.
    fn decode_next_frame(
        &mut self,
        batch: &mut Vec<T>,
        sink: &mut dyn FnMut(&mut Vec<T>),
    ) -> Result<bool> {
        let Some(frames) = self.frames.as_mut() else {
            return Ok(false);
        };
        let Some(records) = frames.next_frame()? else {
            return self.refill();
        };
        let mut rest = frames.payload();
        let mut left = records as usize;
        let decoded = loop {
            let n = (BATCH - batch.len()).min(left);
            if let Err(m) = self.files.codec.decode_into(&mut rest, n, batch) {
                break Err(m);
            }
            left -= n;
            if batch.len() == BATCH {
                sink(batch);
                batch.clear();
            }
            if left == 0 {
                break match rest.len() {
                    0 => Ok(()),
                    extra => Err(format!(
                        "{extra} bytes left after the frame's {records} records"
                    )),
                };
            }
        };
        decoded
            .map(|()| true)
            .map_err(|m| frame_error(&self.path, self.split, frames.frame_offset(), m))
    }

    /// Decodes the next frame into the buffer: false at the end or after an error (then
    /// recorded in the task).
    fn refill_or_fail(&mut self) -> bool {
        match self.refill() {
            Ok(more) => more,
            Err(e) => {
                self.frames = None;
                self.tc.fail(e);
                false
            }
        }
    }
}

impl<T: Data> Sealed for PartReader<T> {}

impl<T: Data> PartitionIterator<T> for PartReader<T> {
    /// Decodes each frame straight into the batches it hands on (no frame-sized vector of
    /// records in between). A frame's checksum is verified before any of its records is
    /// decoded; a record that does not decode fails the task.
    fn drain_batches(mut self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        let mut batch = Vec::with_capacity(BATCH);
        // What a partial pull left decoded.
        for x in std::mem::take(&mut self.buffer) {
            batch.push(x);
            if batch.len() == BATCH {
                sink(&mut batch);
                batch.clear();
            }
        }
        loop {
            match self.decode_next_frame(&mut batch, sink) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    self.frames = None;
                    self.tc.fail(e);
                    return;
                }
            }
        }
        if !batch.is_empty() {
            sink(&mut batch);
        }
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
        let expected = self.files.manifest.parts[self.split].records;
        let unread = self
            .frames
            .as_ref()
            .map_or(0, |f| expected.saturating_sub(f.records()) as usize);
        let left = unread + self.buffer.len();
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
    let (dir, app) = (session.dir(), session.app());
    let reader = Reader::register(dir);
    // In a cluster only process 0, the app folder's owner, removes checkpoints. Restart
    // points (a stream's state and input logs, a series' steps under a given app id) are
    // retained by their series (a stream's commits, `keep`), never by `clean_checkpoints`.
    let inner = &node.ctx.inner;
    if inner.config.clean_checkpoints
        && app.is_owner()
        && !session.is_restart_point(inner.generated_app_id)
    {
        reader.delete_when_unread(app.storage.clone());
    }
    let files = Arc::new(CheckpointFiles {
        dir: dir.to_path_buf(),
        storage: app.storage.clone(),
        manifest,
        codec,
        _reader: reader,
        _app: Some(app.clone()),
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
/// `refuse_unknown`: whether a custom partitioner this context has no implementation of
/// fails the open ([`Error::UnknownPartitioner`]; checkpoints) or is dropped with
/// `Event::PartitionerDropped` (object files: the data reads the same without it).
pub(crate) fn open_checkpoint<T: Data>(
    ctx: &Context,
    path: &Path,
    codec: Arc<dyn Codec<T>>,
    site: CallSite,
    refuse_unknown: bool,
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
    let mut dropped = None;
    let partitioner = match manifest.partitioner.clone() {
        // A user's scheme is placed by code this process must have: the registered
        // implementation of the same identity, or nothing is opened.
        Some(crate::Partitioner::Custom(recorded)) => {
            match ctx.inner.partitioners.resolve(&recorded) {
                Some(registered) => Some(crate::Partitioner::Custom(registered)),
                None => {
                    let error = Error::UnknownPartitioner {
                        path: manifest_path,
                        name: recorded.name().to_string(),
                        key_type: recorded.key_type().to_string(),
                        partitions: recorded.num_partitions(),
                        registered: ctx.inner.partitioners.describe_named(recorded.name()),
                    };
                    if refuse_unknown {
                        return Err(error);
                    }
                    dropped = Some(error.to_string());
                    None
                }
            }
        }
        other => other,
    };
    // A checkpoint in the context's own app folder (a series' step from `latest()`, say)
    // keeps that folder held while the RDD lives, as the RDD that wrote it does: replacing
    // the checkpoint directory then does not free the folder for another process (its
    // `keep`, or `flintlock gc`) to remove what this RDD reads.
    let app = ctx.inner.checkpoint_dir.read().clone().filter(|app| {
        path.parent()
            .is_some_and(|p| live::same_folder(p, app.dir()))
    });
    let files = Arc::new(CheckpointFiles {
        dir: path.to_path_buf(),
        storage,
        manifest,
        codec,
        _reader: reader,
        _app: app,
    });
    // Another build wrote it, perhaps: its placement is checked before it is relied on.
    let scan: Option<PlacementScan<T>> = partitioner.as_ref().map(|_| {
        let scan_files = files.clone();
        let scan_ctx = ctx.clone();
        Box::new(move |check: &mut RecordCheck<'_, T>| scan_records(&scan_files, &scan_ctx, check))
            as PlacementScan<T>
    });
    let rdd = new_checkpoint_node(ctx, files, partitioner, scan, site);
    if let Some(reason) = dropped {
        ctx.inner.emit(crate::Event::PartitionerDropped {
            rdd_id: rdd.id(),
            reason,
        });
    }
    Ok(rdd)
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
        (_, read) => {
            if read.is_none() {
                super::layout::warn_untraced(codec.type_name());
            } else if manifest.element_type == codec.type_name() {
                super::layout::warn_unrecorded(codec.type_name(), path.parent().unwrap_or(path));
            }
            if manifest.element_type != codec.type_name() {
                return Err(mismatch(None));
            }
            Ok(())
        }
    }
}
