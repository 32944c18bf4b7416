//! Actions: the `Rdd` methods that run a job and return a result (Spark's `collect`,
//! `count`, `reduce`, `take`, `foreach`, `saveAsTextFile`, ...). Each is one call to the
//! scheduler with a per-partition function; `take` runs partitions in growing rounds.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::scheduler;
use crate::scheduler::wire::{Many, One, Wire};
use crate::{Data, Key};

use super::iter::{drain_count, drain_fold, drain_to_vec};
use super::{BoxedPartitionIter, Rdd};

impl<T: Data> Rdd<T> {
    /// Runs a job over `partitions`, applying `f` to each partition's iterator.
    pub(crate) fn run<R: Wire>(
        &self,
        partitions: &[usize],
        f: impl Fn(usize, BoxedPartitionIter<T>) -> Result<R> + Send + Sync,
    ) -> Result<Vec<R>> {
        scheduler::run_job(&self.node, partitions, |_, p, it| f(p, it))
    }

    pub(crate) fn run_all<R: Wire>(
        &self,
        f: impl Fn(usize, BoxedPartitionIter<T>) -> Result<R> + Send + Sync,
    ) -> Result<Vec<R>> {
        let all: Vec<usize> = (0..self.num_partitions()).collect();
        self.run(&all, f)
    }

    /// Runs the driver's part of an action, the merge of the partitions' results, which
    /// calls the user's code (a combining function, an `Ord`, `Hash` or `Eq` impl): a panic
    /// there is [`Error::JobPanicked`], as a panic in a task is an error, instead of
    /// unwinding into the caller. The job itself has ended (and succeeded) by then.
    pub(crate) fn merge_on_driver<R>(&self, merge: impl FnOnce() -> R) -> Result<R> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(merge)).map_err(|payload| {
            Error::JobPanicked {
                rdd_id: self.id(),
                message: format!(
                    "merging the partitions' results on the driver: {}",
                    scheduler::panic_message(payload.as_ref())
                ),
            }
        })
    }

    /// The element counts of the partitions in `range`.
    pub(crate) fn partition_sizes(&self, range: Range<usize>) -> Result<Vec<u64>> {
        let parts: Vec<usize> = range.collect();
        self.run(&parts, |_, it| Ok(drain_count(it)))
    }

    /// The number of elements.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(0..10, 3).filter(|x| x % 2 == 0).count()?, 5);
    /// assert_eq!(ctx.empty::<u8>().count()?, 0);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job: a failed task ([`Error::TaskFailed`]), an unreadable input, a
    /// failed checkpoint write.
    pub fn count(&self) -> Result<u64> {
        Ok(self.run_all(|_, it| Ok(drain_count(it)))?.into_iter().sum())
    }

    /// All elements, in partition order.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec![3, 1, 2], 2).map(|x| x * 10);
    /// assert_eq!(rdd.collect()?, vec![30, 10, 20]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job.
    pub fn collect(&self) -> Result<Vec<T>> {
        let parts = self.run_all(|_, it| Ok(Many(drain_to_vec(it))))?;
        let total = parts.iter().map(|p| p.0.len()).sum();
        let mut out = Vec::with_capacity(total);
        for p in parts {
            out.extend(p.0);
        }
        Ok(out)
    }

    /// Combines the elements with an associative function; `None` for an empty RDD.
    ///
    /// # Errors
    /// Any error of the job; [`Error::JobPanicked`] when `f` panics while the partitions'
    /// results are merged on the calling thread.
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync) -> Result<Option<T>> {
        let parts = self.run_all(|_, it| {
            let folded = drain_fold(it, None, |acc: Option<T>, x| {
                Some(match acc {
                    Some(a) => f(a, x),
                    None => x,
                })
            });
            Ok(folded.map(One))
        })?;
        self.merge_on_driver(|| parts.into_iter().flatten().map(|x| x.0).reduce(&f))
    }

    /// Folds each partition starting from `zero`, then folds the partition results, again
    /// from `zero` (as Spark does: `zero` must be neutral for `f`).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(1..5, 2).fold(0, |a, b| a + b)?, 10);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (for `f` or `comb`).
    pub fn fold(&self, zero: T, f: impl Fn(T, T) -> T + Send + Sync) -> Result<T> {
        let parts = self.run_all(|_, it| Ok(One(drain_fold(it, zero.clone(), &f))))?;
        self.merge_on_driver(|| parts.into_iter().map(|x| x.0).fold(zero, &f))
    }

    /// Aggregates with `seq` inside partitions and `comb` across them, both from `zero`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// // (sum, count)
    /// let (s, n) = ctx.range(1..5, 2).aggregate((0, 0), |(s, n), x| (s + x, n + 1), |a, b| (a.0 + b.0, a.1 + b.1))?;
    /// assert_eq!((s, n), (10, 4));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (for `f` or `comb`).
    pub fn aggregate<A: Data>(
        &self,
        zero: A,
        seq: impl Fn(A, T) -> A + Send + Sync,
        comb: impl Fn(A, A) -> A + Send + Sync,
    ) -> Result<A> {
        let parts = self.run_all(|_, it| Ok(One(drain_fold(it, zero.clone(), &seq))))?;
        self.merge_on_driver(|| parts.into_iter().map(|x| x.0).fold(zero, comb))
    }

    /// The first `n` elements, in partition order. Scans one partition first, then more as
    /// needed (as Spark does), so it computes only what it must.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(0..100, 10).take(3)?, vec![0, 1, 2]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the jobs it runs.
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let total = self.num_partitions();
        let mut out: Vec<T> = Vec::new();
        let mut scanned = 0;
        while out.len() < n && scanned < total {
            let to_try = if scanned == 0 {
                1
            } else if out.is_empty() {
                scanned * 4
            } else {
                let est = (1.5 * n as f64 * scanned as f64 / out.len() as f64).ceil() as usize;
                est.saturating_sub(scanned).clamp(1, scanned * 4)
            };
            let end = (scanned + to_try).min(total);
            let parts: Vec<usize> = (scanned..end).collect();
            let left = n - out.len();
            let results = self.run(&parts, |_, it| Ok(Many(it.take(left).collect::<Vec<T>>())))?;
            for Many(r) in results {
                let room = n - out.len();
                out.extend(r.into_iter().take(room));
            }
            scanned = end;
        }
        Ok(out)
    }

    /// The first element, or `None` for an empty RDD.
    ///
    /// # Errors
    /// Any error of the jobs it runs.
    pub fn first(&self) -> Result<Option<T>> {
        Ok(self.take(1)?.into_iter().next())
    }

    /// Runs `f` on every element, on the pool's threads.
    ///
    /// # Errors
    /// Any error of the job.
    pub fn foreach(&self, f: impl Fn(T) + Send + Sync) -> Result<()> {
        self.run_all(|_, it| {
            it.drain_into(&mut |x| f(x));
            Ok(())
        })?;
        Ok(())
    }

    /// Runs `f` on every partition's iterator, on the pool's threads.
    ///
    /// # Errors
    /// Any error of the job.
    pub fn foreach_partition(&self, f: impl Fn(BoxedPartitionIter<T>) + Send + Sync) -> Result<()> {
        self.run_all(|_, it| {
            f(it);
            Ok(())
        })?;
        Ok(())
    }

    /// Writes the elements as text lines to a new folder: `part-00000`, ... (one per
    /// partition) and an empty `_SUCCESS` marker last, as Hadoop's output committer does.
    ///
    /// Each part is written under a hidden temporary name and renamed when its partition is
    /// complete. If the save fails, the files it wrote and the folder are removed, so the same
    /// save can simply be run again; a folder without `_SUCCESS` is the leftover of a save
    /// that was killed. [`Context::text_file`](crate::Context::text_file) on the folder
    /// reads the parts back (hidden files and `_SUCCESS` are skipped).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let ctx = flintlock::Context::new();
    /// let out = dir.path().join("out");
    /// ctx.parallelize(vec![1, 2, 3], 2).save_as_text_file(&out)?;
    /// assert_eq!(std::fs::read_to_string(out.join("part-00001")).unwrap(), "2\n3\n");
    /// assert!(out.join("_SUCCESS").exists());
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the folder exists (saying when it is an incomplete
    /// save's leftover); I/O errors naming the file; any error of the job.
    pub fn save_as_text_file(&self, path: impl AsRef<Path>) -> Result<()>
    where
        T: fmt::Display,
    {
        self.node.ctx.inner.single_process("save_as_text_file")?;
        let dir = path.as_ref().to_path_buf();
        let exists = |dir: &Path| {
            Error::InvalidArgument(format!(
                "save_as_text_file: {} already exists{}",
                dir.display(),
                if dir.join("_SUCCESS").exists() {
                    ""
                } else {
                    " and has no _SUCCESS: the leftover of a save that did not finish; remove \
                     it to save again"
                }
            ))
        };
        if dir.exists() {
            return Err(exists(&dir));
        }
        let local = crate::checkpoint::LocalFs;
        let parents = crate::checkpoint::create_parents(&local, "save_as_text_file", &dir)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) => {
                parents.remove(&local);
                return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                    exists(&dir)
                } else {
                    Error::io("create folder", &dir, e)
                });
            }
        }
        let nonce = super::sampling::mix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32),
        );
        let written: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());
        let saved = self.run_all(|p, it| {
            let name = crate::checkpoint::format::part_name(p);
            let tmp: PathBuf = dir.join(format!(".{name}.{nonce:016x}.tmp"));
            let part: PathBuf = dir.join(&name);
            // Removes the temporary file however the task ends (a panic in the data or in
            // `Display` unwinds through here), unless it was renamed into place.
            struct Temporary<'a>(&'a Path, bool);
            impl Drop for Temporary<'_> {
                fn drop(&mut self) {
                    if !self.1 {
                        let _ = std::fs::remove_file(self.0);
                    }
                }
            }
            let mut guard = Temporary(&tmp, false);
            let write = || -> Result<()> {
                let f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
                let mut w = std::io::BufWriter::new(f);
                for x in it {
                    writeln!(w, "{x}").map_err(|e| Error::io("write", &tmp, e))?;
                }
                w.flush().map_err(|e| Error::io("write", &tmp, e))?;
                drop(w);
                std::fs::rename(&tmp, &part).map_err(|e| Error::io("rename", &tmp, e))
            };
            let result = write();
            if result.is_ok() {
                guard.1 = true;
                written.lock().push(part);
            }
            result
        });
        if let Err(e) = saved {
            // Only what this save wrote goes, then the folder it made, if that leaves it
            // empty (a half-written part of a failed task was removed by the task).
            for f in written.into_inner() {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_dir(&dir);
            parents.remove(&local);
            return Err(e);
        }
        let success = dir.join("_SUCCESS");
        std::fs::File::create(&success).map_err(|e| Error::io("create", &success, e))?;
        Ok(())
    }

    /// How often each distinct element occurs.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let counts = ctx.parallelize(vec!['a', 'b', 'a'], 2).count_by_value()?;
    /// assert_eq!(counts[&'a'], 2);
    /// assert_eq!(counts[&'b'], 1);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job; [`Error::JobPanicked`] when `T`'s `Hash` or `Eq` panics while
    /// the partitions' counts are merged on the calling thread.
    pub fn count_by_value(&self) -> Result<HashMap<T, u64>>
    where
        T: Key,
    {
        let parts = self.run_all(|_, it| {
            let mut m: FxHashMap<T, u64> = FxHashMap::default();
            for x in it {
                *m.entry(x).or_insert(0) += 1;
            }
            let (keys, counts): (Vec<T>, Vec<u64>) = m.into_iter().unzip();
            Ok((Many(keys), counts))
        })?;
        self.merge_on_driver(|| {
            let mut out: HashMap<T, u64> = HashMap::new();
            for (Many(keys), counts) in parts {
                for (k, c) in keys.into_iter().zip(counts) {
                    *out.entry(k).or_insert(0) += c;
                }
            }
            out
        })
    }

    /// The largest element (`None` when empty).
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (`T`'s `Ord` is the function).
    pub fn max(&self) -> Result<Option<T>>
    where
        T: Ord,
    {
        self.reduce(|a, b| if b > a { b } else { a })
    }

    /// The smallest element (`None` when empty).
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (`T`'s `Ord` is the function).
    pub fn min(&self) -> Result<Option<T>>
    where
        T: Ord,
    {
        self.reduce(|a, b| if b < a { b } else { a })
    }

    /// The element with the largest key (the first of equals), `None` when empty.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let longest = ctx.parallelize(vec!["bb", "a", "ccc"], 2).max_by_key(|s| s.len())?;
    /// assert_eq!(longest, Some("ccc"));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (`f` and `K`'s `Ord` are the function).
    pub fn max_by_key<K: Ord>(&self, f: impl Fn(&T) -> K + Send + Sync) -> Result<Option<T>> {
        self.reduce(|a, b| if f(&b) > f(&a) { b } else { a })
    }

    /// The element with the smallest key (the first of equals), `None` when empty.
    ///
    /// # Errors
    /// As [`Rdd::reduce`] (`f` and `K`'s `Ord` are the function).
    pub fn min_by_key<K: Ord>(&self, f: impl Fn(&T) -> K + Send + Sync) -> Result<Option<T>> {
        self.reduce(|a, b| if f(&b) < f(&a) { b } else { a })
    }
}
