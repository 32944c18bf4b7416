//! `TextFileRdd` (Spark's `HadoopRDD` over text files), made by `Context::text_file`, and
//! `WholeTextFilesRdd` (Spark's `WholeTextFileRDD`), made by `Context::whole_text_files`.
//!
//! No dependencies; no partitioner. A path names a file, a folder (its files, not its
//! subfolders, in name order, without the hidden ones whose names start with `_` or `.`,
//! such as `_SUCCESS`) or a glob (`logs/*.txt`). The files are listed and sized when the RDD
//! is built; each is split into byte ranges, and a line belongs to the range its first byte
//! falls in, as with Hadoop's line reader, so every line is read exactly once whatever the
//! split points. A file's last range reads to its end when the partition is computed, so
//! lines appended after the RDD was built are read too. `\n` and `\r\n` endings are removed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;

/// An error met while listing or sizing the input, kept for the tasks to report.
#[derive(Clone)]
struct InputError {
    path: PathBuf,
    kind: std::io::ErrorKind,
    message: String,
}

impl InputError {
    fn new(path: &Path, e: &std::io::Error) -> Self {
        InputError {
            path: path.to_path_buf(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn error(&self) -> Error {
        Error::io(
            "open",
            &self.path,
            std::io::Error::new(self.kind, self.message.clone()),
        )
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('_') || name.starts_with('.')
}

/// The files `path` names, with their sizes: the file itself, a folder's visible files, or
/// a glob's matching visible files, in name order.
fn list_inputs(path: &Path) -> std::result::Result<Vec<(PathBuf, u64)>, InputError> {
    let text = path.to_string_lossy();
    let mut files: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
        let matches = glob::glob(&text).map_err(|e| {
            InputError::new(
                path,
                &std::io::Error::new(std::io::ErrorKind::InvalidInput, e.msg),
            )
        })?;
        let mut files = Vec::new();
        for m in matches {
            let p = m.map_err(|e| InputError::new(e.path(), e.error()))?;
            if p.is_file() && !p.file_name().is_some_and(is_hidden) {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(InputError::new(
                path,
                &std::io::Error::new(std::io::ErrorKind::NotFound, "the pattern matches no file"),
            ));
        }
        files
    } else {
        let meta = std::fs::metadata(path).map_err(|e| InputError::new(path, &e))?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| InputError::new(path, &e))?;
            let mut files = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| InputError::new(path, &e))?;
                let p = entry.path();
                if !is_hidden(&entry.file_name()) && p.is_file() {
                    files.push(p);
                }
            }
            files
        } else {
            vec![path.to_path_buf()]
        }
    };
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p)
                .map_err(|e| InputError::new(&p, &e))?
                .len();
            Ok((p, len))
        })
        .collect()
}

/// One partition of a `TextFileRdd`: a byte range of one file (`end: None` reads to the end).
#[derive(Clone)]
struct Split {
    file: usize,
    start: u64,
    end: Option<u64>,
}

pub(crate) struct TextFileRdd {
    files: Vec<PathBuf>,
    /// The byte ranges, or the error met when listing or sizing (reported by every task).
    splits: std::result::Result<Vec<Split>, InputError>,
    num_partitions: usize,
}

impl TextFileRdd {
    /// Lists and sizes the input, and splits it into about `min_partitions` ranges of
    /// nearly equal size (at least one per file).
    pub(crate) fn new(path: PathBuf, min_partitions: usize) -> Self {
        match list_inputs(&path) {
            Err(e) => TextFileRdd {
                files: Vec::new(),
                splits: Err(e),
                num_partitions: min_partitions,
            },
            Ok(inputs) => {
                let total: u64 = inputs.iter().map(|(_, len)| len).sum();
                let goal = total.div_ceil(min_partitions as u64).max(1);
                let mut splits = Vec::new();
                for (i, (_, len)) in inputs.iter().enumerate() {
                    let n = if inputs.len() == 1 {
                        min_partitions as u64
                    } else {
                        len.div_ceil(goal).max(1)
                    };
                    for k in 0..n {
                        splits.push(Split {
                            file: i,
                            start: k * len / n,
                            end: (k + 1 < n).then(|| (k + 1) * len / n),
                        });
                    }
                }
                let num_partitions = splits.len();
                TextFileRdd {
                    files: inputs.into_iter().map(|(p, _)| p).collect(),
                    splits: Ok(splits),
                    num_partitions,
                }
            }
        }
    }
}

impl Compute<String> for TextFileRdd {
    fn name(&self) -> &'static str {
        "TextFileRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(&self, split: usize, tc: &TaskContext) -> Result<BoxedPartitionIter<String>> {
        let splits = self.splits.as_ref().map_err(InputError::error)?;
        let s = &splits[split];
        read_lines(&self.files[s.file], s.start, s.end, tc)
    }
}

/// The lines whose first byte lies in `start..end` (`end: None`: to the end of the file).
fn read_lines(
    path: &Path,
    start: u64,
    end: Option<u64>,
    tc: &TaskContext,
) -> Result<BoxedPartitionIter<String>> {
    let io = |e| Error::io("read", path, e);
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // Find the first line that starts at or after `start`.
    let mut pos = start;
    if start > 0 {
        file.seek(SeekFrom::Start(start - 1)).map_err(io)?;
    }
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    if start > 0 {
        let mut byte = [0u8; 1];
        let prev_is_newline = reader.read(&mut byte).map_err(io)? == 1 && byte[0] == b'\n';
        if !prev_is_newline {
            let mut skipped = Vec::new();
            pos += reader.read_until(b'\n', &mut skipped).map_err(io)? as u64;
        }
    }
    let path = path.to_path_buf();
    let tc = tc.clone();
    let mut buf = Vec::new();
    Ok(boxed(std::iter::from_fn(move || {
        if end.is_some_and(|end| pos >= end) {
            return None;
        }
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => {
                tc.fail(Error::io("read", &path, e));
                return None;
            }
        };
        let line_start = pos;
        pos += n as u64;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        match String::from_utf8(std::mem::take(&mut buf)) {
            Ok(s) => Some(s),
            Err(_) => {
                tc.fail(Error::io(
                    "read",
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the line at byte offset {line_start} is not valid UTF-8"),
                    ),
                ));
                None
            }
        }
    })))
}

/// `WholeTextFilesRdd`: one `(path, contents)` pair per file, the files dealt in name order
/// over the partitions in contiguous runs.
pub(crate) struct WholeTextFilesRdd {
    files: std::result::Result<Vec<PathBuf>, InputError>,
    num_partitions: usize,
}

impl WholeTextFilesRdd {
    pub(crate) fn new(path: PathBuf, min_partitions: usize) -> Self {
        match list_inputs(&path) {
            Err(e) => WholeTextFilesRdd {
                files: Err(e),
                num_partitions: min_partitions,
            },
            Ok(inputs) => WholeTextFilesRdd {
                num_partitions: min_partitions.min(inputs.len()).max(1),
                files: Ok(inputs.into_iter().map(|(p, _)| p).collect()),
            },
        }
    }
}

impl Compute<(String, String)> for WholeTextFilesRdd {
    fn name(&self) -> &'static str {
        "WholeTextFilesRdd"
    }
    fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }

    fn compute(
        &self,
        split: usize,
        _tc: &TaskContext,
    ) -> Result<BoxedPartitionIter<(String, String)>> {
        let files = self.files.as_ref().map_err(InputError::error)?;
        let n = self.num_partitions;
        let (lo, hi) = (split * files.len() / n, (split + 1) * files.len() / n);
        let mut out = Vec::with_capacity(hi - lo);
        for path in &files[lo..hi] {
            let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                Error::io(
                    "read",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()),
                    ),
                )
            })?;
            out.push((path.to_string_lossy().into_owned(), text));
        }
        Ok(boxed(out.into_iter()))
    }
}
