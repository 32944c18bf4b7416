//! More actions: `top`, `take_ordered`, `is_empty`, `tree_aggregate`, `tree_reduce` and
//! `count_approx_distinct` (HyperLogLog++).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::scheduler::wire::{LocalOnly, Many, One};
use crate::Data;

use super::sampling::mix;
use super::Rdd;

/// One candidate of a bounded selection: ordered by `cmp`, then by its place in the RDD, so
/// that among equal elements the earlier one wins and ties keep the RDD's order.
struct Candidate<'a, T> {
    x: T,
    seq: (usize, u64),
    cmp: &'a (dyn Fn(&T, &T) -> Ordering + Sync),
}

impl<T> Candidate<'_, T> {
    fn order(&self, other: &Self) -> Ordering {
        (self.cmp)(&self.x, &other.x).then(self.seq.cmp(&other.seq))
    }
}

impl<T> PartialEq for Candidate<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.order(other) == Ordering::Equal
    }
}
impl<T> Eq for Candidate<'_, T> {}
impl<T> PartialOrd for Candidate<'_, T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Candidate<'_, T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order(other)
    }
}

/// A `BuildHasher` for HyperLogLog: the fixed-seed partitioning hash, finished with the
/// splitmix64 mixer so that every output bit depends on every input bit (HyperLogLog reads
/// the high bits as a register index and the rest as a run of zeros). The same element
/// hashes the same in every process and run.
#[derive(Clone, Copy, Default)]
struct MixedHash;

struct MixedHasher(rustc_hash::FxHasher);

impl Hasher for MixedHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
    fn finish(&self) -> u64 {
        mix(self.0.finish())
    }
}

impl BuildHasher for MixedHash {
    type Hasher = MixedHasher;
    fn build_hasher(&self) -> MixedHasher {
        MixedHasher(rustc_hash::FxHasher::default())
    }
}

impl<T: Data> Rdd<T> {
    /// The `n` smallest elements by `cmp`, ascending; among equal elements the earlier ones
    /// in the RDD's order (partition, then position) are taken and listed first.
    fn smallest_by(
        &self,
        n: usize,
        cmp: impl Fn(&T, &T) -> Ordering + Send + Sync,
    ) -> Result<Vec<T>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let cmp: &(dyn Fn(&T, &T) -> Ordering + Sync) = &cmp;
        let parts = self.run_all(|p, it| {
            // A max-heap of the n smallest so far: its top is the first to go.
            let mut heap: BinaryHeap<Candidate<'_, T>> = BinaryHeap::with_capacity(n + 1);
            for (i, x) in it.enumerate() {
                let c = Candidate {
                    x,
                    seq: (p, i as u64),
                    cmp,
                };
                if heap.len() < n {
                    heap.push(c);
                } else if heap.peek().is_some_and(|top| c < *top) {
                    heap.pop();
                    heap.push(c);
                }
            }
            let (xs, seqs): (Vec<T>, Vec<(usize, u64)>) =
                heap.into_iter().map(|c| (c.x, c.seq)).unzip();
            Ok((Many(xs), seqs))
        })?;
        let mut all: Vec<(T, (usize, u64))> = parts
            .into_iter()
            .flat_map(|(Many(xs), seqs)| xs.into_iter().zip(seqs))
            .collect();
        self.merge_on_driver(|| {
            all.sort_by(|a, b| cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
            all.truncate(n);
            all.into_iter().map(|(x, _)| x).collect()
        })
    }

    /// The `n` smallest elements, ascending (Spark's `takeOrdered`). Of equal elements, the
    /// ones earlier in the RDD (by partition, then position) are taken, and listed in that
    /// order.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec![10, 4, 2, 12, 3], 2);
    /// assert_eq!(rdd.take_ordered(3)?, vec![2, 3, 4]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job; [`Error::JobPanicked`] when the comparison panics while the
    /// partitions' candidates are merged on the calling thread.
    pub fn take_ordered(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        self.smallest_by(n, T::cmp)
    }

    /// The `n` elements with the smallest keys, ascending by key; ties as in
    /// [`Rdd::take_ordered`].
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let words = ctx.parallelize(vec!["ccc", "a", "bb", "d"], 2);
    /// assert_eq!(words.take_ordered_by_key(3, |w| w.len())?, vec!["a", "d", "bb"]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::take_ordered`].
    pub fn take_ordered_by_key<K: Ord>(
        &self,
        n: usize,
        f: impl Fn(&T) -> K + Send + Sync,
    ) -> Result<Vec<T>> {
        self.smallest_by(n, |a, b| f(a).cmp(&f(b)))
    }

    /// The `n` largest elements, descending (Spark's `top`). Of equal elements, the ones
    /// earlier in the RDD are taken, and listed in that order.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec![10, 4, 2, 12, 3], 2);
    /// assert_eq!(rdd.top(2)?, vec![12, 10]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::take_ordered`].
    pub fn top(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        self.smallest_by(n, |a, b| b.cmp(a))
    }

    /// Whether the RDD has no element (Spark's `isEmpty`): runs partitions in growing rounds,
    /// like `take(1)`, and stops at the first element.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert!(ctx.range(0..10, 4).filter(|x| *x > 100).is_empty()?);
    /// assert!(!ctx.range(0..10, 4).is_empty()?);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the jobs.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.num_partitions() == 0 || self.take(1)?.is_empty())
    }

    /// [`Rdd::aggregate`] whose partial results are combined in a tree of `depth` levels
    /// (Spark's `treeAggregate`): the same result for an associative `comb`, with the
    /// partials of each level combined in parallel on the context's pool instead of one by
    /// one on the calling thread, which helps when partials are large.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let sum = ctx.range(0..1000, 16).tree_aggregate(0u64, |a, x| a + x, |a, b| a + b, 2)?;
    /// assert_eq!(sum, 499_500);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a depth of 0; any error of the job; a panic of `comb`
    /// while combining is returned as [`Error::JobPanicked`].
    pub fn tree_aggregate<A: Data>(
        &self,
        zero: A,
        seq: impl Fn(A, T) -> A + Send + Sync,
        comb: impl Fn(A, A) -> A + Send + Sync,
        depth: usize,
    ) -> Result<A> {
        if depth == 0 {
            return Err(Error::InvalidArgument(
                "tree_aggregate: depth must be at least 1".to_string(),
            ));
        }
        let z = zero.clone();
        let partials = self.run_all(|_, it| Ok(One(it.fold(z.clone(), &seq))))?;
        let partials: Vec<A> = partials.into_iter().map(|x| x.0).collect();
        let combined = self.tree_combine(partials, &comb, depth)?;
        Ok(combined.unwrap_or(zero))
    }

    /// [`Rdd::reduce`] whose partial results are combined in a tree of `depth` levels
    /// (Spark's `treeReduce`); `None` for an empty RDD.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(1..101, 8).tree_reduce(|a, b| a.max(b), 3)?, Some(100));
    /// assert_eq!(ctx.empty::<u64>().tree_reduce(|a, b| a + b, 2)?, None);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Rdd::tree_aggregate`].
    pub fn tree_reduce(
        &self,
        f: impl Fn(T, T) -> T + Send + Sync,
        depth: usize,
    ) -> Result<Option<T>> {
        if depth == 0 {
            return Err(Error::InvalidArgument(
                "tree_reduce: depth must be at least 1".to_string(),
            ));
        }
        let partials = self.run_all(|_, it| Ok(it.reduce(&f).map(One)))?;
        let partials: Vec<T> = partials.into_iter().flatten().map(|x| x.0).collect();
        self.tree_combine(partials, &f, depth)
    }

    /// Combines `partials` level by level: each level merges groups of `scale` neighbours
    /// (in order, in parallel), `scale` chosen so that `depth` levels reach one value.
    fn tree_combine<A: Data>(
        &self,
        mut partials: Vec<A>,
        comb: &(impl Fn(A, A) -> A + Send + Sync),
        depth: usize,
    ) -> Result<Option<A>> {
        let n = partials.len().max(1) as f64;
        let scale = (n.powf(1.0 / depth as f64).ceil() as usize).max(2);
        self.merge_on_driver(|| {
            self.context().install(|| {
                while partials.len() > 1 {
                    let groups: Vec<Vec<A>> = {
                        let mut groups = Vec::new();
                        let mut it = partials.into_iter().peekable();
                        while it.peek().is_some() {
                            groups.push(it.by_ref().take(scale).collect());
                        }
                        groups
                    };
                    partials = groups
                        .into_par_iter()
                        .map(|g| g.into_iter().reduce(comb).expect("groups are not empty"))
                        .collect();
                }
                partials.pop()
            })
        })
    }

    /// An estimate of the number of distinct elements (Spark's `countApproxDistinct`), by
    /// HyperLogLog++ with a relative standard deviation of about `relative_sd`: the same
    /// precision rule as Spark (`p = ceil(2 log2(1.054 / relative_sd))`, so 0.05 gives
    /// p = 11, 2,048 registers per partition). Elements are hashed with a fixed seed, so the
    /// estimate is the same in every run.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let n = ctx.range(0..100_000, 4).map(|x| x % 20_000).count_approx_distinct(0.01)?;
    /// assert!((19_000..21_000).contains(&n), "{n}");
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `relative_sd` is not in `[0.0021, 0.37]` (precision 4
    /// to 18); any error of the job.
    pub fn count_approx_distinct(&self, relative_sd: f64) -> Result<u64>
    where
        T: Hash,
    {
        self.node
            .ctx
            .inner
            .single_process("count_approx_distinct")?;
        if !(0.0021..=0.37).contains(&relative_sd) {
            return Err(Error::InvalidArgument(format!(
                "count_approx_distinct: relative_sd must be in [0.0021, 0.37], got {relative_sd}"
            )));
        }
        let p = (2.0 * (1.054 / relative_sd).log2()).ceil().clamp(4.0, 18.0) as u8;
        let new = move || {
            HyperLogLogPlus::<T, MixedHash>::new(p, MixedHash)
                .map_err(|e| Error::InvalidArgument(format!("count_approx_distinct: {e:?}")))
        };
        let parts = self.run_all(|_, it| {
            let mut h = new()?;
            for x in it {
                h.insert(&x);
            }
            Ok(LocalOnly(h))
        })?;
        let mut total = new()?;
        for LocalOnly(part) in &parts {
            total
                .merge(part)
                .map_err(|e| Error::InvalidArgument(format!("count_approx_distinct: {e:?}")))?;
        }
        Ok(total.count().round() as u64)
    }
}
