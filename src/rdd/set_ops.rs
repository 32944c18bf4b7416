//! Set operations and grouping: `subtract`, `intersection`, `subtract_by_key`,
//! `cogroup3`, `cogroup4`, `group_by`, `sort_by`, `collect_as_map` (Spark's `RDD` and `PairRDDFunctions`
//! methods of the same names), composed from the shuffle operators.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::iter::{boxed, Filtered, Mapped};
use super::site;
use crate::error::Result;
use crate::partitioner::Partitioner;
use crate::{Data, Key, Rdd};

impl<T: Data> Rdd<T> {
    /// Groups the elements by the key `f` computes (Spark's `groupBy`): one `(key, elements)`
    /// pair per distinct key, hash-partitioned into as many partitions as this RDD has. The
    /// elements of a group keep no particular order.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let mut g = ctx.range(0..6, 2).group_by(|x| x % 2).collect()?;
    /// g.sort();
    /// for (_, v) in &mut g { v.sort(); }
    /// assert_eq!(g, vec![(0, vec![0, 2, 4]), (1, vec![1, 3, 5])]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn group_by<K: Key>(
        &self,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Rdd<(K, Vec<T>)> {
        let p = Partitioner::hash(self.num_partitions().max(1));
        self.key_by(f).group_by_key_with(p)
    }

    /// Sorts the elements by the key `f` computes (Spark's `sortBy`), through a
    /// range-partitioning shuffle into as many partitions as this RDD has. Equal keys keep
    /// no particular order.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let words = ctx.parallelize(vec!["ccc", "a", "bb"], 2);
    /// assert_eq!(words.sort_by(|w| w.len(), true).collect()?, vec!["a", "bb", "ccc"]);
    /// assert_eq!(words.sort_by(|w| w.len(), false).collect()?, vec!["ccc", "bb", "a"]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn sort_by<K: Key + Ord + Serialize>(
        &self,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
        ascending: bool,
    ) -> Rdd<T> {
        let n = self.num_partitions().max(1);
        self.key_by(f).sort_by_key_into(ascending, n).values()
    }

    /// The elements of this RDD that are not in `other` (Spark's `subtract`), duplicates of
    /// this RDD kept, hash-partitioned into as many partitions as this RDD has.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![1, 2, 2, 3, 4], 2);
    /// let b = ctx.parallelize(vec![2, 4, 5], 1);
    /// let mut left = a.subtract(&b).collect()?;
    /// left.sort();
    /// assert_eq!(left, vec![1, 3]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn subtract(&self, other: &Rdd<T>) -> Rdd<T>
    where
        T: Key,
    {
        let s = site("subtract");
        let p = Partitioner::hash(self.num_partitions().max(1));
        self.keyed_by_self(s)
            .subtract_by_key_op(s, &other.keyed_by_self(s), p)
            .map_partitions_op(s, false, Arc::new(|_, it| Mapped::boxed(it, |(x, _)| x)))
    }

    /// The distinct elements in both RDDs (Spark's `intersection`): no duplicates, even if
    /// both inputs have them.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![1, 2, 2, 3], 2);
    /// let b = ctx.parallelize(vec![2, 2, 3, 4], 1);
    /// let mut both = a.intersection(&b).collect()?;
    /// both.sort();
    /// assert_eq!(both, vec![2, 3]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn intersection(&self, other: &Rdd<T>) -> Rdd<T>
    where
        T: Key,
    {
        let s = site("intersection");
        let (a, b) = (self.keyed_by_self(s), other.keyed_by_self(s));
        let p = a.default_partitioner_with(&b);
        a.cogroup_op(
            s,
            &b,
            p,
            Arc::new(|left, right| {
                let right: FxHashSet<T> = right.map(|(k, ())| k).collect();
                let mut seen: FxHashSet<T> = FxHashSet::default();
                let kept = Filtered::boxed(left, move |(k, ())| {
                    right.contains(k) && seen.insert(k.clone())
                });
                Mapped::boxed(kept, |(k, ())| k)
            }),
        )
    }
}

impl<T: Data> Rdd<T> {
    /// `(x, ())` for each element `x`: the set operations' pair form.
    fn keyed_by_self(&self, s: super::node::CallSite) -> Rdd<(T, ())> {
        self.map_partitions_op(s, false, Arc::new(|_, it| Mapped::boxed(it, |x| (x, ()))))
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// The pairs whose key is not a key of `other` (Spark's `subtractByKey`), keeping this
    /// RDD's partitioner, or hash-partitioned into as many partitions as this RDD has.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (2, 'c'), (3, 'd')], 2);
    /// let b = ctx.parallelize(vec![(2, ()), (4, ())], 1);
    /// let mut left = a.subtract_by_key(&b).collect()?;
    /// left.sort();
    /// assert_eq!(left, vec![(1, 'a'), (3, 'd')]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn subtract_by_key<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, V)> {
        let p = self.default_partitioner();
        self.subtract_by_key_op(site("subtract_by_key"), other, p)
    }

    fn subtract_by_key_op<W: Data>(
        &self,
        s: super::node::CallSite,
        other: &Rdd<(K, W)>,
        p: Partitioner,
    ) -> Rdd<(K, V)> {
        self.cogroup_op(
            s,
            other,
            p,
            Arc::new(|left, right| {
                let right: FxHashSet<K> = right.map(|(k, _)| k).collect();
                Filtered::boxed(left, move |(k, _)| !right.contains(k))
            }),
        )
    }

    /// For each key in any of the three RDDs, its values in each (Spark's
    /// `cogroup(other1, other2)`). Each input is shuffled once (none that is already
    /// partitioned like the result).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10), (2, 20)], 2);
    /// let c = ctx.parallelize(vec![(3, "x")], 1);
    /// let mut g = a.cogroup3(&b, &c).collect()?;
    /// g.sort();
    /// assert_eq!(g, vec![
    ///     (1, (vec!['a'], vec![10], vec![])),
    ///     (2, (vec![], vec![20], vec![])),
    ///     (3, (vec![], vec![], vec!["x"])),
    /// ]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn cogroup3<W1: Data, W2: Data>(
        &self,
        other1: &Rdd<(K, W1)>,
        other2: &Rdd<(K, W2)>,
    ) -> Rdd<(K, (Vec<V>, Vec<W1>, Vec<W2>))> {
        let s = site("cogroup");
        let ab = self.cogroup(other1);
        let p = ab.default_partitioner_with(other2);
        ab.cogroup_op(
            s,
            other2,
            p,
            Arc::new(|left, right| {
                let mut groups: FxHashMap<K, (Vec<V>, Vec<W1>, Vec<W2>)> = FxHashMap::default();
                for (k, (v, w)) in left {
                    let g = groups.entry(k).or_default();
                    g.0.extend(v);
                    g.1.extend(w);
                }
                for (k, x) in right {
                    groups.entry(k).or_default().2.push(x);
                }
                boxed(groups.into_iter())
            }),
        )
    }

    /// For each key in any of the four RDDs, its values in each (Spark's
    /// `cogroup(other1, other2, other3)`).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![(1, 'a')], 1);
    /// let b = ctx.parallelize(vec![(1, 10)], 1);
    /// let c = ctx.parallelize(vec![(2, "x")], 1);
    /// let d = ctx.parallelize(vec![(1, 0.5)], 1);
    /// let mut g = a.cogroup4(&b, &c, &d).collect()?;
    /// g.sort_by_key(|p| p.0);
    /// assert_eq!(g[0], (1, (vec!['a'], vec![10], vec![], vec![0.5])));
    /// assert_eq!(g[1], (2, (vec![], vec![], vec!["x"], vec![])));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn cogroup4<W1: Data, W2: Data, W3: Data>(
        &self,
        other1: &Rdd<(K, W1)>,
        other2: &Rdd<(K, W2)>,
        other3: &Rdd<(K, W3)>,
    ) -> Rdd<(K, (Vec<V>, Vec<W1>, Vec<W2>, Vec<W3>))> {
        let s = site("cogroup");
        let abc = self.cogroup3(other1, other2);
        let p = abc.default_partitioner_with(other3);
        abc.cogroup_op(
            s,
            other3,
            p,
            Arc::new(|left, right| {
                let mut groups: FxHashMap<K, (Vec<V>, Vec<W1>, Vec<W2>, Vec<W3>)> =
                    FxHashMap::default();
                for (k, (v, w, x)) in left {
                    let g = groups.entry(k).or_default();
                    g.0.extend(v);
                    g.1.extend(w);
                    g.2.extend(x);
                }
                for (k, y) in right {
                    groups.entry(k).or_default().3.push(y);
                }
                boxed(groups.into_iter())
            }),
        )
    }

    /// Collects the pairs into a map (Spark's `collectAsMap`): for a key with several values,
    /// the one of the last pair in the RDD's order is kept.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let m = ctx.parallelize(vec![(1, 'a'), (2, 'b'), (1, 'c')], 2).collect_as_map()?;
    /// assert_eq!(m.len(), 2);
    /// assert_eq!(m[&1], 'c');
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job; [`Error::JobPanicked`](crate::Error::JobPanicked) when `K`'s
    /// `Hash` or `Eq` panics while the pairs are collected into the map on the calling
    /// thread.
    pub fn collect_as_map(&self) -> Result<HashMap<K, V>> {
        let pairs = self.collect()?;
        self.merge_on_driver(|| pairs.into_iter().collect())
    }
}
