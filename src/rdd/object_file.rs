//! `save_as_object_file` and `Context::object_file` (Spark's `saveAsObjectFile` and
//! `objectFile`): an RDD's elements stored in the checkpoint format, so they are
//! checksummed, typed (the element type's layout is recorded and checked on read) and
//! committed by a manifest written last.

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::{codec_for, create_parents, AppDir, WriteSession};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::Data;

use super::iter::drain_count;
use super::{site, Rdd};

/// `path` made absolute (against the current folder), as the checkpoint storage expects.
fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))
}

impl<T: Data + Serialize + DeserializeOwned> Rdd<T> {
    /// Saves the elements to the new folder `path` in the checkpoint format (one part file
    /// per partition and a manifest), to be read back with [`Context::object_file`] by this
    /// or another process or build. Spark's `saveAsObjectFile`, with the checkpoint's
    /// guarantees: every record is checked to read back before its part is committed
    /// ([`Error::UnreadableRecord`] otherwise), parts are checksummed, and the element
    /// type's structure is recorded so that a reader of another type is refused.
    ///
    /// The manifest is written last: a folder without one (a save that was killed) is
    /// refused by `object_file` with [`Error::NotCommitted`]. A save that fails removes
    /// what it wrote, so it can simply be run again. Writes go through the context's
    /// checkpoint storage, with its compression and fsync settings.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ctx = flintlock::Context::new();
    /// let out = dir.path().join("pairs");
    /// ctx.parallelize(vec![(1u32, "one".to_string()), (2, "two".to_string())], 2)
    ///     .save_as_object_file(&out)?;
    /// let back = ctx.object_file::<(u32, String)>(&out)?;
    /// assert_eq!(back.collect()?, vec![(1, "one".to_string()), (2, "two".to_string())]);
    /// // The wrong type is refused, naming both.
    /// assert!(matches!(ctx.object_file::<u64>(&out), Err(flintlock::Error::TypeMismatch { .. })));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] (`create folder`, `AlreadyExists`) when `path` exists, as Spark refuses
    /// to overwrite an output; any error of the job or of the write.
    #[track_caller]
    pub fn save_as_object_file(&self, path: impl AsRef<Path>) -> Result<()> {
        self.node.ctx.inner.single_process("save_as_object_file")?;
        let path = absolute(path.as_ref())?;
        let config = &self.node.ctx.inner.config;
        let storage = config.storage.as_ref();
        let parents = create_parents(storage, "save_as_object_file", &path)?;
        let parent = path.parent().expect("create_parents checked it");
        let app = Arc::new(AppDir::output_parent(parent, config));
        let session = match WriteSession::begin_at(&self.node, app, codec_for::<T>(), &path) {
            Ok(s) => s,
            Err(e) => {
                parents.remove(storage);
                return Err(e);
            }
        };
        let all: Vec<usize> = (0..self.num_partitions()).collect();
        let result = crate::scheduler::run_job(&self.node, &all, |tc, p, it| {
            drain_count(crate::checkpoint::tee_part(session.clone(), p, tc, it));
            Ok(())
        })
        .and_then(|_| session.commit().map(drop));
        if result.is_err() {
            session.abort();
            parents.remove(storage);
        }
        result
    }
}

impl Context {
    /// Reads a folder written by [`Rdd::save_as_object_file`] (Spark's `objectFile`): one
    /// partition per part file, every frame checksummed, the element type checked against
    /// the one recorded. Any committed checkpoint folder reads the same way.
    ///
    /// Unlike [`Context::open_checkpoint`], a folder written by an RDD placed by a custom
    /// partitioner this context has not registered still opens: the partitioner is dropped
    /// (an [`Event::PartitionerDropped`](crate::Event::PartitionerDropped) says so), so the
    /// data reads the same and a by-key operation on it shuffles.
    ///
    /// # Errors
    /// Those of [`Context::open_checkpoint`] except `UnknownPartitioner`:
    /// [`Error::NotCommitted`] for a save that never finished, [`Error::TypeMismatch`] for
    /// another element type, [`Error::CorruptCheckpoint`] for a damaged manifest or missing
    /// parts.
    #[track_caller]
    pub fn object_file<T>(&self, path: impl AsRef<Path>) -> Result<Rdd<T>>
    where
        T: Data + Serialize + DeserializeOwned,
    {
        let path = absolute(path.as_ref())?;
        crate::checkpoint::open_checkpoint(
            self,
            &path,
            codec_for::<T>(),
            site("object_file"),
            false,
        )
    }
}
