//! `TextFileRdd` (Spark's `HadoopRDD` over a text file), made by `Context::text_file`.
//!
//! No dependencies; no partitioner. The file is split into byte ranges; a line belongs to the
//! range its first byte falls in, as with Hadoop's line reader, so every line is read exactly
//! once whatever the split points. `\n` and `\r\n` endings are removed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::iter::boxed;
use super::node::{BoxedPartitionIter, Compute};
use crate::dependency::Dependency;
use crate::error::{Error, Result};
use crate::scheduler::TaskContext;

pub(crate) struct TextFileRdd {
    path: PathBuf,
    num_partitions: usize,
    /// Byte ranges, or the error met when sizing the file (reported by every task).
    splits: std::result::Result<Vec<(u64, u64)>, (std::io::ErrorKind, String)>,
}

impl TextFileRdd {
    /// Splits the file into `min_partitions` byte ranges of nearly equal size.
    pub(crate) fn new(path: PathBuf, min_partitions: usize) -> Self {
        let splits = std::fs::metadata(&path)
            .and_then(|m| {
                if m.is_dir() {
                    Err(std::io::Error::other("is a folder, not a file"))
                } else {
                    Ok(m.len())
                }
            })
            .map(|len| {
                let n = min_partitions as u64;
                (0..n).map(|i| (i * len / n, (i + 1) * len / n)).collect()
            })
            .map_err(|e| (e.kind(), e.to_string()));
        TextFileRdd {
            path,
            num_partitions: min_partitions,
            splits,
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
        let splits = self.splits.as_ref().map_err(|(kind, msg)| {
            Error::io("open", &self.path, std::io::Error::new(*kind, msg.clone()))
        })?;
        let (start, end) = splits[split];
        let io = |e| Error::io("read", &self.path, e);
        let mut file = File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
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
        let path = self.path.clone();
        let tc = tc.clone();
        let mut buf = Vec::new();
        Ok(boxed(std::iter::from_fn(move || {
            if pos >= end {
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
}
