//! Operations on RDDs of key-value pairs (Spark's `PairRDDFunctions`).
//!
//! Every by-key operation goes through the one place that decides whether a shuffle is
//! needed, `ShuffleDependency::unless_partitioned`: when the parent is already partitioned by
//! an equal (trusted) partitioner, the work is done in place, over a narrow dependency.
//!
//! Default partitioning (Spark's `defaultPartitioner`): the partitioner of a parent that has
//! one (the one with more partitions when both do), else hash partitioning over the larger
//! partition count.

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::cogrouped::{CoGroupSide, CoGroupedRdd, CombineFn};
use super::failed::FailedRdd;
use super::iter::{boxed, each_of_batches, Batcher, FlatMapped, Mapped, PartitionIterator, Sealed};
use super::node::{CallSite, PartitionIter};
use super::sampling;
use super::shuffled::ShuffledRdd;
use super::site;
use crate::error::{Error, Result};
use crate::partitioner::Partitioner;
use crate::shuffle::{
    combine_partially, combine_values, merge_combiners as merge_all, ShuffleDependency,
    ShuffleReader,
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
                     build (the key type's Hash impl or the hash function differs from the \
                     build that wrote the checkpoint)"
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

    fn default_partitioner_with<W: Data>(&self, other: &Rdd<(K, W)>) -> Partitioner {
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
        if map_side_combine {
            let (c, m) = (create.clone(), merge_value.clone());
            let dep = ShuffleDependency::unless_partitioned(self, &partitioner, move |it, f, n| {
                combine_partially(it, c.as_ref(), m.as_ref(), f, n)
            });
            if let Some(dep) = dep {
                let reduce = Arc::new(move |reader: ShuffleReader<K, C>| {
                    let capacity = reader.largest_bucket();
                    let map = merge_all(reader, &merge_combiners, capacity);
                    boxed(map.into_iter()) as PartitionIter<(K, C)>
                });
                return Rdd::make(self.context(), site, ShuffledRdd::new(dep, reduce));
            }
        } else if let Some(dep) = ShuffleDependency::bucketing(self, &partitioner) {
            let (c, m) = (create.clone(), merge_value.clone());
            let reduce = Arc::new(move |reader: ShuffleReader<K, V>| {
                let map = combine_values(reader, c.as_ref(), m.as_ref(), 0);
                boxed(map.into_iter()) as PartitionIter<(K, C)>
            });
            return Rdd::make(self.context(), site, ShuffledRdd::new(dep, reduce));
        }
        // Already partitioned by `partitioner`: every key's values are in one partition.
        self.map_partitions_op(
            site,
            true,
            Arc::new(move |_, it| {
                let map = combine_values(it, create.as_ref(), merge_value.as_ref(), 0);
                boxed(map.into_iter())
            }),
        )
    }

    /// `partition_by` with an explicit call site.
    pub(crate) fn partition_by_op(&self, site: CallSite, partitioner: Partitioner) -> Rdd<(K, V)> {
        let Some(dep) = ShuffleDependency::bucketing(self, &partitioner) else {
            return self.clone();
        };
        let reduce =
            Arc::new(|reader: ShuffleReader<K, V>| Box::new(reader) as PartitionIter<(K, V)>);
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
        f: impl Fn(PartitionIter<(K, V)>) -> I + Send + Sync + 'static,
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

    fn cogroup_op<W: Data, O: Data>(
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

    fn join_op<W: Data, O: Data>(
        &self,
        op: CallSite,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
        keep_left: bool,
        keep_right: bool,
        shape: impl JoinShape<V, W, O> + Send + Sync,
    ) -> Rdd<(K, O)> {
        self.cogroup_op(
            op,
            other,
            partitioner,
            Arc::new(move |left, right| hash_join(left, right, keep_left, keep_right, shape)),
        )
    }

    /// Pairs of values for keys present in both RDDs (a hash join per partition; no shuffle
    /// for a side already partitioned by the join's partitioner).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    /// let b = ctx.parallelize(vec![(1, 10), (1, 11), (3, 30)], 2);
    /// let mut j = a.join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, ('a', 10)), (1, ('a', 11))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, W))> {
        let p = self.default_partitioner_with(other);
        self.join_with(other, p)
    }

    /// [`Rdd::join`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn join_with<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
    ) -> Rdd<(K, (V, W))> {
        self.join_op(site("join"), other, partitioner, false, false, |v, w| {
            v.zip(w)
        })
    }

    /// Every pair of this RDD, with the matching values of `other` or `None`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b')], 1);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let mut j = a.left_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, ('a', Some(10))), (2, ('b', None))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn left_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, Option<W>))> {
        let p = self.default_partitioner_with(other);
        self.left_outer_join_with(other, p)
    }

    /// [`Rdd::left_outer_join`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn left_outer_join_with<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
    ) -> Rdd<(K, (V, Option<W>))> {
        self.join_op(
            site("left_outer_join"),
            other,
            partitioner,
            true,
            false,
            |v, w| v.map(|v| (v, w)),
        )
    }

    /// Every pair of `other`, with the matching values of this RDD or `None`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10), (2, 20)], 1);
    /// let mut j = a.right_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, (Some('a'), 10)), (2, (None, 20))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn right_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Option<V>, W))> {
        let p = self.default_partitioner_with(other);
        self.right_outer_join_with(other, p)
    }

    /// [`Rdd::right_outer_join`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn right_outer_join_with<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
    ) -> Rdd<(K, (Option<V>, W))> {
        self.join_op(
            site("right_outer_join"),
            other,
            partitioner,
            false,
            true,
            |v, w| w.map(|w| (v, w)),
        )
    }

    /// Every key of either RDD, with the matching values of each side or `None`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(2, 20)], 1);
    /// let mut j = a.full_outer_join(&b).collect()?;
    /// j.sort();
    /// assert_eq!(j, vec![(1, (Some('a'), None)), (2, (None, Some(20)))]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn full_outer_join<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
    ) -> Rdd<(K, (Option<V>, Option<W>))> {
        let p = self.default_partitioner_with(other);
        self.full_outer_join_with(other, p)
    }

    /// [`Rdd::full_outer_join`] into `partitioner`'s partitions.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn full_outer_join_with<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Partitioner,
    ) -> Rdd<(K, (Option<V>, Option<W>))> {
        self.join_op(
            site("full_outer_join"),
            other,
            partitioner,
            true,
            true,
            |v, w| Some((v, w)),
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
            Err(e) => return Rdd::make(self.context(), s, FailedRdd::new(e, num_partitions)),
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
            Ok((keys, seen))
        })?;
        let mut weighted: Vec<(K, f64)> = Vec::new();
        for (keys, seen) in samples {
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
    /// Any error of the job.
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>> {
        Ok(self
            .map_values(|_| 1u64)
            .reduce_by_key(|a, b| a + b)
            .collect()?
            .into_iter()
            .collect())
    }

    /// The values for `key`. With a known partitioner only the key's partition is computed.
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
                "the key's Hash panicked while lookup placed it: {}",
                crate::scheduler::panic_message(payload.as_ref())
            ),
        })?;
        let parts: Vec<usize> = match placed {
            Some(p) => vec![p],
            None => (0..self.num_partitions()).collect(),
        };
        let found = self.run(&parts, |_, it| {
            Ok(it
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .collect::<Vec<V>>())
        })?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// A hash join of one partition: builds a table of `right`, streams `left` through it, and
/// shapes each match with `shape` (which also decides what an unmatched side gives: `None`
/// drops the record). Unmatched left pairs are offered to `shape` when `keep_left`,
/// unmatched right pairs after the left side is exhausted when `keep_right`.
fn hash_join<K: Key, V: Data, W: Data, O: Data, S: JoinShape<V, W, O>>(
    left: PartitionIter<(K, V)>,
    right: PartitionIter<(K, W)>,
    keep_left: bool,
    keep_right: bool,
    shape: S,
) -> PartitionIter<(K, O)> {
    let mut table = JoinTable::new(right.size_hint().0, keep_right);
    right.drain_batches(&mut |b| b.drain(..).for_each(|(k, w)| table.insert(k, w)));
    Box::new(HashJoin {
        left: Some(left),
        table,
        keep_left,
        keep_right,
        shape,
        pending: VecDeque::new(),
    })
}

/// What a join makes of a key's two sides (`None` for a missing side); `None` drops it.
trait JoinShape<V, W, O>: Fn(Option<V>, Option<W>) -> Option<O> + Copy + 'static {}
impl<V, W, O, S: Fn(Option<V>, Option<W>) -> Option<O> + Copy + 'static> JoinShape<V, W, O> for S {}

/// The build side of a hash join.
///
/// Laid out for the common case of one value per key: `first` holds exactly the key and its
/// first value (16 bytes for PageRank's `u64` ranks, as a hand-written map would), later
/// values of a key go to `more`, and matched keys are recorded only for joins that keep
/// unmatched right records. An entry holding an enum of one value or a `Vec`, plus a flag,
/// was 40 bytes, and the probes of the table missed the cache more often.
struct JoinTable<K, W> {
    first: FxHashMap<K, W>,
    more: FxHashMap<K, Vec<W>>,
    /// Keys a streamed record matched; `Some` only when unmatched right records are kept.
    matched: Option<rustc_hash::FxHashSet<K>>,
}

impl<K: Key, W: Data> JoinTable<K, W> {
    /// Sized from the build side's length (exact for cached or shuffled input).
    fn new(capacity: usize, track_matches: bool) -> Self {
        JoinTable {
            first: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            more: FxHashMap::default(),
            matched: track_matches.then(Default::default),
        }
    }

    fn insert(&mut self, k: K, w: W) {
        match self.first.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let k = e.key().clone();
                self.more.entry(k).or_default().push(w);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(w);
            }
        }
    }
}

/// A hash join's output, pulled or drained.
struct HashJoin<K, V, W, O, S> {
    /// `None` once the streamed side is exhausted.
    left: Option<PartitionIter<(K, V)>>,
    table: JoinTable<K, W>,
    keep_left: bool,
    keep_right: bool,
    shape: S,
    /// Pulled mode only: outputs of the last probe not yet returned.
    pending: VecDeque<(K, O)>,
}

impl<K: Key, V: Data, W: Data, O, S: JoinShape<V, W, O>> HashJoin<K, V, W, O, S> {
    /// Emits what one streamed record makes.
    #[inline]
    fn probe(
        table: &mut JoinTable<K, W>,
        keep_left: bool,
        shape: S,
        (k, v): (K, V),
        emit: &mut (impl FnMut((K, O)) + ?Sized),
    ) {
        let Some(w) = table.first.get(&k) else {
            if keep_left {
                if let Some(o) = shape(Some(v), None) {
                    emit((k, o));
                }
            }
            return;
        };
        if let Some(matched) = &mut table.matched {
            matched.insert(k.clone());
        }
        let more = if table.more.is_empty() {
            None
        } else {
            table.more.get(&k)
        };
        match more {
            None => {
                if let Some(o) = shape(Some(v), Some(w.clone())) {
                    emit((k, o));
                }
            }
            Some(ws) => {
                for w in std::iter::once(w).chain(ws) {
                    if let Some(o) = shape(Some(v.clone()), Some(w.clone())) {
                        emit((k.clone(), o));
                    }
                }
            }
        }
    }

    /// Emits the build-side records no streamed record matched.
    fn unmatched(table: JoinTable<K, W>, shape: S, emit: &mut (impl FnMut((K, O)) + ?Sized)) {
        let JoinTable {
            first,
            mut more,
            matched,
        } = table;
        let matched = matched.unwrap_or_default();
        for (k, w) in first {
            if matched.contains(&k) {
                continue;
            }
            let rest = more.remove(&k).unwrap_or_default();
            for w in std::iter::once(w).chain(rest) {
                if let Some(o) = shape(None, Some(w)) {
                    emit((k.clone(), o));
                }
            }
        }
    }
}

impl<K, V, W, O, S> Sealed for HashJoin<K, V, W, O, S> {}

impl<K: Key, V: Data, W: Data, O, S: JoinShape<V, W, O>> Iterator for HashJoin<K, V, W, O, S> {
    type Item = (K, O);
    fn next(&mut self) -> Option<(K, O)> {
        loop {
            if let Some(x) = self.pending.pop_front() {
                return Some(x);
            }
            let left = self.left.as_mut()?;
            let pending = &mut self.pending;
            match left.next() {
                Some(kv) => {
                    Self::probe(&mut self.table, self.keep_left, self.shape, kv, &mut |o| {
                        pending.push_back(o)
                    })
                }
                None => {
                    self.left = None;
                    if self.keep_right {
                        let table = std::mem::replace(&mut self.table, JoinTable::new(0, false));
                        Self::unmatched(table, self.shape, &mut |o| pending.push_back(o));
                    }
                }
            }
        }
    }
}

impl<K: Key, V: Data, W: Data, O, S: JoinShape<V, W, O>> PartitionIterator<(K, O)>
    for HashJoin<K, V, W, O, S>
{
    fn drain_into(self: Box<Self>, sink: &mut dyn FnMut((K, O))) {
        each_of_batches(self, sink);
    }

    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<(K, O)>)) {
        let HashJoin {
            left,
            mut table,
            keep_left,
            keep_right,
            shape,
            pending,
        } = *self;
        let mut out = Batcher::new(sink);
        pending.into_iter().for_each(|o| out.push(o));
        if let Some(left) = left {
            left.drain_batches(&mut |b| {
                for kv in b.drain(..) {
                    Self::probe(&mut table, keep_left, shape, kv, &mut |o| out.push(o));
                }
            });
            if keep_right {
                Self::unmatched(table, shape, &mut |o| out.push(o));
            }
        }
        out.finish();
    }
}
