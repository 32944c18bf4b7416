//! The sources of RDDs: the `Context` methods that make an RDD from a collection, a range,
//! a text file or a committed checkpoint (Spark's `SparkContext.parallelize`, `range`,
//! `textFile`, and `ReliableCheckpointRDD` reopened).

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::codec_for;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::Data;

use super::failed::FailedRdd;
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
    /// // A reversed range is an error (at the first action), not silently empty.
    /// assert!(ctx.range(10..0, 2).count().is_err());
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `num_partitions` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn range(&self, range: Range<u64>, num_partitions: usize) -> Rdd<u64> {
        check_partitions("range", num_partitions);
        if range.start > range.end {
            let e = Error::InvalidArgument(format!(
                "range: {}..{} is reversed (start after end); count down with range_step and \
                 a negative step",
                range.start, range.end
            ));
            return Rdd::make(self, site("range"), FailedRdd::new(e, num_partitions));
        }
        Rdd::make(
            self,
            site("range"),
            range::RangeRdd::new(range, num_partitions),
        )
    }

    /// `start`, `start + step`, ... up to `end` (excluded), over `num_partitions` partitions
    /// (Spark's `range(start, end, step, numSlices)`); a negative step counts down.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range_step(0, 10, 3, 2)?.collect()?, vec![0, 3, 6, 9]);
    /// assert_eq!(ctx.range_step(5, -1, -2, 2)?.collect()?, vec![5, 3, 1]);
    /// assert!(ctx.range_step(10, 0, 1, 2).is_err()); // reversed: an error, not empty
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero step, a range that runs against its step
    /// (`start > end` with a positive step, `start < end` with a negative one), or zero
    /// partitions.
    #[track_caller]
    pub fn range_step(
        &self,
        start: i64,
        end: i64,
        step: i64,
        num_partitions: usize,
    ) -> Result<Rdd<i64>> {
        if num_partitions == 0 {
            return Err(Error::InvalidArgument(
                "range_step: the number of partitions must be at least 1".to_string(),
            ));
        }
        if step == 0 {
            return Err(Error::InvalidArgument(
                "range_step: the step must not be 0".to_string(),
            ));
        }
        if (step > 0 && start > end) || (step < 0 && start < end) {
            return Err(Error::InvalidArgument(format!(
                "range_step: from {start} to {end} runs against the step {step}; use a step of \
                 the other sign"
            )));
        }
        Ok(Rdd::make(
            self,
            site("range_step"),
            range::StepRangeRdd::new(start, end, step, num_partitions),
        ))
    }

    /// The union of many RDDs (Spark's `SparkContext.union`): their partitions in order, or,
    /// when they all have the same partitioner, one partition per partitioner slot with the
    /// partitioner kept (see [`Rdd::union`]). An empty slice gives an empty RDD.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let parts: Vec<_> = (0..3u64).map(|i| ctx.range(i * 10..i * 10 + 2, 1)).collect();
    /// assert_eq!(ctx.union(&parts).collect()?, vec![0, 1, 10, 11, 20, 21]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn union<T: Data>(&self, rdds: &[Rdd<T>]) -> Rdd<T> {
        if rdds.is_empty() {
            return self.empty();
        }
        Rdd::union_all(self, rdds.to_vec(), site("union"))
    }

    /// The lines of a text file, of every visible file of a folder, or of every file a glob
    /// matches (Spark's `textFile`), split into about `min_partitions` byte ranges on line
    /// boundaries (every line is read exactly once, at least one range per file). Line
    /// endings (`\n`, `\r\n`) are removed.
    ///
    /// A folder's files are read in name order, without subfolders and without the hidden
    /// files whose names start with `_` or `.` (so the output of
    /// [`Rdd::save_as_text_file`], with its `_SUCCESS` marker, reads back). The files are
    /// listed and sized now; each file's last range is read to the file's end when an action
    /// runs, so lines appended in between are read, but files added later are not. A missing
    /// or unreadable input, a glob that matches nothing, or a line that is not UTF-8, makes
    /// the action return an error naming the path.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("words.txt");
    /// std::fs::write(&path, "to be\nor not\nto be\n").unwrap();
    /// # let ctx = flintlock::Context::new();
    /// let lines = ctx.text_file(&path, 2);
    /// assert_eq!(lines.collect()?, vec!["to be", "or not", "to be"]);
    ///
    /// let out = dir.path().join("saved");
    /// ctx.range(0..5, 2).save_as_text_file(&out)?;
    /// assert_eq!(ctx.text_file(&out, 1).count()?, 5);
    /// assert_eq!(ctx.text_file(out.join("part-*"), 1).count()?, 5);
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

    /// One `(path, contents)` pair per file of a folder or glob, or for one file (Spark's
    /// `wholeTextFiles`), the files dealt in name order over at most `min_partitions`
    /// partitions. The same files as [`Context::text_file`] reads; each is read whole when
    /// an action runs, and must be UTF-8.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("a.txt"), "alpha").unwrap();
    /// std::fs::write(dir.path().join("b.txt"), "beta\n").unwrap();
    /// # let ctx = flintlock::Context::new();
    /// let files = ctx.whole_text_files(dir.path(), 2).collect()?;
    /// assert_eq!(files.len(), 2);
    /// assert!(files[0].0.ends_with("a.txt") && files[0].1 == "alpha");
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `min_partitions` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn whole_text_files(
        &self,
        path: impl AsRef<Path>,
        min_partitions: usize,
    ) -> Rdd<(String, String)> {
        check_partitions("whole_text_files", min_partitions);
        let rdd = text_file::WholeTextFilesRdd::new(path.as_ref().to_path_buf(), min_partitions);
        Rdd::make(self, site("whole_text_files"), rdd)
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
    /// or wrongly sized part files; [`Error::UnknownPartitioner`](crate::Error::UnknownPartitioner)
    /// for a checkpoint placed by a custom partitioner this context has not registered.
    /// Damage inside a part file is found when it is read, and fails that action.
    #[track_caller]
    pub fn open_checkpoint<T>(&self, path: impl AsRef<Path>) -> Result<Rdd<T>>
    where
        T: Data + Serialize + DeserializeOwned,
    {
        crate::checkpoint::open_checkpoint(
            self,
            path.as_ref(),
            codec_for::<T>(),
            site("open_checkpoint"),
            true,
        )
    }
}

// ----------------------------------------------------------------------------------------
// Construction and metadata
// ----------------------------------------------------------------------------------------
