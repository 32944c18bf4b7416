//! Joins (Spark's `join`, `leftOuterJoin`, `rightOuterJoin`, `fullOuterJoin`): a cogroup
//! of the two sides whose per-partition function is a hash join. The build side is the
//! right one; a side already partitioned by the join's partitioner is not shuffled (see
//! `cogroup_op` in `pair.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::iter::{each_of_batches, Batcher, PartitionIterator, Sealed};
use super::node::{BoxedPartitionIter, CallSite};
use super::site;
use crate::partitioner::Partitioner;
use crate::{Data, Key, Rdd};

impl<K: Key, V: Data> Rdd<(K, V)> {
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
}

/// A hash join of one partition: builds a table of `right`, streams `left` through it, and
/// shapes each match with `shape` (which also decides what an unmatched side gives: `None`
/// drops the record). Unmatched left pairs are offered to `shape` when `keep_left`,
/// unmatched right pairs after the left side is exhausted when `keep_right`.
fn hash_join<K: Key, V: Data, W: Data, O: Data, S: JoinShape<V, W, O>>(
    left: BoxedPartitionIter<(K, V)>,
    right: BoxedPartitionIter<(K, W)>,
    keep_left: bool,
    keep_right: bool,
    shape: S,
) -> BoxedPartitionIter<(K, O)> {
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
    left: Option<BoxedPartitionIter<(K, V)>>,
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
            if keep_left && let Some(o) = shape(Some(v), None) {
                emit((k, o));
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
