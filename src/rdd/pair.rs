//! Operations on RDDs of key-value pairs (Spark's `PairRDDFunctions`).
//!
//! Every by-key operation goes through the one place that decides whether a shuffle is
//! needed, `ShuffleDependency::unless_partitioned`: when the parent is already partitioned by
//! an equal (trusted) partitioner, the work is done in place, over a narrow dependency.
//!
//! Default partitioning (Spark's `defaultPartitioner`): the partitioner of a parent that has
//! one (the one with more partitions when both do), else hash partitioning over the larger
//! partition count.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::cogrouped::{CoGroupSide, CoGroupedRdd, CombineFn};
use super::failed::FailedRdd;
use super::iter::{boxed, FlatMapped, Mapped};
use super::node::{BoxedPartitionIter, CallSite};
use super::sampling;
use super::shuffled::ShuffledRdd;
use super::site;
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::shuffle::{
    combine_partially, combine_values, in_hash_order, merge_combiners as merge_all,
    ShuffleDependency, ShuffleReader, Side,
};
use crate::{Data, Key, Rdd};

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// The partitioner by-key operations may rely on: the RDD's partitioner, once trusted.
    ///
    /// A checkpoint reopened from disk is trusted only after this build has placed every one
    /// of its keys in the partition it was read from (the check runs here, once; see
    /// `PlacementGate`), and a range partitioner that cannot place `K` (one read back from a
    /// manifest keeps its bounds only as bytes) is not relied on. An untrusted partitioner
    /// means a shuffle, never a wrong join.
    pub(crate) fn trusted_partitioner(&self) -> Option<Partitioner> {
        let p = self.node.partitioner.clone()?;
        if !p.places::<K>() {
            return None;
        }
        if let Some(gate) = &self.node.placement {
            let key_fn = p.key_fn::<K>().ok()?;
            let trusted = gate.check(self.context(), |part, (k, _)| {
                let at = key_fn(k);
                if at == part {
                    return Ok(());
                }
                Err(format!(
                    "a key read from partition {part} is placed in partition {at} by this \
                     build (the key type's Hash impl, the hash function or the custom \
                     partitioner's code differs from the build that wrote the checkpoint)"
                ))
            });
            if !trusted {
                return None;
            }
        }
        Some(p)
    }

    pub(crate) fn default_partitioner(&self) -> Partitioner {
        self.trusted_partitioner()
            .unwrap_or_else(|| Partitioner::hash(self.num_partitions().max(1)))
    }

    pub(super) fn default_partitioner_with<W: Data>(&self, other: &Rdd<(K, W)>) -> Partitioner {
        match (self.trusted_partitioner(), other.trusted_partitioner()) {
            (Some(a), Some(b)) => {
                if b.num_partitions() > a.num_partitions() {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => {
                Partitioner::hash(self.num_partitions().max(other.num_partitions()).max(1))
            }
        }
    }

    /// By-key aggregation: a shuffle (with map-side combining when `map_side_combine`)
    /// unless the parent is already partitioned by `partitioner`, then in place. The choice
    /// is [`ShuffleDependency::unless_partitioned`]'s.
    pub(crate) fn combine_by_key_op<C: Data>(
        &self,
        site: CallSite,
        partitioner: Partitioner,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
        map_side_combine: bool,
    ) -> Rdd<(K, C)> {
        let create = Arc::new(create);
        let merge_value = Arc::new(merge_value);
        let sizes = &self.context().inner.combine_sizes;
        let merged_size = sizes.of(site, Side::Reduce);
        if map_side_combine {
            let (c, m) = (create.clone(), merge_value.clone());
            let size = sizes.of(site, Side::Map);
            let dep = ShuffleDependency::unless_partitioned(
                self,
                &partitioner,
                move |it, f, n, spill| {
                    combine_partially(it, c.as_ref(), m.as_ref(), f, n, spill, &size)
                },
            );
            if let Some(dep) = dep {
                let reduce = Arc::new(move |reader: ShuffleReader<K, C>| {
                    let floor = reader.largest_bucket();
                    let map = merge_all(reader, &merge_combiners, &merged_size, floor);
                    boxed(in_hash_order(map).into_iter()) as BoxedPartitionIter<(K, C)>
                });
                return Rdd::make(self.context(), site, ShuffledRdd::new(dep, reduce));
            }
        } else if let Some(dep) = ShuffleDependency::bucketing(self, &partitioner) {
            let (c, m) = (create.clone(), merge_value.clone());
            let reduce = Arc::new(move |reader: ShuffleReader<K, V>| {
                let map = combine_values(reader, c.as_ref(), m.as_ref(), &merged_size, 0);
                boxed(in_hash_order(map).into_iter()) as BoxedPartitionIter<(K, C)>
            });
            return Rdd::make(self.context(), site, ShuffledRdd::new(dep, reduce));
        }
        // Already partitioned by `partitioner`: every key's values are in one partition.
        self.map_partitions_op(
            site,
            true,
            Arc::new(move |_, it| {
                let map =
                    combine_values(it, create.as_ref(), merge_value.as_ref(), &merged_size, 0);
                boxed(in_hash_order(map).into_iter())
            }),
        )
    }

    /// `partition_by` with an explicit call site.
    pub(crate) fn partition_by_op(&self, site: CallSite, partitioner: Partitioner) -> Rdd<(K, V)> {
        let Some(dep) = ShuffleDependency::bucketing(self, &partitioner) else {
            return self.clone();
        };
        let reduce =
            Arc::new(|reader: ShuffleReader<K, V>| Box::new(reader) as BoxedPartitionIter<(K, V)>);
        Rdd::make(self.context(), site, ShuffledRdd::new(dep, reduce))
    }

    /// Transforms each partition as a whole into pairs with the same keys, keeping the
    /// partitioner (Spark's `mapPartitions(f, preservesPartitioning = true)`), so a later
    /// by-key operation or join with an equally partitioned RDD needs no shuffle.
    ///
    /// `f` must keep every key in the partition it came from; nothing checks it, and a key
    /// moved elsewhere would be missed by later by-key operations.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let p = ctx.parallelize(vec![(1, 2), (2, 3), (1, 4)], 2).reduce_by_key(|a, b| a + b);
    /// // Each partition's values, as shares of that partition's total.
    /// let shares = p.map_partitions_preserving_partitioning(|it| {
    ///     let pairs: Vec<(i32, i32)> = it.collect();
    ///     let total: i32 = pairs.iter().map(|p| p.1).sum();
    ///     pairs.into_iter().map(move |(k, v)| (k, v as f64 / total as f64))
    /// });
    /// assert_eq!(shares.partitioner(), p.partitioner());
    /// assert_eq!(shares.count()?, 2);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn map_partitions_preserving_partitioning<U: Data, I>(
        &self,
        f: impl Fn(BoxedPartitionIter<(K, V)>) -> I + Send + Sync + 'static,
    ) -> Rdd<(K, U)>
    where
        I: IntoIterator<Item = (K, U)>,
        I::IntoIter: 'static,
    {
        // Settles a reopened checkpoint's placement check, so the new RDD knows whether it
        // keeps a trusted partitioner (its element type differs, so it cannot share the check).
        self.trusted_partitioner();
        self.map_partitions_op(
            site("map_partitions_preserving_partitioning"),
            true,
            Arc::new(move |_, it| boxed(f(it).into_iter())),
        )
    }

    /// Applies `f` to every value, keeping keys and so the partitioner.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let p = ctx.parallelize(vec![(1, 2)], 1).partition_by(flintlock::Partitioner::hash(2));
    /// let doubled = p.map_values(|v| v * 2);
    /// assert_eq!(doubled.partitioner(), p.partitioner());
    /// assert_eq!(doubled.collect()?, vec![(1, 4)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn map_values<U: Data>(&self, f: impl Fn(V) -> U + Send + Sync + 'static) -> Rdd<(K, U)> {
        let f = Arc::new(f);
        self.trusted_partitioner(); // see map_partitions_preserving_partitioning
        self.map_partitions_op(
            site("map_values"),
            true,
            Arc::new(move |_, it| {
                let f = f.clone();
                Mapped::boxed(it, move |(k, v)| (k, f(v)))
            }),
        )
    }

    /// Maps every value to zero or more values, keeping keys and the partitioner.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let r = ctx.parallelize(vec![(1, 2)], 1).flat_map_values(|v| vec![v, v + 1]);
    /// assert_eq!(r.collect()?, vec![(1, 2), (1, 3)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn flat_map_values<U: Data, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> Rdd<(K, U)>
    where
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        let f = Arc::new(f);
        self.trusted_partitioner(); // see map_partitions_preserving_partitioning
        self.map_partitions_op(
            site("flat_map_values"),
            true,
            Arc::new(move |_, it| {
                let f = f.clone();
                FlatMapped::boxed(it, move |(k, v)| {
                    f(v).into_iter().map(move |u| (k.clone(), u))
                })
            }),
        )
    }

    /// The keys.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn keys(&self) -> Rdd<K> {
        self.map_partitions_op(
            site("keys"),
            false,
            Arc::new(|_, it| Mapped::boxed(it, |(k, _)| k)),
        )
    }

    /// The values.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn values(&self) -> Rdd<V> {
        self.map_partitions_op(
            site("values"),
            false,
            Arc::new(|_, it| Mapped::boxed(it, |(_, v)| v)),
        )
    }

    /// Merges the values of each key with an associative, commutative function, combining
    /// on the map side before the shuffle.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let mut sums = ctx.parallelize(vec![("a", 1), ("b", 2), ("a", 3)], 2)
    ///     .reduce_by_key(|x, y| x + y)
    ///     .collect()?;
    /// sums.sort();
    /// assert_eq!(sums, vec![("a", 4), ("b", 2)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> Rdd<(K, V)> {
        let p = self.default_partitioner();
        self.reduce_by_key_with(p, f)
    }

    /// [`Rdd::reduce_by_key`] into `partitioner`'s partitions (no shuffle when this RDD is
    /// already partitioned that way).
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn reduce_by_key_with(
        &self,
        partitioner: Partitioner,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Rdd<(K, V)> {
        let f = Arc::new(f);
        let g = f.clone();
        self.combine_by_key_op(
            site("reduce_by_key"),
            partitioner,
            |v| v,
            move |a, b| f(a, b),
            move |a, b| g(a, b),
            true,
        )
    }

    /// Merges the values of each key with `f`, starting from `zero` (which must be neutral
    /// for `f`).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let r = ctx.parallelize(vec![(1, 2), (1, 3)], 2).fold_by_key(0, |a, b| a + b);
    /// assert_eq!(r.collect()?, vec![(1, 5)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn fold_by_key(
        &self,
        zero: V,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Rdd<(K, V)> {
        let p = self.default_partitioner();
        self.fold_by_key_with(p, zero, f)
    }

    /// [`Rdd::fold_by_key`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn fold_by_key_with(
        &self,
        partitioner: Partitioner,
        zero: V,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Rdd<(K, V)> {
        let f = Arc::new(f);
        let (g, h) = (f.clone(), f.clone());
        self.combine_by_key_op(
            site("fold_by_key"),
            partitioner,
            move |v| f(zero.clone(), v),
            move |a, b| g(a, b),
            move |a, b| h(a, b),
            true,
        )
    }

    /// Aggregates the values of each key into a `U`: `seq` folds values into an
    /// accumulator started from `zero`, `comb` merges accumulators.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// // (sum, count) per key
    /// let r = ctx.parallelize(vec![("a", 2), ("a", 4)], 2)
    ///     .aggregate_by_key((0, 0), |(s, n), v| (s + v, n + 1), |x, y| (x.0 + y.0, x.1 + y.1));
    /// assert_eq!(r.collect()?, vec![("a", (6, 2))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn aggregate_by_key<U: Data>(
        &self,
        zero: U,
        seq: impl Fn(U, V) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Rdd<(K, U)> {
        let p = self.default_partitioner();
        self.aggregate_by_key_with(p, zero, seq, comb)
    }

    /// [`Rdd::aggregate_by_key`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn aggregate_by_key_with<U: Data>(
        &self,
        partitioner: Partitioner,
        zero: U,
        seq: impl Fn(U, V) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Rdd<(K, U)> {
        let p = partitioner;
        let seq = Arc::new(seq);
        let s2 = seq.clone();
        self.combine_by_key_op(
            site("aggregate_by_key"),
            p,
            move |v| seq(zero.clone(), v),
            move |c, v| s2(c, v),
            comb,
            true,
        )
    }

    /// The general by-key aggregation (Spark's `combineByKey`): `create` turns a key's first
    /// value into a combiner, `merge_value` adds a value, `merge_combiners` merges two.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let r = ctx.parallelize(vec![(1, 'a'), (1, 'b')], 2)
    ///     .combine_by_key(|c| c.to_string(), |mut s, c| { s.push(c); s }, |a, b| a + &b);
    /// let (k, s) = r.collect()?.remove(0);
    /// assert_eq!(k, 1);
    /// assert_eq!(s.len(), 2);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn combine_by_key<C: Data>(
        &self,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
    ) -> Rdd<(K, C)> {
        let p = self.default_partitioner();
        self.combine_by_key_with(p, create, merge_value, merge_combiners)
    }

    /// [`Rdd::combine_by_key`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn combine_by_key_with<C: Data>(
        &self,
        partitioner: Partitioner,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
    ) -> Rdd<(K, C)> {
        self.combine_by_key_op(
            site("combine_by_key"),
            partitioner,
            create,
            merge_value,
            merge_combiners,
            true,
        )
    }

    /// The values of each key, as a `Vec` (no map-side combining, as in Spark: it would not
    /// shrink the data).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let g = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (1, 'c')], 2).group_by_key();
    /// let mut ones = g.lookup(&1)?.remove(0);
    /// ones.sort();
    /// assert_eq!(ones, vec!['a', 'c']);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn group_by_key(&self) -> Rdd<(K, Vec<V>)> {
        let p = self.default_partitioner();
        self.group_by_key_with(p)
    }

    /// [`Rdd::group_by_key`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn group_by_key_with(&self, partitioner: Partitioner) -> Rdd<(K, Vec<V>)> {
        self.combine_by_key_op(
            site("group_by_key"),
            partitioner,
            |v| vec![v],
            |mut c, v| {
                c.push(v);
                c
            },
            |mut a, mut b| {
                a.append(&mut b);
                a
            },
            false,
        )
    }

    /// Repartitions by `partitioner` through a shuffle — or returns this RDD itself when it
    /// is already partitioned that way.
    ///
    /// ```
    /// use flintlock::Partitioner;
    /// # let ctx = flintlock::Context::new();
    /// let p = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 3).partition_by(Partitioner::hash(2));
    /// assert_eq!(p.num_partitions(), 2);
    /// assert_eq!(p.partitioner(), Some(Partitioner::hash(2)));
    /// assert_eq!(p.partition_by(Partitioner::hash(2)).id(), p.id());
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn partition_by(&self, partitioner: Partitioner) -> Rdd<(K, V)> {
        self.partition_by_op(site("partition_by"), partitioner)
    }

    pub(super) fn cogroup_op<W: Data, O: Data>(
        &self,
        site: CallSite,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
        combine: CombineFn<K, V, W, O>,
    ) -> Rdd<O> {
        let left = CoGroupSide::new(self, &partitioner);
        let right = CoGroupSide::new(other, &partitioner);
        let cogrouped = CoGroupedRdd::new(left, right, combine, partitioner);
        Rdd::make(self.context(), site, cogrouped)
    }

    /// For each key in either RDD, its values in this RDD and in `other`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10), (2, 20)], 1);
    /// let mut g = a.cogroup(&b).collect()?;
    /// g.sort();
    /// assert_eq!(g, vec![(1, (vec!['a'], vec![10])), (2, (vec![], vec![20]))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn cogroup<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Vec<V>, Vec<W>))> {
        let p = self.default_partitioner_with(other);
        self.cogroup_with(other, p)
    }

    /// [`Rdd::cogroup`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn cogroup_with<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
    ) -> Rdd<(K, (Vec<V>, Vec<W>))> {
        self.cogroup_op(
            site("cogroup"),
            other,
            partitioner,
            Arc::new(|left, right| {
                let mut groups: FxHashMap<K, (Vec<V>, Vec<W>)> = FxHashMap::default();
                for (k, v) in left {
                    groups.entry(k).or_default().0.push(v);
                }
                for (k, w) in right {
                    groups.entry(k).or_default().1.push(w);
                }
                boxed(groups.into_iter())
            }),
        )
    }

    /// Sorts by key through a range-partitioning shuffle: partition `i` holds keys before
    /// those of partition `i + 1`, each partition sorted. The bounds come from a sample of the
    /// keys (a small job run now, as in Spark). If that job fails, or the key type's `Ord`
    /// panics while the bounds are computed, the RDD keeps the error and every action on it
    /// returns it.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let sorted = ctx.parallelize(vec![(3, 'c'), (1, 'a'), (2, 'b')], 2).sort_by_key(true);
    /// assert_eq!(sorted.collect()?, vec![(1, 'a'), (2, 'b'), (3, 'c')]);
    /// let desc = ctx.parallelize(vec![(3, 'c'), (1, 'a'), (2, 'b')], 2).sort_by_key(false);
    /// assert_eq!(desc.keys().collect()?, vec![3, 2, 1]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn sort_by_key(&self, ascending: bool) -> Rdd<(K, V)>
    where
        K: Ord + Serialize,
    {
        self.sort_by_key_into(ascending, self.num_partitions().max(1))
    }

    /// The 0.1 name of [`Rdd::sort_by_key_into`]: the `_with` methods take a partitioner,
    /// this one a partition count.
    #[deprecated(since = "0.2.0", note = "renamed to `sort_by_key_into`")]
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn sort_by_key_with(&self, ascending: bool, num_partitions: usize) -> Rdd<(K, V)>
    where
        K: Ord + Serialize,
    {
        self.sort_by_key_into(ascending, num_partitions)
    }

    /// [`Rdd::sort_by_key`] into (at most) `num_partitions` partitions.
    ///
    /// # Panics
    /// When `num_partitions` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn sort_by_key_into(&self, ascending: bool, num_partitions: usize) -> Rdd<(K, V)>
    where
        K: Ord + Serialize,
    {
        super::check_partitions("sort_by_key", num_partitions);
        let s = site("sort_by_key");
        // `Ord` runs here, outside any task, while the sampled bounds are sorted.
        let partitioner = catch_unwind(AssertUnwindSafe(|| {
            self.range_bounds(num_partitions)
                .map(|bounds| Partitioner::range(bounds, ascending))
        }))
        .unwrap_or_else(|payload| {
            Err(Error::TaskFailed {
                rdd_id: self.id(),
                rdd: self.node.describe(),
                partition: 0,
                message: format!(
                    "the key type's Ord panicked while sort_by_key computed range bounds: {}",
                    crate::scheduler::panic_message(payload.as_ref())
                ),
            })
        });
        let partitioner = match partitioner {
            Ok(p) => p,
            Err(e) => {
                // The sampling job ran now, at definition time; a cancellation then is not a
                // property of the data, and the error says how to get past it.
                let e = match e {
                    Error::Cancelled {
                        job_id,
                        group,
                        reason,
                    } => Error::Cancelled {
                        job_id,
                        group,
                        reason: format!(
                            "{reason}; it was the sampling job of sort_by_key, run when the \
                             sorted RDD was defined, so that RDD cannot be computed: call \
                             sort_by_key again"
                        ),
                    },
                    e => e,
                };
                return Rdd::make(self.context(), s, FailedRdd::new(e, num_partitions));
            }
        };
        let shuffled = self.partition_by_op(s, partitioner);
        shuffled.map_partitions_op(
            s,
            true,
            Arc::new(move |_, it| {
                let mut v: Vec<(K, V)> = it.collect();
                if ascending {
                    v.sort_by(|a, b| a.0.cmp(&b.0));
                } else {
                    v.sort_by(|a, b| b.0.cmp(&a.0));
                }
                boxed(v.into_iter())
            }),
        )
    }

    /// Upper bounds for `partitions` ranges of nearly equal weight, from a reservoir sample
    /// of each partition's keys weighted by partition size (Spark's
    /// `RangePartitioner.determineBounds`).
    fn range_bounds(&self, partitions: usize) -> Result<Vec<K>>
    where
        K: Ord,
    {
        if partitions <= 1 || self.num_partitions() == 0 {
            return Ok(Vec::new());
        }
        let sample_size = (20 * partitions).min(1_000_000);
        let per_partition = (3 * sample_size).div_ceil(self.num_partitions()).max(1);
        let samples = self.run(&(0..self.num_partitions()).collect::<Vec<_>>(), |p, it| {
            let (keys, seen) = sampling::reservoir(
                it.map(|(k, _)| k),
                per_partition,
                sampling::mix(p as u64 ^ 0x5A17),
            );
            Ok((crate::scheduler::wire::Many(keys), seen))
        })?;
        let mut weighted: Vec<(K, f64)> = Vec::new();
        for (crate::scheduler::wire::Many(keys), seen) in samples {
            if keys.is_empty() {
                continue;
            }
            let w = seen as f64 / keys.len() as f64;
            weighted.extend(keys.into_iter().map(|k| (k, w)));
        }
        weighted.sort_by(|a, b| a.0.cmp(&b.0));
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        let step = total / partitions as f64;
        let mut bounds: Vec<K> = Vec::new();
        let mut acc = 0.0;
        let mut target = step;
        for (k, w) in weighted {
            acc += w;
            if acc >= target && bounds.len() < partitions - 1 {
                if bounds.last() != Some(&k) {
                    bounds.push(k);
                }
                target += step;
            }
        }
        Ok(bounds)
    }

    /// How many pairs each key has.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let c = ctx.parallelize(vec![('a', 1), ('a', 2), ('b', 3)], 2).count_by_key()?;
    /// assert_eq!(c[&'a'], 2);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job; [`Error::JobPanicked`] when `K`'s `Hash` or `Eq` panics while the
    /// counts are collected into the map on the calling thread.
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>> {
        self.map_values(|_| 1u64)
            .reduce_by_key(|a, b| a + b)
            .collect_as_map()
    }

    /// The values for `key`. With a known partitioner only the key's partition is computed.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let pairs = ctx.parallelize(vec![('a', 1), ('b', 2), ('a', 3)], 2);
    /// assert_eq!(pairs.lookup(&'a')?, vec![1, 3]);
    /// assert_eq!(pairs.lookup(&'z')?, Vec::<i32>::new());
    /// let by_key = pairs.partition_by(flintlock::Partitioner::hash(4)); // one partition read
    /// assert_eq!(by_key.lookup(&'b')?, vec![2]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job.
    pub fn lookup(&self, key: &K) -> Result<Vec<V>> {
        let key = key.clone();
        // The key's `Hash` runs here, outside any task: a panic in it is an error.
        let placed = catch_unwind(AssertUnwindSafe(|| {
            self.trusted_partitioner()
                .and_then(|p| p.try_partition_of(&key).ok())
        }))
        .map_err(|payload| Error::JobPanicked {
            rdd_id: self.id(),
            message: format!(
                "placing the key panicked (in its Hash impl or a custom partitioner) while \
                 lookup placed it: {}",
                crate::scheduler::panic_message(payload.as_ref())
            ),
        })?;
        let parts: Vec<usize> = match placed {
            Some(p) => vec![p],
            None => (0..self.num_partitions()).collect(),
        };
        let found = self.run(&parts, |_, it| {
            Ok(crate::scheduler::wire::Many(
                it.filter(|(k, _)| *k == key)
                    .map(|(_, v)| v)
                    .collect::<Vec<V>>(),
            ))
        })?;
        Ok(found.into_iter().flat_map(|found| found.0).collect())
    }
}
