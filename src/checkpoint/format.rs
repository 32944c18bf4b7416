//! The checkpoint format, version 2 (version 1 is read too).
//!
//! # Layout on disk
//! ```text
//! <checkpoint_dir>/<app-id>/.lock                        lock file held by the owning process
//! <checkpoint_dir>/<app-id>/rdd-<id>-<w>/part-00000       one file per partition, empty ones too
//! <checkpoint_dir>/<app-id>/rdd-<id>-<w>/part-NNNNN       (5 digits, more past 99,999: part-100000)
//! <checkpoint_dir>/<app-id>/rdd-<id>-<w>/_manifest.json   the commit point, written last
//! ```
//! `<w>` is the write id in 16 lower-case hex digits: every write attempt creates its own
//! folder, exclusively, so a rerun of a program with the same app id (whose RDD ids start
//! at 0 again) never meets an earlier run's folder, and an attempt's cleanup removes only
//! the files it created. (flintlock 0.1 named folders `rdd-<id>`; readers take any folder.)
//! While a write is in progress the folder also holds `.part-00003.<attempt>.tmp` and
//! `.manifest.<attempt>.tmp`; `<attempt>` is unique per write attempt in the process.
//!
//! All integers are **little-endian**. All checksums are **CRC-32C** (Castagnoli).
//!
//! # Partition file
//! ```text
//! header   magic            8 bytes   89 46 4C 4B 0D 0A 1A 0A  ("\x89FLK\r\n\x1a\n", PNG-style:
//!                                     catches text-mode transfers and truncation to 7 bits)
//!          version          u32       2 (1 in files of flintlock 0.1; same layout)
//!          compression      u8        0 = none, 1 = lz4 (lz4_flex block, size-prepended)
//!          reserved         u8        0
//!          type_name_len    u16       length of the element type name
//!          partition        u32       the partition index this file holds
//!          rdd_id           u64       the RDD id it was written for
//!          write_id         u64       unique id of the checkpoint write (also in the manifest)
//!          type_fingerprint u64       FNV-1a-64 of the element type name
//!          type_name        [u8]      `std::any::type_name` of the elements, UTF-8
//!          header_crc       u32       CRC-32C of every header byte before it
//! frames   payload_len      u32       bytes of payload, at most MAX_FRAME_BYTES (2^30)
//!          records          u32       records in the payload
//!          frame_crc        u32       CRC-32C of payload_len, records and payload bytes
//!          payload          [u8]      records, postcard-encoded back to back (compressed
//!                                     as a whole when compression = 1)
//! trailer  marker           u32       0xFFFF_FFFF (tells the trailer from a frame)
//!          total_records    u64       records in the file
//!          frames           u32       frames in the file
//!          trailer_crc      u32       CRC-32C of marker, total_records and frames
//! ```
//! An lz4 payload starts with its decompressed size (u32), also at most `MAX_FRAME_BYTES`.
//!
//! Every byte of the file is covered by a checksum, and the manifest records the file's
//! length, record count and whole-file CRC-32C. A reader verifies the header (magic,
//! version, type, partition, write id) before yielding anything, verifies each frame's
//! checksum before decoding a record of it, and at the end checks the trailer's counts and
//! the whole-file checksum against the manifest. A file of another partition, RDD or
//! application copied in place is caught at its header (partition or write id).
//!
//! # Manifest (`_manifest.json`)
//! ```text
//! {"manifest":<body>,"crc32c":"<8 lowercase hex digits>"}\n
//! ```
//! `<body>` is compact JSON of [`ManifestBody`]: format version, write id, RDD id, app id,
//! element type and fingerprint, compression, partition count, partitioner (the serde form
//! of `Partitioner`, or null), per part file: name, length, records, CRC-32C, and (version
//! 2) `element_layout`, the element type's structural layout. The CRC covers the exact bytes
//! of `<body>` as written, so any changed byte is detected (a plain JSON re-parse would
//! accept, say, changed white space).
//!
//! # The element layout (version 2)
//! `element_layout` is the canonical text of the element type's serde structure (fields in
//! order with their types, enum variants with their indices), traced with `serde-reflection`
//! and written in a grammar flintlock defines itself, e.g.
//! `(u64, Reading); struct Reading { sensor: str, delta: i32 }`; the grammar is documented
//! in `src/checkpoint/layout.rs`. A reader compares it with the layout of the type it is
//! asked for: another layout is `Error::TypeMismatch` with the first difference, never a
//! misread, even when the type kept its name. When both layouts are known the type *name*
//! need not match (a type moved to another module reads fine). The field is absent for
//! types that cannot be traced (`deserialize_any` types, untagged enums, some enums inside
//! sequences, ...); those, and every version-1 checkpoint, are checked by type name only.
//!
//! # What the writer guarantees the reader can read
//! - Every record is decoded again from exactly its own bytes, and the value read back
//!   encoded again and compared, before its frame is written (unless
//!   `ContextBuilder::checkpoint_verify(false)`, or the fixed-width codec, which has
//!   nothing to verify): a serde implementation that postcard cannot read back as the
//!   value written fails the write with `Error::UnreadableRecord`.
//! - No frame payload or body exceeds `MAX_FRAME_BYTES` (or a lower
//!   `checkpoint_frame_limit`); a record that cannot fit fails the write. The type name fits
//!   its `u16` length, and a part never has `u32::MAX` frames.
//!
//! # Partitioners of reopened checkpoints
//! A hash placement depends on the key type's `Hash` impl and on the hash function, and Rust
//! promises neither across builds. A reader trusts a recorded hash partitioner only after
//! placing every key of the checkpoint (one full, verified read) where it was read; on a
//! mismatch it drops the partitioner and by-key operations shuffle. A recorded range
//! partitioner keeps its bounds only as bytes: it describes the data but is never relied on
//! to place keys.
//!
//! # Version history
//! - **1** (flintlock 0.1): the format above without `element_layout`; folders `rdd-<id>`.
//! - **2** (flintlock 0.2): `element_layout` in the manifest; folders `rdd-<id>-<w>`; the
//!   part file layout is unchanged apart from its version field.
//!
//! A reader accepts versions up to [`FORMAT_VERSION`] and reports a newer one as
//! `Error::UnsupportedVersion`.
//!
//! # Crash reasoning
//! The write protocol (see `writer.rs`, where each step carries its comment):
//! 1. each task writes its partition to a temp name in the final folder, flushes, fsyncs,
//!    and renames it (no-replace) to `part-NNNNN`;
//! 2. after all parts: fsync the folder, so every rename is durable;
//! 3. write the manifest to a temp name, fsync, rename (no-replace) to `_manifest.json`;
//! 4. fsync the folder: the commit is durable; only now is lineage released.
//!
//! Any error aborts the attempt: the files it created are removed, then its (now empty)
//! folder, and the parent folder is fsynced; the state goes back to Marked with the lineage
//! intact. A failed fsync is never
//! retried and trusted. Each `<app-id>` folder holds a `.lock` file (`File::try_lock`), so a
//! second process pointed at the same app folder fails with `Error::Locked`; at start-up,
//! temp files and unmanifested folders are removed from app folders whose lock is free.
//! While a part is written, writeback is started every 8 MiB (`sync_file_range` on Linux), a
//! hint that makes the final fsync cheap; durability comes only from the fsync.
//!
//! A checkpoint exists if and only if `_manifest.json` exists and verifies. A crash before
//! step 3's rename leaves no manifest: readers report "not committed" and the action
//! recomputes from lineage. A crash after the rename but before the last fsync may lose the
//! manifest again on power loss (the same "not committed"), but never leaves a manifest
//! naming parts that are not durable, because step 2 came first. Torn or unsynced part data
//! can only exist without a manifest, or is caught by the checksums. Assumptions about the
//! storage: fsync of a file makes its data durable; fsync of a folder makes its entries
//! durable; rename (link) is atomic. `tests/crash_simulation.rs` checks this reasoning
//! against a filesystem model that crashes after every operation, and shows that removing
//! any one of the four syncs breaks it; `docs/RELIABILITY.md` lists every test.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::partitioner::Partitioner;

/// The newest format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;

/// The magic bytes that open every partition file.
pub const MAGIC: [u8; 8] = [0x89, b'F', b'L', b'K', b'\r', b'\n', 0x1a, b'\n'];

/// The manifest's file name: the commit point.
pub const MANIFEST: &str = "_manifest.json";

const TRAILER_MARKER: u32 = u32::MAX;
/// Bytes of a frame header: body length, records and checksum, a `u32` each.
pub(crate) const FRAME_HEADER: usize = 12;
/// A frame is closed once its payload reaches this many bytes.
pub(crate) const FRAME_TARGET: usize = 64 * 1024;
/// The largest frame body (and decompressed payload) a reader accepts: a corrupt length must
/// not allocate gigabytes. The writer enforces it (or a lower limit set with
/// `ContextBuilder::checkpoint_frame_limit`) at write time, so a record too large for a
/// frame fails the write instead of committing a checkpoint that cannot be read.
pub const MAX_FRAME_BYTES: u32 = 1 << 30;

/// Frame compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Compression {
    /// Frames are stored as encoded (the default).
    #[default]
    None,
    /// Frames are LZ4-compressed (crate `lz4_flex`, size-prepended blocks).
    Lz4,
}

impl Compression {
    fn to_u8(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }
    fn from_u8(v: u8) -> Option<Compression> {
        match v {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

/// The name of partition `i`'s file.
pub fn part_name(partition: usize) -> String {
    format!("part-{partition:05}")
}

/// FNV-1a-64 of a type name: the element type fingerprint.
pub fn type_fingerprint(type_name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in type_name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fields of a partition file header.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartHeader {
    /// Format version.
    pub version: u32,
    /// Frame compression.
    pub compression: Compression,
    /// Partition index.
    pub partition: u32,
    /// RDD id.
    pub rdd_id: u64,
    /// Write id (shared with the manifest).
    pub write_id: u64,
    /// Element type name.
    pub type_name: String,
}

impl PartHeader {
    /// A header of the current [`FORMAT_VERSION`] for partition `partition` of the RDD
    /// `rdd_id`, written by the write `write_id`.
    pub fn new(
        partition: u32,
        rdd_id: u64,
        write_id: u64,
        type_name: impl Into<String>,
        compression: Compression,
    ) -> PartHeader {
        PartHeader {
            version: FORMAT_VERSION,
            compression,
            partition,
            rdd_id,
            write_id,
            type_name: type_name.into(),
        }
    }

    /// Encodes the header, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let name = self.type_name.as_bytes();
        let mut out = Vec::with_capacity(48 + name.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.compression.to_u8());
        out.push(0);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        out.extend_from_slice(&self.rdd_id.to_le_bytes());
        out.extend_from_slice(&self.write_id.to_le_bytes());
        out.extend_from_slice(&type_fingerprint(&self.type_name).to_le_bytes());
        out.extend_from_slice(name);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and verifies a header. `path` names the file in errors.
    pub fn read(r: &mut impl Read, path: &Path) -> Result<(PartHeader, Vec<u8>)> {
        let mut fixed = [0u8; 44];
        read_exact(r, &mut fixed, path, "header")?;
        if fixed[..8] != MAGIC {
            return Err(Error::corrupt(
                path,
                "not a flintlock partition file (bad magic bytes at offset 0)",
            ));
        }
        let version = u32::from_le_bytes(le(&fixed[8..12]));
        let compression = fixed[12];
        let name_len = u16::from_le_bytes(le(&fixed[14..16])) as usize;
        let partition = u32::from_le_bytes(le(&fixed[16..20]));
        let rdd_id = u64::from_le_bytes(le(&fixed[20..28]));
        let write_id = u64::from_le_bytes(le(&fixed[28..36]));
        let fingerprint = u64::from_le_bytes(le(&fixed[36..44]));
        let mut rest = vec![0u8; name_len + 4];
        read_exact(r, &mut rest, path, "header")?;
        let mut all = fixed.to_vec();
        all.extend_from_slice(&rest[..name_len]);
        let stored_crc = u32::from_le_bytes(le(&rest[name_len..]));
        if crc32c::crc32c(&all) != stored_crc {
            // A newer version may have changed the header layout: say so rather than
            // "corrupt" when the version field is beyond what we know.
            if version > FORMAT_VERSION {
                return Err(Error::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: version,
                    max: FORMAT_VERSION,
                });
            }
            return Err(Error::corrupt(path, "header checksum mismatch"));
        }
        if version > FORMAT_VERSION || version == 0 {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                max: FORMAT_VERSION,
            });
        }
        let compression = Compression::from_u8(compression).ok_or_else(|| {
            Error::corrupt(path, format!("unknown compression code {compression}"))
        })?;
        let type_name = String::from_utf8(rest[..name_len].to_vec())
            .map_err(|_| Error::corrupt(path, "element type name is not UTF-8"))?;
        if type_fingerprint(&type_name) != fingerprint {
            return Err(Error::corrupt(path, "element type fingerprint mismatch"));
        }
        let mut raw = all;
        raw.extend_from_slice(&stored_crc.to_le_bytes());
        Ok((
            PartHeader {
                version,
                compression,
                partition,
                rdd_id,
                write_id,
                type_name,
            },
            raw,
        ))
    }
}

/// The 12-byte header of a frame whose (possibly compressed) body is `body`: the frame
/// checksum covers `payload_len`, `records` and the body.
pub(crate) fn frame_header(body: &[u8], records: u32) -> [u8; FRAME_HEADER] {
    let len = body.len() as u32;
    let mut h = crc32c::crc32c(&len.to_le_bytes());
    h = crc32c::crc32c_append(h, &records.to_le_bytes());
    h = crc32c::crc32c_append(h, body);
    let mut out = [0u8; FRAME_HEADER];
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&records.to_le_bytes());
    out[8..12].copy_from_slice(&h.to_le_bytes());
    out
}

/// The body of a frame: the payload as is, or LZ4-compressed into `scratch`.
pub(crate) fn frame_body<'a>(
    payload: &'a [u8],
    compression: Compression,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    match compression {
        Compression::None => payload,
        Compression::Lz4 => {
            *scratch = lz4_flex::compress_prepend_size(payload);
            scratch
        }
    }
}

/// Encodes the trailer.
pub(crate) fn encode_trailer(total_records: u64, frames: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&TRAILER_MARKER.to_le_bytes());
    out.extend_from_slice(&total_records.to_le_bytes());
    out.extend_from_slice(&frames.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a partition file's frames in order after its header, verifying each frame's
/// checksum, the trailer's checksum and that the trailer counts what was read, and keeping
/// the whole-file checksum. The one reader of the frame layout: `ReliableCheckpointRdd`
/// streams through it and [`PartFile::decode`] collects through it.
pub(crate) struct FrameCursor<R> {
    r: R,
    path: PathBuf,
    /// Where the next frame starts.
    offset: u64,
    /// Where the last frame returned started, for error messages.
    frame_at: u64,
    file_len: u64,
    compression: Compression,
    /// CRC-32C of every byte read so far.
    crc: u32,
    records: u64,
    frames: u32,
    ended: bool,
    /// The last frame's decompressed payload.
    payload: Vec<u8>,
    /// A compressed body, before decompression.
    scratch: Vec<u8>,
}

impl<R: Read> FrameCursor<R> {
    /// Reads and verifies the header of a file of `file_len` bytes. `path` names the file in
    /// errors.
    pub(crate) fn open(mut r: R, path: &Path, file_len: u64) -> Result<(PartHeader, Self)> {
        let (header, raw) = PartHeader::read(&mut r, path)?;
        let cursor = FrameCursor {
            r,
            path: path.to_path_buf(),
            offset: raw.len() as u64,
            frame_at: raw.len() as u64,
            file_len,
            compression: header.compression,
            crc: crc32c::crc32c(&raw),
            records: 0,
            frames: 0,
            ended: false,
            payload: Vec::new(),
            scratch: Vec::new(),
        };
        Ok((header, cursor))
    }

    /// Reads the next frame and returns its record count, with the payload in
    /// [`payload`](Self::payload); `None` at the verified trailer, and after it.
    pub(crate) fn next_frame(&mut self) -> Result<Option<u32>> {
        if self.ended {
            return Ok(None);
        }
        let offset = self.offset;
        self.frame_at = offset;
        let crc_before = self.crc;
        let mut head = [0u8; FRAME_HEADER];
        self.read_exact(&mut head, "frame header")?;
        let len = u32::from_le_bytes(le(&head[0..4]));
        if len == TRAILER_MARKER {
            let mut rest = [0u8; 8];
            self.read_exact(&mut rest, "trailer")?;
            let mut fields = head.to_vec();
            fields.extend_from_slice(&rest[..4]);
            let total = u64::from_le_bytes(le(&head[4..12]));
            let frames = u32::from_le_bytes(le(&rest[0..4]));
            let crc = u32::from_le_bytes(le(&rest[4..8]));
            if crc32c::crc32c(&fields) != crc {
                return Err(self.corrupt(format!("trailer checksum mismatch at offset {offset}")));
            }
            if total != self.records || frames != self.frames {
                return Err(self.corrupt(format!(
                    "trailer counts {total} records in {frames} frames, the file has {} in {}",
                    self.records, self.frames
                )));
            }
            self.ended = true;
            return Ok(None);
        }
        let remaining = self.file_len.saturating_sub(self.offset);
        if len > MAX_FRAME_BYTES || u64::from(len) > remaining {
            return Err(self.corrupt(format!(
                "frame at offset {offset} claims {len} bytes, {remaining} remain (corrupt length)"
            )));
        }
        let records = u32::from_le_bytes(le(&head[4..8]));
        let stored = u32::from_le_bytes(le(&head[8..12]));
        let mut target = std::mem::take(match self.compression {
            Compression::None => &mut self.payload,
            Compression::Lz4 => &mut self.scratch,
        });
        target.clear();
        target.resize(len as usize, 0);
        // One CRC pass over the body: the frame's. The file's running CRC follows from it
        // (`crc::extend_over_frame`) once it matches the stored one.
        let read = self.read_exact_unsummed(&mut target, "frame");
        let frame_ok =
            read.is_ok() && crc32c::crc32c_append(crc32c::crc32c(&head[0..8]), &target) == stored;
        match self.compression {
            Compression::None => self.payload = target,
            Compression::Lz4 => self.scratch = target,
        }
        read?;
        if !frame_ok {
            return Err(self.corrupt(format!("frame at offset {offset}: checksum mismatch")));
        }
        self.crc = super::crc::extend_over_frame(crc_before, &head, len as usize);
        if self.compression == Compression::Lz4 {
            let claimed = self
                .scratch
                .get(..4)
                .map_or(0, |b| u32::from_le_bytes(le(b)));
            if claimed > MAX_FRAME_BYTES {
                return Err(self.corrupt(format!(
                    "frame at offset {offset}: lz4 payload claims {claimed} bytes, more than {MAX_FRAME_BYTES}"
                )));
            }
            self.payload = lz4_flex::decompress_size_prepended(&self.scratch)
                .map_err(|e| self.corrupt(format!("frame at offset {offset}: lz4: {e}")))?;
        }
        self.records += u64::from(records);
        self.frames += 1;
        Ok(Some(records))
    }

    /// The payload of the last frame [`next_frame`](Self::next_frame) returned.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload of the last frame, leaving the buffer empty.
    pub(crate) fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// Where the last frame (or the trailer) read starts in the file.
    pub(crate) fn frame_offset(&self) -> u64 {
        self.frame_at
    }

    /// Records read so far (all of them, after the trailer).
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// CRC-32C of every byte read so far: the whole file's, after the trailer.
    pub(crate) fn file_crc32c(&self) -> u32 {
        self.crc
    }

    /// The reader, positioned after what was read.
    pub(crate) fn into_inner(self) -> R {
        self.r
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.read_exact_unsummed(buf, what)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    /// [`read_exact`](Self::read_exact) without adding the bytes to the file's CRC: the
    /// caller accounts for them.
    fn read_exact_unsummed(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt(format!(
                    "truncated {what}: the file ends early (frame at offset {})",
                    self.frame_at
                ))
            } else {
                Error::io("read", &self.path, e)
            }
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::corrupt(&self.path, reason)
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::corrupt(path, format!("truncated {what}: the file ends early"))
        } else {
            Error::io("read", path, e)
        }
    })
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// One part file as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PartInfo {
    /// File name (`part-00003`).
    pub file: String,
    /// Length in bytes.
    pub bytes: u64,
    /// Records in it.
    pub records: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
}

/// The manifest's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ManifestBody {
    /// Always `flintlock-checkpoint`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Unique id of this write; every part header repeats it.
    pub write_id: u64,
    /// The checkpointed RDD's id in the writing context.
    pub rdd_id: u64,
    /// The writing context's app id.
    pub app_id: String,
    /// `std::any::type_name` of the elements.
    pub element_type: String,
    /// FNV-1a-64 of `element_type`.
    pub type_fingerprint: u64,
    /// Frame compression.
    pub compression: Compression,
    /// Number of partitions (= part files).
    pub num_partitions: usize,
    /// The RDD's partitioner, kept so a reopened checkpoint still joins without a shuffle.
    pub partitioner: Option<Partitioner>,
    /// One entry per partition, in order.
    pub parts: Vec<PartInfo>,
    /// Format 2: the element type's structural layout (fields and their types, enum
    /// variants), traced with `serde-reflection` and written in flintlock's own canonical
    /// text (see `checkpoint::layout`). `None` in format 1 and for types that cannot be
    /// traced; then only the type name is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_layout: Option<String>,
    /// Format 2: when the manifest was written, UTC, RFC 3339 (`2026-12-02T01:40:00.123456Z`;
    /// early format-2 writers recorded whole seconds, `2026-12-02T01:40:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<String>,
    /// Format 2: the named series the checkpoint belongs to (restartable jobs), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesEntry>,
}

/// A checkpoint's place in a named series (`Context::checkpointer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SeriesEntry {
    /// The series name.
    pub name: String,
    /// The step (iteration) the checkpoint holds.
    pub step: u64,
    /// The series' meta pairs when it was written (what a resume must match).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}

/// The value of [`ManifestBody::format`].
pub const FORMAT_NAME: &str = "flintlock-checkpoint";

const SEAL_SUFFIX_START: &[u8] = b",\"crc32c\":\"";
const SEAL_SUFFIX_END: &[u8] = b"\"}\n";

/// Wraps a JSON `body` as `{"<key>":<body>,"crc32c":"<8 hex digits>"}` and a newline: the
/// checksummed JSON file of manifests and of the streaming metadata. The checksum covers
/// the body's exact bytes.
pub(crate) fn seal_json(key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"{key}\":").into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(SEAL_SUFFIX_START);
    out.extend_from_slice(format!("{:08x}", crc32c::crc32c(body)).as_bytes());
    out.extend_from_slice(SEAL_SUFFIX_END);
    out
}

/// The verified body of a file written by [`seal_json`] with `key`: damage (framing,
/// checksum) is [`Error::CorruptCheckpoint`] naming `path`.
pub(crate) fn unseal_json<'a>(key: &str, bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let prefix = format!("{{\"{key}\":").into_bytes();
    let suffix_len = SEAL_SUFFIX_START.len() + 8 + SEAL_SUFFIX_END.len();
    if bytes.len() < prefix.len() + suffix_len
        || !bytes.starts_with(&prefix)
        || !bytes.ends_with(SEAL_SUFFIX_END)
    {
        return Err(Error::corrupt(path, format!("{key} framing is damaged")));
    }
    let body_end = bytes.len() - suffix_len;
    let body = &bytes[prefix.len()..body_end];
    let suffix = &bytes[body_end..];
    if !suffix.starts_with(SEAL_SUFFIX_START) {
        return Err(Error::corrupt(path, format!("{key} framing is damaged")));
    }
    let hex = &suffix[SEAL_SUFFIX_START.len()..SEAL_SUFFIX_START.len() + 8];
    let stored = std::str::from_utf8(hex)
        .ok()
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| Error::corrupt(path, format!("{key} checksum is not 8 hex digits")))?;
    let actual = crc32c::crc32c(body);
    if stored != actual {
        return Err(Error::corrupt(
            path,
            format!("{key} checksum mismatch (stored {stored:08x}, computed {actual:08x})"),
        ));
    }
    Ok(body)
}

impl PartInfo {
    /// The entry of part `partition`, named as the writer names it ([`part_name`]).
    pub fn new(partition: usize, bytes: u64, records: u64, crc32c: u32) -> PartInfo {
        PartInfo {
            file: part_name(partition),
            bytes,
            records,
            crc32c,
        }
    }
}

impl SeriesEntry {
    /// Step `step` of the series `name`, written with `meta`.
    pub fn new(
        name: impl Into<String>,
        step: u64,
        meta: std::collections::BTreeMap<String, String>,
    ) -> SeriesEntry {
        SeriesEntry {
            name: name.into(),
            step,
            meta,
        }
    }
}

impl ManifestBody {
    /// A manifest of the current [`FORMAT_VERSION`] with one entry per part: the partition
    /// count is `parts.len()` and the fingerprint that of `element_type`. The optional
    /// fields (partitioner, layout, write time, series) start empty; set them on the result.
    pub fn new(
        write_id: u64,
        rdd_id: u64,
        app_id: impl Into<String>,
        element_type: impl Into<String>,
        compression: Compression,
        parts: Vec<PartInfo>,
    ) -> ManifestBody {
        let element_type = element_type.into();
        ManifestBody {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            write_id,
            rdd_id,
            app_id: app_id.into(),
            type_fingerprint: type_fingerprint(&element_type),
            element_type,
            compression,
            num_partitions: parts.len(),
            partitioner: None,
            parts,
            element_layout: None,
            written_at: None,
            series: None,
        }
    }

    /// The manifest file's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("cannot encode the manifest: {e}")))?;
        Ok(seal_json("manifest", &body))
    }

    /// Parses and verifies a manifest file's bytes.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<ManifestBody> {
        let body = unseal_json("manifest", bytes, path)?;
        // Check the version before the schema, so that a newer manifest says "upgrade".
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let probe: Probe = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(path, format!("manifest is not valid JSON: {e}")))?;
        if probe.version > FORMAT_VERSION || probe.version == 0 {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: probe.version,
                max: FORMAT_VERSION,
            });
        }
        let m: ManifestBody = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(path, format!("manifest does not parse: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(Error::corrupt(
                path,
                format!(
                    "format is {:?}, expected \"flintlock-checkpoint\"",
                    m.format
                ),
            ));
        }
        if m.parts.len() != m.num_partitions {
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest lists {} part files for {} partitions",
                    m.parts.len(),
                    m.num_partitions
                ),
            ));
        }
        for (i, p) in m.parts.iter().enumerate() {
            if p.file != part_name(i) {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "part {i} is named {:?}, expected {:?}",
                        p.file,
                        part_name(i)
                    ),
                ));
            }
        }
        if m.partitioner
            .as_ref()
            .map(|p| p.num_partitions())
            .is_some_and(|n| n != m.num_partitions)
        {
            return Err(Error::corrupt(
                path,
                "the partitioner's partition count differs from the checkpoint's",
            ));
        }
        if type_fingerprint(&m.element_type) != m.type_fingerprint {
            return Err(Error::corrupt(path, "element type fingerprint mismatch"));
        }
        Ok(m)
    }
}

/// A whole partition file, decoded and verified: its header and, per frame, the record count
/// and the (decompressed) payload of postcard-encoded records.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartFile {
    /// The header.
    pub header: PartHeader,
    /// `(records, payload)` per frame, in order.
    pub frames: Vec<(u32, Vec<u8>)>,
}

impl PartFile {
    /// A file of `header` and `(records, payload)` frames.
    pub fn new(header: PartHeader, frames: Vec<(u32, Vec<u8>)>) -> PartFile {
        PartFile { header, frames }
    }

    /// Encodes the file: header, frames (compressed as the header says), trailer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header.encode();
        let mut scratch = Vec::new();
        let mut total = 0u64;
        for (records, payload) in &self.frames {
            let body = frame_body(payload, self.header.compression, &mut scratch);
            out.extend_from_slice(&frame_header(body, *records));
            out.extend_from_slice(body);
            total += u64::from(*records);
        }
        out.extend_from_slice(&encode_trailer(total, self.frames.len() as u32));
        out
    }

    /// Decodes and verifies every byte of a partition file: header checksum and fields,
    /// every frame's checksum, the trailer's checksum and counts, and that nothing follows
    /// the trailer. Records are not decoded (that needs the element type). `path` names the
    /// file in errors. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<PartFile> {
        let (header, mut cursor) = FrameCursor::open(bytes, path, bytes.len() as u64)?;
        let mut frames = Vec::new();
        while let Some(records) = cursor.next_frame()? {
            frames.push((records, cursor.take_payload()));
        }
        let rest = cursor.into_inner();
        if !rest.is_empty() {
            return Err(Error::corrupt(
                path,
                format!("{} bytes after the trailer", rest.len()),
            ));
        }
        Ok(PartFile { header, frames })
    }
}

/// The path of a part file in a checkpoint folder.
pub(crate) fn part_path(dir: &Path, partition: usize) -> PathBuf {
    dir.join(part_name(partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_have_five_digits_and_grow_past_99999() {
        assert_eq!(part_name(3), "part-00003");
        assert_eq!(part_name(99_999), "part-99999");
        assert_eq!(part_name(100_000), "part-100000");
    }

    #[test]
    fn header_round_trips() {
        let h = PartHeader {
            version: 1,
            compression: Compression::Lz4,
            partition: 7,
            rdd_id: 9,
            write_id: 11,
            type_name: "(u64, f64)".into(),
        };
        let bytes = h.encode();
        let (back, raw) = PartHeader::read(&mut bytes.as_slice(), Path::new("x")).unwrap();
        assert_eq!(back, h);
        assert_eq!(raw, bytes);
    }

    #[test]
    fn every_flipped_manifest_byte_is_detected() {
        let m = ManifestBody {
            format: "flintlock-checkpoint".into(),
            version: 1,
            write_id: 1,
            rdd_id: 2,
            app_id: "a".into(),
            element_type: "u8".into(),
            type_fingerprint: type_fingerprint("u8"),
            compression: Compression::None,
            num_partitions: 1,
            partitioner: None,
            parts: vec![PartInfo {
                file: part_name(0),
                bytes: 10,
                records: 1,
                crc32c: 5,
            }],
            element_layout: Some("struct Reading { delta: i32 }".into()),
            written_at: Some("2026-12-02T01:40:00Z".into()),
            series: Some(SeriesEntry {
                name: "ranks".into(),
                step: 5,
                meta: [("graph".to_string(), "g1".to_string())].into(),
            }),
        };
        let bytes = m.encode().unwrap();
        assert_eq!(ManifestBody::decode(&bytes, Path::new("m")).unwrap(), m);
        for i in 0..bytes.len() {
            for x in [1u8, 0x20, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= x;
                assert!(
                    ManifestBody::decode(&b, Path::new("m")).is_err(),
                    "byte {i} ^ {x}"
                );
            }
        }
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    /// A file of the current version with `frames` as its frame bytes and no trailer.
    fn file_with(frames: &[u8]) -> Vec<u8> {
        let header = PartHeader {
            version: FORMAT_VERSION,
            partition: 0,
            rdd_id: 3,
            write_id: 1,
            type_name: "u8".into(),
            compression: Compression::None,
        };
        let mut file = header.encode();
        file.extend_from_slice(frames);
        file
    }

    #[test]
    fn a_frame_longer_than_the_file_is_rejected_before_allocating() {
        let mut frame = frame_header(&[0u8; 16], 1).to_vec();
        frame[0..4].copy_from_slice(&(MAX_FRAME_BYTES - 1).to_le_bytes());
        let file = file_with(&frame);
        let (_, mut cursor) =
            FrameCursor::open(file.as_slice(), Path::new("f"), file.len() as u64).unwrap();
        let err = cursor.next_frame().expect_err("rejected");
        assert!(err.to_string().contains("corrupt length"), "{err}");
        assert_eq!(cursor.payload.capacity(), 0, "nothing was allocated");
    }

    #[test]
    fn a_frame_reads_back_with_its_checksums() {
        let body = b"some frame body bytes".repeat(100);
        let header = frame_header(&body, 7);
        let mut direct = crc32c::crc32c(&(body.len() as u32).to_le_bytes());
        direct = crc32c::crc32c_append(direct, &7u32.to_le_bytes());
        direct = crc32c::crc32c_append(direct, &body);
        assert_eq!(header[8..12], direct.to_le_bytes());
        let mut frames = header.to_vec();
        frames.extend_from_slice(&body);
        frames.extend_from_slice(&encode_trailer(7, 1));
        let file = file_with(&frames);
        let (_, mut cursor) =
            FrameCursor::open(file.as_slice(), Path::new("f"), file.len() as u64).unwrap();
        assert_eq!(cursor.next_frame().unwrap(), Some(7));
        assert_eq!(cursor.payload(), body.as_slice());
        assert_eq!(cursor.next_frame().unwrap(), None);
        assert_eq!(cursor.next_frame().unwrap(), None, "stays at the end");
        assert_eq!(cursor.records(), 7);
        assert_eq!(cursor.file_crc32c(), crc32c::crc32c(&file));
    }

    #[test]
    fn a_trailer_that_miscounts_is_rejected() {
        let body = [1u8; 8];
        let mut frames = frame_header(&body, 2).to_vec();
        frames.extend_from_slice(&body);
        frames.extend_from_slice(&encode_trailer(3, 1));
        let file = file_with(&frames);
        let (_, mut cursor) =
            FrameCursor::open(file.as_slice(), Path::new("f"), file.len() as u64).unwrap();
        assert_eq!(cursor.next_frame().unwrap(), Some(2));
        let err = cursor.next_frame().unwrap_err().to_string();
        assert!(
            err.contains("trailer counts 3 records in 1 frames, the file has 2 in 1"),
            "{err}"
        );
    }
}
