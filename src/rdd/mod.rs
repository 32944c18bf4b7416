//! [`Rdd<T>`]: the typed handle, its transformations (lazy) and actions (run a job).
//!
//! Each RDD kind lives in its own file here, like Spark's `rdd` package; the by-key
//! operations on `Rdd<(K, V)>` are in `pair.rs`.

mod actions;
mod actions_more;
mod cartesian;
mod coalesced;
mod cogrouped;
mod failed;
pub(crate) mod iter;
mod join;
mod map_partitions;
pub(crate) mod node;
mod numeric;
mod object_file;
mod pair;
mod parallel_collection;
mod pipe;
mod range;
mod sampling;
mod set_ops;
mod shuffled;
mod sources;
mod text_file;
mod union;
mod zipped;
mod zipped_with_index;

use std::fmt;
use std::panic::Location;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::block_store::StorageLevel;
use crate::checkpoint::{codec_for, CheckpointState};
use crate::context::Context;
use crate::dependency::Dependency;
use crate::error::Result;
use crate::partitioner::Partitioner;
use crate::{Data, Key};

#[allow(deprecated)]
pub use self::iter::PartitionIter;
use self::iter::{drain_to_vec, Filtered, FlatMapped, Mapped};
pub use self::iter::{BoxedPartitionIter, PartitionIterator, BATCH};
use self::map_partitions::{MapPartitionsRdd, PartitionFn};
use self::node::{CallSite, Compute, RddBase, RddNode};
pub use self::numeric::{Numeric, StatCounter};

/// A lazy, partitioned, immutable dataset: Spark's `RDD[T]`.
///
/// An `Rdd<T>` is a cheap handle (an `Arc` to a shared node): clone it freely.
/// Transformations (`map`, `filter`, `reduce_by_key`, ...) return new RDDs without computing
/// anything; actions (`count`, `collect`, ...) run a job and return a `Result`.
///
/// ```
/// use flintlock::Context;
/// let ctx = Context::new();
/// let squares = ctx.parallelize((1..=4).collect(), 2).map(|x: i32| x * x);
/// assert_eq!(squares.collect()?, vec![1, 4, 9, 16]);
/// assert_eq!(squares.reduce(|a, b| a + b)?, Some(30));
/// # Ok::<(), flintlock::Error>(())
/// ```
pub struct Rdd<T: Data> {
    pub(crate) node: Arc<RddNode<T>>,
}

impl<T: Data> Clone for Rdd<T> {
    fn clone(&self) -> Self {
        Rdd {
            node: self.node.clone(),
        }
    }
}

impl<T: Data> fmt::Debug for Rdd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.node.describe())
    }
}

/// A weak handle to an RDD: does not keep it (or its lineage) alive. See [`Rdd::downgrade`].
pub struct WeakRdd<T: Data> {
    node: Weak<RddNode<T>>,
}

impl<T: Data> WeakRdd<T> {
    /// The RDD, if some handle still keeps it alive.
    pub fn upgrade(&self) -> Option<Rdd<T>> {
        self.node.upgrade().map(|node| Rdd { node })
    }
}

impl<T: Data> fmt::Debug for WeakRdd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakRdd")
            .field("alive", &(self.node.strong_count() > 0))
            .finish()
    }
}

#[track_caller]
pub(crate) fn site(op: &'static str) -> CallSite {
    CallSite {
        op,
        location: Location::caller(),
    }
}

#[track_caller]
pub(crate) fn check_partitions(what: &str, n: usize) {
    assert!(n > 0, "{what}: the number of partitions must be at least 1");
}

impl<T: Data> Rdd<T> {
    pub(crate) fn from_node(node: RddNode<T>) -> Rdd<T> {
        Rdd {
            node: Arc::new(node),
        }
    }

    pub(crate) fn make(ctx: &Context, site: CallSite, compute: impl Compute<T>) -> Rdd<T> {
        Rdd::from_node(RddNode::new(ctx.clone(), site, Arc::new(compute)))
    }

    /// The context this RDD belongs to.
    pub fn context(&self) -> &Context {
        &self.node.ctx
    }

    /// The RDD's id, unique within its context.
    pub fn id(&self) -> usize {
        self.node.id
    }

    /// The name given with [`Rdd::set_name`].
    pub fn name(&self) -> Option<String> {
        RddBase::name(self.node.as_ref())
    }

    /// Names the RDD (shown in `to_debug_string` and `to_dot`); returns the same RDD.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let ranks = ctx.parallelize(vec![1.0], 1).set_name("ranks");
    /// assert_eq!(ranks.name().as_deref(), Some("ranks"));
    /// ```
    pub fn set_name(&self, name: impl Into<String>) -> Rdd<T> {
        self.node.set_name(Some(name.into()));
        self.clone()
    }

    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.node.num_partitions
    }

    /// How the RDD's keys are partitioned, if known.
    ///
    /// For a checkpoint reopened from disk this is the partitioner its manifest records. By-key
    /// operations rely on it only after checking that this build places the checkpoint's keys
    /// where they are (one full read of the checkpoint, once); when that check fails the
    /// partitioner is dropped (this returns `None` from then on, the operation shuffles,
    /// and [`crate::Event::PartitionerDropped`] says why).
    pub fn partitioner(&self) -> Option<Partitioner> {
        self.node.visible_partitioner()
    }

    /// The edges to its parents. After a checkpoint: exactly one `OneToOne` edge to the
    /// checkpoint RDD.
    ///
    /// ```
    /// use flintlock::DependencyKind;
    /// # let ctx = flintlock::Context::new();
    /// let pairs = ctx.parallelize(vec![(1, 'a')], 2);
    /// let mapped = pairs.map(|p| p);
    /// assert_eq!(mapped.dependencies()[0].kind(), DependencyKind::OneToOne);
    /// let grouped = pairs.group_by_key();
    /// assert_eq!(grouped.dependencies()[0].kind(), DependencyKind::Shuffle);
    /// ```
    pub fn dependencies(&self) -> Vec<Dependency> {
        RddBase::dependencies(self.node.as_ref())
    }

    /// The untyped view of this RDD, as the lineage tools see it.
    pub fn as_base(&self) -> Arc<dyn RddBase> {
        self.node.clone()
    }

    /// A weak handle, which does not keep the RDD alive.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec![1], 1);
    /// let weak = rdd.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(rdd);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn downgrade(&self) -> WeakRdd<T> {
        WeakRdd {
            node: Arc::downgrade(&self.node),
        }
    }

    /// How computed partitions are kept.
    pub fn storage_level(&self) -> StorageLevel {
        RddBase::storage_level(self.node.as_ref())
    }

    // ------------------------------------------------------------------------------------
    // Transformations
    // ------------------------------------------------------------------------------------

    pub(crate) fn map_partitions_op<U: Data>(
        &self,
        site: CallSite,
        preserves_partitioning: bool,
        f: PartitionFn<T, U>,
    ) -> Rdd<U> {
        let (partitioner, placement) = if preserves_partitioning {
            self.node.preserved_partitioning::<U>()
        } else {
            (None, None)
        };
        let mut node = RddNode::new(
            self.context().clone(),
            site,
            Arc::new(MapPartitionsRdd::new(self.clone(), f, partitioner)),
        );
        node.placement = placement;
        Rdd::from_node(node)
    }

    /// A map over partitions whose output the caller knows is placed by `partitioner`
    /// (a pair RDD built, partition by partition, from a state kept by the same placement).
    pub(crate) fn map_partitions_placed<K: Data, V: Data>(
        &self,
        site: CallSite,
        partitioner: Partitioner,
        f: PartitionFn<T, (K, V)>,
    ) -> Rdd<(K, V)> {
        assert_eq!(partitioner.num_partitions(), self.num_partitions());
        let node = RddNode::new(
            self.context().clone(),
            site,
            Arc::new(MapPartitionsRdd::new(self.clone(), f, Some(partitioner))),
        );
        Rdd::from_node(node)
    }

    /// Applies `f` to every element.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let lens = ctx.parallelize(vec!["a", "bcd"], 2).map(|s| s.len());
    /// assert_eq!(lens.collect()?, vec![1, 3]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Rdd<U> {
        let f = Arc::new(f);
        self.map_partitions_op(
            site("map"),
            false,
            Arc::new(move |_, it| {
                let f = f.clone();
                Mapped::boxed(it, move |x| f(x))
            }),
        )
    }

    /// Keeps the elements for which `f` is true (keeps the partitioner).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let even = ctx.range(0..10, 3).filter(|x| x % 2 == 0);
    /// assert_eq!(even.collect()?, vec![0, 2, 4, 6, 8]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Rdd<T> {
        let f = Arc::new(f);
        self.map_partitions_op(
            site("filter"),
            true,
            Arc::new(move |_, it| {
                let f = f.clone();
                Filtered::boxed(it, move |x| f(x))
            }),
        )
    }

    /// Maps every element to zero or more elements.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let words = ctx.parallelize(vec!["a b", "c"], 2)
    ///     .flat_map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>());
    /// assert_eq!(words.collect()?, vec!["a", "b", "c"]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn flat_map<U: Data, I>(&self, f: impl Fn(T) -> I + Send + Sync + 'static) -> Rdd<U>
    where
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        let f = Arc::new(f);
        self.map_partitions_op(
            site("flat_map"),
            false,
            Arc::new(move |_, it| {
                let f = f.clone();
                FlatMapped::boxed(it, move |x| f(x).into_iter())
            }),
        )
    }

    /// Transforms each partition as a whole.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let sums = ctx.range(0..6, 2).map_partitions(|it| std::iter::once(it.sum::<u64>()));
    /// assert_eq!(sums.collect()?, vec![3, 12]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn map_partitions<U: Data, I>(
        &self,
        f: impl Fn(BoxedPartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        self.map_partitions_op(
            site("map_partitions"),
            false,
            Arc::new(move |_, it| iter::boxed(f(it).into_iter())),
        )
    }

    /// Transforms each partition as a whole, knowing its index.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let tagged = ctx.parallelize(vec!['x', 'y'], 2)
    ///     .map_partitions_with_index(|i, it| it.map(move |c| (i, c)));
    /// assert_eq!(tagged.collect()?, vec![(0, 'x'), (1, 'y')]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn map_partitions_with_index<U: Data, I>(
        &self,
        f: impl Fn(usize, BoxedPartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        self.map_partitions_op(
            site("map_partitions_with_index"),
            false,
            Arc::new(move |i, it| iter::boxed(f(i, it).into_iter())),
        )
    }

    /// The elements of both RDDs (duplicates kept). Its partitions are this RDD's followed
    /// by `other`'s; but when both have the same partitioner, partition `i` holds partition
    /// `i` of each and the partitioner is kept (Spark's `PartitionerAwareUnionRDD`), so a
    /// following by-key operation needs no shuffle.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let both = ctx.parallelize(vec![1, 2], 1).union(&ctx.parallelize(vec![2, 3], 2));
    /// assert_eq!(both.num_partitions(), 3);
    /// assert_eq!(both.collect()?, vec![1, 2, 2, 3]);
    ///
    /// let a = ctx.parallelize(vec![(1, 1), (2, 2)], 2).reduce_by_key(|x, y| x + y);
    /// let b = ctx.parallelize(vec![(1, 10)], 2).reduce_by_key(|x, y| x + y);
    /// let ab = a.union(&b);
    /// assert_eq!(ab.num_partitions(), 2);
    /// assert_eq!(ab.partitioner(), a.partitioner());
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn union(&self, other: &Rdd<T>) -> Rdd<T> {
        Rdd::union_all(
            self.context(),
            vec![self.clone(), other.clone()],
            site("union"),
        )
    }

    /// The union of `parents` (see [`Rdd::union`] and [`Context::union`]).
    pub(crate) fn union_all(ctx: &Context, parents: Vec<Rdd<T>>, site: CallSite) -> Rdd<T> {
        if let Some(p) = union::common_partitioner(&parents) {
            return Rdd::make(ctx, site, union::PartitionerAwareUnionRdd::new(parents, p));
        }
        Rdd::make(ctx, site, union::UnionRdd::new(parents))
    }

    /// Merges partitions without a shuffle: `n` partitions, each a run of consecutive
    /// partitions of this RDD. Asking for more partitions than there are keeps the count.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let fewer = ctx.range(0..8, 4).coalesce(2);
    /// assert_eq!(fewer.glom().collect()?, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `n` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn coalesce(&self, n: usize) -> Rdd<T> {
        check_partitions("coalesce", n);
        let n = n.min(self.num_partitions().max(1));
        let c = coalesced::CoalescedRdd::new(self.clone(), n);
        Rdd::make(self.context(), site("coalesce"), c)
    }

    /// Redistributes the elements evenly over `n` partitions through a shuffle (Spark's
    /// `repartition`): each input partition deals its elements round-robin, from a
    /// partition-dependent start, so every output partition gets within one element of an
    /// equal share of each input partition.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let spread = ctx.range(0..100, 1).repartition(7);
    /// let sizes: Vec<usize> = spread.glom().collect()?.iter().map(Vec::len).collect();
    /// assert_eq!(sizes.iter().sum::<usize>(), 100);
    /// assert!(sizes.iter().all(|&s| s == 14 || s == 15), "{sizes:?}");
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `n` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn repartition(&self, n: usize) -> Rdd<T> {
        check_partitions("repartition", n);
        self.round_robin(site("repartition"), n)
    }

    /// The shuffle of `repartition`: element `j` of input partition `i` goes to output
    /// partition `(start(i) + j) % n`. The shuffle places by key hash, so each output slot is
    /// keyed by a representative key the hash partitioner places in it (found once here, by
    /// trying small integers: about `n ln n` hashes).
    fn round_robin(&self, s: CallSite, n: usize) -> Rdd<T> {
        let partitioner = Partitioner::hash(n);
        let mut slots: Vec<Option<u64>> = vec![None; n];
        let mut found = 0;
        let mut k = 0u64;
        while found < n {
            let slot = &mut slots[partitioner.partition_of(&k)];
            if slot.is_none() {
                *slot = Some(k);
                found += 1;
            }
            k += 1;
        }
        let keys: Arc<Vec<u64>> = Arc::new(slots.into_iter().flatten().collect());
        let keyed: Rdd<(u64, T)> = self.map_partitions_op(
            s,
            false,
            Arc::new(move |i, it| {
                let keys = keys.clone();
                let mut next = (sampling::mix(i as u64) % n as u64) as usize;
                Mapped::boxed(it, move |x| {
                    let key = keys[next];
                    next = (next + 1) % n;
                    (key, x)
                })
            }),
        );
        let shuffled = keyed.partition_by_op(s, partitioner);
        shuffled.map_partitions_op(s, false, Arc::new(|_, it| Mapped::boxed(it, |(_, x)| x)))
    }

    /// [`Rdd::coalesce`] without a shuffle, or with one (Spark's `coalesce(n, shuffle)`):
    /// with `shuffle`, the elements are dealt round-robin over `n` partitions as in
    /// [`Rdd::repartition`], so `n` may also be larger than the current count and the
    /// result is balanced.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let skewed = ctx.range(0..90, 3).filter(|x| *x < 40); // 30, 10, 0 elements
    /// let even = skewed.coalesce_with(2, true);
    /// let sizes: Vec<usize> = even.glom().collect()?.iter().map(Vec::len).collect();
    /// assert_eq!(sizes, vec![20, 20]);
    /// assert_eq!(skewed.coalesce_with(6, true).num_partitions(), 6);
    /// assert_eq!(skewed.coalesce_with(6, false).num_partitions(), 3);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `n` is zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn coalesce_with(&self, n: usize, shuffle: bool) -> Rdd<T> {
        check_partitions("coalesce", n);
        if shuffle {
            self.round_robin(site("coalesce"), n)
        } else {
            self.coalesce(n)
        }
    }

    /// A random sample: each element kept with probability `fraction` (without
    /// replacement), or repeated a Poisson(`fraction`) number of times (with replacement).
    /// The same `seed` gives the same sample.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let s = ctx.range(0..10_000, 4).sample(false, 0.1, 42);
    /// let n = s.count()?;
    /// assert!((800..1200).contains(&n));
    /// assert_eq!(n, ctx.range(0..10_000, 4).sample(false, 0.1, 42).count()?);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When `fraction` is negative or not finite, or above 1 without replacement.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn sample(&self, with_replacement: bool, fraction: f64, seed: u64) -> Rdd<T> {
        assert!(
            fraction.is_finite()
                && fraction >= 0.0
                && (with_replacement || fraction <= 1.0)
                && fraction <= sampling::MAX_POISSON_MEAN,
            "sample: fraction must be in [0, 1] without replacement and in [0, {:e}] with it, \
             got {fraction}",
            sampling::MAX_POISSON_MEAN
        );
        self.map_partitions_op(
            site("sample"),
            true,
            Arc::new(move |i, it| {
                let rng = sampling::SplitMix64::new(seed ^ sampling::mix(i as u64 + 1));
                sampling::sample_iter(it, with_replacement, fraction, rng)
            }),
        )
    }

    /// Pairs the i-th elements of the i-th partitions of two RDDs with the same partition
    /// count; partitions of different sizes fail the action with [`Error::DataMismatch`](crate::Error::DataMismatch).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![1, 2, 3], 2);
    /// let b = a.map(|x| x * 10);
    /// assert_eq!(a.zip(&b).collect()?, vec![(1, 10), (2, 20), (3, 30)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When the partition counts differ.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn zip<U: Data>(&self, other: &Rdd<U>) -> Rdd<(T, U)> {
        assert_eq!(
            self.num_partitions(),
            other.num_partitions(),
            "zip: can only zip RDDs with the same number of partitions"
        );
        let z = zipped::ZippedPartitionsRdd::pairs(self.clone(), other.clone());
        Rdd::make(self.context(), site("zip"), z)
    }

    /// Computes each partition from this RDD's and `other`'s partitions of the same index
    /// (Spark's `zipPartitions`): `f` gets both partitions' iterators, which may have any
    /// lengths. A narrow dependency on both, with no partitioner.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let a = ctx.parallelize(vec![1, 2, 3, 4], 2);
    /// let b = ctx.parallelize(vec![10, 20], 2);
    /// // Each partition's elements of `a`, each plus the sum of `b`'s partition.
    /// let c = a.zip_partitions(&b, |a, b| {
    ///     let add: i32 = b.sum();
    ///     a.map(move |x| x + add)
    /// });
    /// assert_eq!(c.collect()?, vec![11, 12, 23, 24]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When the partition counts differ.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn zip_partitions<U: Data, W: Data, I>(
        &self,
        other: &Rdd<U>,
        f: impl Fn(BoxedPartitionIter<T>, BoxedPartitionIter<U>) -> I + Send + Sync + 'static,
    ) -> Rdd<W>
    where
        I: IntoIterator<Item = W>,
        I::IntoIter: 'static,
    {
        let site = site("zip_partitions");
        self.zip_partitions_op(
            other,
            site,
            Arc::new(move |_, _, a, b| iter::boxed(f(a, b).into_iter())),
        )
    }

    /// `zip_partitions` with the partition index and the task (to fail it with an error).
    #[track_caller]
    pub(crate) fn zip_partitions_op<U: Data, W: Data>(
        &self,
        other: &Rdd<U>,
        site: CallSite,
        f: zipped::ZipFn<T, U, W>,
    ) -> Rdd<W> {
        assert_eq!(
            self.num_partitions(),
            other.num_partitions(),
            "zip_partitions: can only zip RDDs with the same number of partitions"
        );
        let z = zipped::ZippedPartitionsRdd::new(self.clone(), other.clone(), f);
        Rdd::make(self.context(), site, z)
    }

    /// Pairs each element with its index in the whole RDD (running a counting job on the
    /// first action, when there are several partitions).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let indexed = ctx.parallelize(vec!['a', 'b', 'c'], 2).zip_with_index();
    /// assert_eq!(indexed.collect()?, vec![('a', 0), ('b', 1), ('c', 2)]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn zip_with_index(&self) -> Rdd<(T, u64)> {
        let z = zipped_with_index::ZippedWithIndexRdd::new(self.clone());
        Rdd::make(self.context(), site("zip_with_index"), z)
    }

    /// Every pair `(a, b)` of an element of this RDD and one of `other`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let pairs = ctx.parallelize(vec![1, 2], 2).cartesian(&ctx.parallelize(vec!['x'], 1));
    /// assert_eq!(pairs.num_partitions(), 2);
    /// assert_eq!(pairs.collect()?, vec![(1, 'x'), (2, 'x')]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn cartesian<U: Data>(&self, other: &Rdd<U>) -> Rdd<(T, U)> {
        let c = cartesian::CartesianRdd::new(self.clone(), other.clone());
        Rdd::make(self.context(), site("cartesian"), c)
    }

    /// Pairs each element with the key `f` computes from it.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let by_len = ctx.parallelize(vec!["ab", "c"], 1).key_by(|s| s.len());
    /// assert_eq!(by_len.collect()?, vec![(2, "ab"), (1, "c")]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn key_by<K: Data>(&self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> Rdd<(K, T)> {
        let f = Arc::new(f);
        self.map_partitions_op(
            site("key_by"),
            false,
            Arc::new(move |_, it| {
                let f = f.clone();
                Mapped::boxed(it, move |x| (f(&x), x))
            }),
        )
    }

    /// Each partition as one `Vec`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(0..3, 2).glom().collect()?, vec![vec![0], vec![1, 2]]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn glom(&self) -> Rdd<Vec<T>> {
        self.map_partitions_op(
            site("glom"),
            false,
            Arc::new(|_, it| iter::boxed(std::iter::once(drain_to_vec(it)))),
        )
    }

    /// The distinct elements (through a shuffle).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let mut d = ctx.parallelize(vec![3, 1, 3, 2, 1], 2).distinct().collect()?;
    /// d.sort();
    /// assert_eq!(d, vec![1, 2, 3]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn distinct(&self) -> Rdd<T>
    where
        T: Key,
    {
        let s = site("distinct");
        let keyed: Rdd<(T, ())> =
            self.map_partitions_op(s, false, Arc::new(|_, it| Mapped::boxed(it, |x| (x, ()))));
        let p = keyed.default_partitioner();
        keyed
            .combine_by_key_op(s, p, |v| v, |a, _| a, |a, _| a, true)
            .map_partitions_op(s, false, Arc::new(|_, it| Mapped::boxed(it, |(x, _)| x)))
    }

    // ------------------------------------------------------------------------------------
    // Persistence
    // ------------------------------------------------------------------------------------

    /// Keeps computed partitions in memory after the first action: later actions read them
    /// instead of recomputing. Returns the same RDD.
    ///
    /// Once every partition is stored, the shuffle outputs below it that no other handle can
    /// reach are released (in a single-process context without a memory limit): only the
    /// loss of the cache could need them. After [`Rdd::unpersist`], the next action that
    /// computes this RDD runs those shuffles again.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..4, 2).map(|x| x + 1).cache();
    /// assert_eq!(rdd.count()?, 4);
    /// assert_eq!(rdd.as_base().cached_partitions(), 2);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn cache(&self) -> Rdd<T> {
        self.persist(StorageLevel::MemoryOnly)
    }

    /// Sets how computed partitions are kept. Returns the same RDD.
    pub fn persist(&self, level: StorageLevel) -> Rdd<T> {
        self.node.checkpoint.user_persisted();
        self.node.set_storage_level(level);
        self.clone()
    }

    /// Drops the cached partitions and stops caching. Returns the same RDD. Shuffles below
    /// it that were released while it was cached (see [`Rdd::cache`]) run again when it is
    /// next computed.
    pub fn unpersist(&self) -> Rdd<T> {
        self.node.set_storage_level(StorageLevel::None);
        self.clone()
    }

    // ------------------------------------------------------------------------------------
    // Checkpoints
    // ------------------------------------------------------------------------------------

    /// Marks the RDD for a reliable checkpoint, written by the next action that computes it:
    /// one file per partition under `<checkpoint_dir>/<app_id>/rdd-<id>-<write id>/`, then a
    /// manifest; then the lineage is replaced by the files and the parents are released.
    ///
    /// The writer accepts only what the reader reads back as the value written: each record
    /// is decoded again from exactly its own bytes, and the value read back encoded again
    /// and compared, before its part file is committed. Element types whose serde
    /// implementation postcard cannot read back (`skip_serializing_if`, untagged or
    /// internally tagged enums, `flatten`, `serde_json::Value`, `from`/`into` through
    /// different types, a skip for one direction only, ...) and records too large
    /// for a frame make the action fail with [`Error::UnreadableRecord`](crate::Error::UnreadableRecord): nothing is
    /// committed, the RDD stays Marked with its lineage, and every later action retries
    /// until [`Rdd::cancel_checkpoint`]. The manifest records the element type's structural
    /// layout when it can be traced, so a later build that changed the type reports
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) instead of misreading it. Some types cannot be traced (an enum
    /// reached only through an `Option`, `Vec` or map field of a struct inside another enum's
    /// variant, or inside an enum's variant other than the first, a `Deserialize` that
    /// rejects the tracer's sample values, `deserialize_any` types); their checkpoints are
    /// checked by type name only, as format-1 checkpoints are (see
    /// [`crate::checkpoint::format`]): a later build that changes such a type but keeps its
    /// name reads the old checkpoints as other values, undetected, so give the type (or its
    /// serde name) a new name when its layout changes. A layout is the serde form, not the
    /// meaning of values: a `serde_repr` enum is its integer, so renumbering its variants
    /// goes unnoticed. A `tracing` warning names each such
    /// type once per process, and each checkpoint opened that records no layout.
    ///
    /// "Reads back as the value written" is about the serde form: what serde writes is what
    /// comes back. A field the type's serde leaves out both ways (`#[serde(skip)]`) comes
    /// back as its default, and one written through a lossy `#[serde(with)]` (an `f64`
    /// stored as `f32`) comes back as that form reads, as they would from any serde format.
    ///
    /// Lazy and idempotent: marking twice, marking a checkpointed RDD or a checkpoint RDD are
    /// no-ops; marking after an action already ran takes effect at the next action. The
    /// checkpoint costs no second computation: partitions are written while the action
    /// computes them.
    ///
    /// ```
    /// use flintlock::{CheckpointState, Context};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ctx = Context::builder().checkpoint_dir(dir.path()).build()?;
    /// let rdd = ctx.range(0..100, 4).map(|x| x * 2);
    /// rdd.checkpoint()?;
    /// assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    /// assert_eq!(rdd.count()?, 100);
    /// assert!(rdd.is_checkpointed());
    /// assert!(rdd.checkpoint_path().unwrap().join("_manifest.json").exists());
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// After [`Rdd::local_checkpoint`] the RDD keeps its local checkpoint: this call is
    /// then a no-op that sends [`crate::Event::CheckpointRequestIgnored`].
    ///
    /// # Errors
    /// [`Error::NoCheckpointDir`](crate::Error::NoCheckpointDir) when the context has no checkpoint directory (the RDD
    /// stays Initialized).
    #[track_caller]
    pub fn checkpoint(&self) -> Result<()>
    where
        T: Serialize + DeserializeOwned,
    {
        self.node
            .mark_reliable(codec_for::<T>(), None, site("checkpoint"))
    }

    /// Marks the RDD for a local checkpoint: at the next action its partitions are cached
    /// (the RDD is persisted if it was not) and its lineage is truncated onto those blocks.
    /// Fast, but not fault tolerant: a lost block is an error, not a recomputation.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..10, 2).map(|x| x + 1);
    /// rdd.local_checkpoint()?;
    /// rdd.count()?;
    /// assert!(rdd.is_checkpointed());
    /// ctx.evict_block(rdd.id(), 0);
    /// assert!(rdd.count().is_err()); // no lineage left to recompute from
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// None today; the `Result` leaves room for storage-backed local checkpoints.
    #[track_caller]
    pub fn local_checkpoint(&self) -> Result<()> {
        self.node.mark_local(site("local_checkpoint"));
        Ok(())
    }

    /// Takes back a `checkpoint()` or `local_checkpoint()` mark: a Marked RDD returns to
    /// Initialized (a persist made by `local_checkpoint()` is undone), and actions compute
    /// it from its lineage again. The way out of a checkpoint that cannot be written (an
    /// element that does not serialize): every action on the RDD retries the write until the
    /// mark is cancelled. A no-op when the RDD is not marked.
    ///
    /// ```
    /// use flintlock::{CheckpointState, Context};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ctx = Context::builder().checkpoint_dir(dir.path()).build()?;
    /// let rdd = ctx.range(0..10, 2);
    /// rdd.checkpoint()?;
    /// rdd.cancel_checkpoint()?;
    /// assert_eq!(rdd.checkpoint_state(), CheckpointState::Initialized);
    /// assert_eq!(rdd.count()?, 10);
    /// assert!(!rdd.is_checkpointed());
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCheckpointState`](crate::Error::InvalidCheckpointState) while a job writes the checkpoint (InProgress) and once it
    /// is committed (Checkpointed: the lineage is gone).
    pub fn cancel_checkpoint(&self) -> Result<()> {
        self.node.cancel_mark()
    }

    /// Where the RDD is in the checkpoint state machine.
    pub fn checkpoint_state(&self) -> CheckpointState {
        self.node.checkpoint.state()
    }

    /// True once a checkpoint (reliable or local) has been committed.
    pub fn is_checkpointed(&self) -> bool {
        self.checkpoint_state() == CheckpointState::Checkpointed
    }

    /// True when the RDD is marked for, or truncated by, a local checkpoint.
    pub fn is_local_checkpoint(&self) -> bool {
        self.node.checkpoint.is_local()
    }

    /// The `rdd-<id>-<write id>` folder of a committed reliable checkpoint.
    pub fn checkpoint_path(&self) -> Option<PathBuf> {
        self.node.checkpoint.path()
    }

    // ------------------------------------------------------------------------------------
    // Lineage
    // ------------------------------------------------------------------------------------

    /// The longest path from this RDD to a source or checkpoint (0 for a source).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..4, 1).map(|x| x).filter(|_| true);
    /// assert_eq!(rdd.lineage_depth(), 2);
    /// ```
    pub fn lineage_depth(&self) -> usize {
        crate::lineage::depth(self.node.clone())
    }

    /// The lineage as text, in the shape of Spark's `toDebugString`: one line per RDD,
    /// `(partitions) Kind[id] at op at file:line [storage]`, indented at shuffle boundaries,
    /// with the checkpoint state where it is not `Initialized`.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let (file, line) = (file!(), line!() + 1);
    /// let sums = ctx.range(0..4, 2).map(|x| (x % 2, x)).reduce_by_key(|a, b| a + b);
    /// let at = format!("{file}:{line}");
    /// let expected = [
    ///     format!("(2) ShuffledRdd[2] at reduce_by_key at {at} []"),
    ///     format!(" +-(2) MapPartitionsRdd[1] at map at {at} []"),
    ///     format!("    |  RangeRdd[0] at range at {at} []"),
    /// ];
    /// assert_eq!(sums.to_debug_string(), expected.join("\n"));
    /// ```
    pub fn to_debug_string(&self) -> String {
        crate::lineage::debug_string(self.node.clone())
    }

    /// The lineage as a Graphviz `digraph`: shuffle edges dashed, nodes coloured by
    /// checkpoint state, cached nodes bold.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let sums = ctx.range(0..4, 2).map(|x| (x % 2, x)).reduce_by_key(|a, b| a + b);
    /// let dot = sums.to_dot();
    /// assert!(dot.starts_with("digraph lineage {"));
    /// assert_eq!(dot.matches("[label=").count(), 3); // one node per RDD
    /// assert!(dot.contains("n2 -> n1 [style=dashed")); // the shuffle
    /// assert!(dot.contains("n1 -> n0;")); // map over range: narrow
    /// ```
    pub fn to_dot(&self) -> String {
        crate::lineage::dot(self.node.clone())
    }
}
