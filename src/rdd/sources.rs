//! The sources of RDDs: the `Context` methods that make an RDD from a collection, a range,
//! a text file or a committed checkpoint (Spark's `SparkContext.parallelize`, `range`,
//! `textFile`, and `ReliableCheckpointRDD` reopened).

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::SerdeCodec;
use crate::context::Context;
use crate::error::Result;
use crate::Data;

use super::{check_partitions, parallel_collection, range, site, text_file, Rdd};

impl Context {
    /// Distributes a collection over `num_partitions` partitions (Spark's `parallelize`).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec!['a', 'b', 'c'], 2);
    /// assert_eq!(rdd.num_partitions(), 2);
    /// assert_eq!(rdd.glom().collect()?, vec![vec!['a'], vec!['b', 'c']]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `num_partitions` is zero (use [`Context::empty`] for an RDD without partitions).
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn parallelize<T: Data>(&self, data: Vec<T>, num_partitions: usize) -> Rdd<T> {
        check_partitions("parallelize", num_partitions);
        Rdd::make(
            self,
            site("parallelize"),
            parallel_collection::ParallelCollectionRdd::new(data, num_partitions),
        )
    }

    /// An RDD with no partitions and no elements (Spark's `emptyRDD`).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let empty = ctx.empty::<u8>();
    /// assert_eq!(empty.num_partitions(), 0);
    /// assert_eq!(empty.count()?, 0);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn empty<T: Data>(&self) -> Rdd<T> {
        Rdd::make(
            self,
            site("empty"),
            parallel_collection::ParallelCollectionRdd::new(Vec::new(), 0),
        )
    }

    /// The integers of `range`, generated lazily over `num_partitions` partitions.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(0..10, 3).reduce(|a, b| a + b)?, Some(45));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `num_partitions` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn range(&self, range: Range<u64>, num_partitions: usize) -> Rdd<u64> {
        check_partitions("range", num_partitions);
        Rdd::make(
            self,
            site("range"),
            range::RangeRdd::new(range, num_partitions),
        )
    }

    /// The lines of a text file, split into `min_partitions` byte ranges on line boundaries
    /// (every line is read exactly once). Line endings (`\n`, `\r\n`) are removed.
    ///
    /// The file is sized now and read when an action runs; a missing or unreadable file, or
    /// a line that is not UTF-8, makes that action return an error naming the path.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("words.txt");
    /// std::fs::write(&path, "to be\nor not\nto be\n").unwrap();
    /// # let ctx = flintlock::Context::new();
    /// let lines = ctx.text_file(&path, 2);
    /// assert_eq!(lines.collect()?, vec!["to be", "or not", "to be"]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `min_partitions` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn text_file(&self, path: impl AsRef<Path>, min_partitions: usize) -> Rdd<String> {
        check_partitions("text_file", min_partitions);
        let rdd = text_file::TextFileRdd::new(path.as_ref().to_path_buf(), min_partitions);
        Rdd::make(self, site("text_file"), rdd)
    }

    /// Opens a committed checkpoint folder (`<dir>/<app-id>/rdd-<id>-<write id>`, e.g. from
    /// `Rdd::checkpoint_path` of an earlier run or another process) as an RDD, with its
    /// partitioner.
    ///
    /// The element type is checked by its structural layout when the checkpoint records one
    /// (format 2) and `T` can be traced, by its type name otherwise. A recorded hash
    /// partitioner is trusted by by-key operations only after this build places every key of
    /// the checkpoint's keys where they are (see [`Rdd::partitioner`]). While the returned RDD
    /// (or any RDD derived from it) lives, no `clean_checkpoints` of this process deletes the
    /// folder.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let path = {
    ///     let writer = flintlock::Context::builder().checkpoint_dir(dir.path()).build()?;
    ///     let squares = writer.range(0..5, 2).map(|x| x * x);
    ///     squares.checkpoint()?;
    ///     squares.count()?; // writes and commits the checkpoint
    ///     squares.checkpoint_path().expect("committed")
    /// };
    /// // Another context (or process, or a later build) reads the files back.
    /// let reader = flintlock::Context::new();
    /// let back = reader.open_checkpoint::<u64>(&path)?;
    /// assert_eq!(back.collect()?, vec![0, 1, 4, 9, 16]);
    /// assert_eq!(back.lineage_depth(), 0); // no parents: the lineage starts here
    /// // The wrong element type is refused, with the types named.
    /// assert!(matches!(
    ///     reader.open_checkpoint::<String>(&path),
    ///     Err(flintlock::Error::TypeMismatch { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotCommitted`](crate::Error::NotCommitted) for a folder without a manifest; [`Error::TypeMismatch`](crate::Error::TypeMismatch) when
    /// the checkpoint holds another element type than `T`; [`Error::UnsupportedVersion`](crate::Error::UnsupportedVersion) for
    /// a newer format; [`Error::CorruptCheckpoint`](crate::Error::CorruptCheckpoint) for a damaged manifest or missing, extra
    /// or wrongly sized part files. Damage inside a part file is found when it is read, and
    /// fails that action.
    #[track_caller]
    pub fn open_checkpoint<T>(&self, path: impl AsRef<Path>) -> Result<Rdd<T>>
    where
        T: Data + Serialize + DeserializeOwned,
    {
        crate::checkpoint::open_checkpoint(
            self,
            path.as_ref(),
            SerdeCodec::<T>::new(),
            site("open_checkpoint"),
        )
    }
}

// ----------------------------------------------------------------------------------------
// Construction and metadata
// ----------------------------------------------------------------------------------------
