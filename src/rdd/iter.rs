//! Partition iterators: pulled one element at a time, or drained by pushing the elements
//! into a sink, in batches.
//!
//! A partition is computed by a chain of boxed iterators, one per RDD in the stage
//! (`cached links → join → values → flat_map → map-side combine`). Pulled, every element
//! crosses every level through a dynamic `next` call that returns an `Option` of the element,
//! and adapters such as `flat_map` re-check their state on every call: in PageRank that
//! plumbing was a quarter of the loop. Drained, the source runs a plain loop and pushes
//! batches of [`BATCH`] elements up through one closure per level; each transformation runs
//! a tight loop over a batch (`flat_map` runs its inner iterators with `for_each`), and so
//! does the consumer (a shuffle's map-side combine, `count`, `collect`, a cached block, a
//! join's build side). Tight loops matter twice: no call overhead per element, and a
//! processor that can overlap the cache misses of consecutive hash-table upserts. Rust's own
//! iterators make the same choice between `next` and `fold`.
//!
//! Consumers that take a whole partition drain it; those that need one element at a time
//! (`zip`, `take`, the iterators given to `map_partitions` closures) pull. All ways give the
//! same elements in the same order; the unit tests below and
//! `tests/transformations.rs` check every adapter each way.

use std::sync::Arc;

mod sealed {
    pub trait Sealed {}
}

/// Lets the crate's other partition iterators (shuffle readers, checkpoint tees and readers)
/// implement the sealed trait.
pub(crate) use sealed::Sealed;

/// One partition's elements as a boxed [`PartitionIterator`] (an `Iterator` that can also be
/// drained in batches), as handed to `map_partitions` closures.
pub type BoxedPartitionIter<T> = Box<dyn PartitionIterator<T>>;

/// The name of [`BoxedPartitionIter`] in 0.1, too easily confused with the trait
/// [`PartitionIterator`].
#[deprecated(since = "0.2.0", note = "renamed to `BoxedPartitionIter`")]
pub type PartitionIter<T> = BoxedPartitionIter<T>;

/// An iterator over one partition's elements that can also be drained: see
/// [`PartitionIterator::drain_into`]. [`BoxedPartitionIter`] is the boxed form every
/// `map_partitions` closure receives; as an `Iterator` it is used like any other.
///
/// The trait is sealed: the engine provides the implementations. Each implements
/// `drain_batches` (the fast path); `drain_into` is derived from it unless a type has a
/// better way.
pub trait PartitionIterator<T>: Iterator<Item = T> + sealed::Sealed {
    /// Pushes every remaining element into `sink`, in order: the elements `next` would have
    /// yielded, without one dynamic `next` call per element and per transformation.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// use flintlock::PartitionIterator;
    /// let sums = ctx.range(0..10, 2).map(|x| x * 2).map_partitions(|it| {
    ///     let mut sum = 0;
    ///     it.drain_into(&mut |x| sum += x);
    ///     std::iter::once(sum)
    /// });
    /// assert_eq!(sums.collect()?, vec![20, 70]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    fn drain_into(self: Box<Self>, sink: &mut dyn FnMut(T)) {
        each_of_batches(self, sink);
    }

    /// Pushes the remaining elements into `sink` in order, in batches of up to
    /// [`BATCH`]: the engine's fastest path. `sink` takes the elements out of each batch
    /// (any it leaves are dropped).
    ///
    /// A call per element, even a well-predicted one, leaves a dozen instructions of call
    /// overhead between two elements; in a loop whose every element misses the cache (a
    /// hash-table upsert into a table larger than the cache) that is what keeps the
    /// processor from overlapping the misses of consecutive elements. With batches, every
    /// transformation runs a tight loop over a batch, and so does the consumer.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// use flintlock::PartitionIterator;
    /// let maxima = ctx.range(0..1000, 2).map_partitions(|it| {
    ///     let mut max = 0;
    ///     it.drain_batches(&mut |batch| max = batch.drain(..).fold(max, u64::max));
    ///     std::iter::once(max)
    /// });
    /// assert_eq!(maxima.collect()?, vec![499, 999]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>));

    /// The engine's own fast path for consumers that handle one record at a time: like
    /// [`PartitionIterator::drain_batches`], but a source that shares its data (a cached
    /// block, a parallel collection) lends slices of it instead of copying each batch, and
    /// the consumer clones each record as it uses it. On a shuffle's map side that copy
    /// was a third of `reduce_by_key`'s time. Not part of the public API.
    #[doc(hidden)]
    fn drain_chunks(self: Box<Self>, sink: &mut dyn FnMut(Chunk<'_, T>)) {
        self.drain_batches(&mut |b| sink(Chunk::Owned(b)));
    }
}

/// A batch handed on by [`PartitionIterator::drain_chunks`]: records to take, or a slice of
/// a source's shared records to clone. Not part of the public API.
#[doc(hidden)]
#[derive(Debug)]
pub enum Chunk<'a, T> {
    /// Records the consumer takes out.
    Owned(&'a mut Vec<T>),
    /// Records the consumer clones.
    Shared(&'a [T]),
}

impl<'a, T: Clone> Chunk<'a, T> {
    /// The chunk's records, shared ones cloned as they are taken.
    #[inline]
    pub(crate) fn records(self) -> ChunkRecords<'a, T> {
        match self {
            Chunk::Owned(b) => ChunkRecords::Owned(b.drain(..)),
            Chunk::Shared(s) => ChunkRecords::Shared(s.iter()),
        }
    }
}

/// The records of a [`Chunk`], as an iterator. Consumers loop over it inside their own
/// per-chunk closure: a per-record closure called from here was not inlined (it is large)
/// and cost a call per record, 1.6x slower.
pub(crate) enum ChunkRecords<'a, T> {
    Owned(std::vec::Drain<'a, T>),
    Shared(std::slice::Iter<'a, T>),
}

impl<T: Clone> Iterator for ChunkRecords<'_, T> {
    type Item = T;
    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        match self {
            ChunkRecords::Owned(d) => d.next(),
            ChunkRecords::Shared(s) => s.next().cloned(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChunkRecords::Owned(d) => d.size_hint(),
            ChunkRecords::Shared(s) => s.size_hint(),
        }
    }
}

impl<T: Clone> ExactSizeIterator for ChunkRecords<'_, T> {}

/// Elements per batch of [`PartitionIterator::drain_batches`].
pub const BATCH: usize = 64;

/// Collects an adapter's output into batches of [`BATCH`] for a batch sink.
pub(crate) struct Batcher<'a, U> {
    out: Vec<U>,
    sink: &'a mut dyn FnMut(&mut Vec<U>),
}

impl<'a, U> Batcher<'a, U> {
    pub(crate) fn new(sink: &'a mut dyn FnMut(&mut Vec<U>)) -> Self {
        Batcher {
            out: Vec::with_capacity(BATCH),
            sink,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, u: U) {
        self.out.push(u);
        if self.out.len() == BATCH {
            (self.sink)(&mut self.out);
            self.out.clear();
        }
    }

    pub(crate) fn finish(mut self) {
        if !self.out.is_empty() {
            (self.sink)(&mut self.out);
        }
    }
}

/// `drain_into` for iterators whose fast path is `drain_batches`.
pub(crate) fn each_of_batches<T, I: PartitionIterator<T> + ?Sized>(
    it: Box<I>,
    sink: &mut dyn FnMut(T),
) {
    it.drain_batches(&mut |b| b.drain(..).for_each(&mut *sink));
}

/// Boxes any iterator as a [`BoxedPartitionIter`]; draining it runs the iterator's own
/// `for_each`.
pub(crate) fn boxed<I: Iterator + 'static>(iter: I) -> BoxedPartitionIter<I::Item> {
    Box::new(Pull(iter))
}

/// Drains a partition into a vector, reserving its exact or estimated size first.
pub(crate) fn drain_to_vec<T>(it: BoxedPartitionIter<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(it.size_hint().0);
    it.drain_batches(&mut |b| out.append(b));
    out
}

/// Counts a partition's elements by draining it; records a source shares (a cached block)
/// are counted without being cloned.
pub(crate) fn drain_count<T>(it: BoxedPartitionIter<T>) -> u64 {
    let mut n = 0u64;
    it.drain_chunks(&mut |c| {
        n += match c {
            Chunk::Owned(b) => {
                let len = b.len();
                b.clear();
                len
            }
            Chunk::Shared(s) => s.len(),
        } as u64;
    });
    n
}

/// Folds a partition by draining it.
pub(crate) fn drain_fold<T, A>(it: BoxedPartitionIter<T>, init: A, f: impl Fn(A, T) -> A) -> A {
    let mut acc = Some(init);
    it.drain_batches(&mut |b| {
        // `acc` is only `None` between the take and the put back of this statement.
        let a = acc.take().expect("fold accumulator present");
        acc = Some(b.drain(..).fold(a, &f));
    });
    acc.expect("fold accumulator present")
}

/// A stage input that stops its task, by unwinding, once the task's job is cancelled: checked
/// before each batch it hands on (and every [`BATCH`] pulled elements).
pub(crate) struct CancelCheck<T> {
    inner: BoxedPartitionIter<T>,
    job: Arc<crate::scheduler::ActiveJob>,
    countdown: usize,
}

impl<T: 'static> CancelCheck<T> {
    pub(crate) fn boxed(
        inner: BoxedPartitionIter<T>,
        job: Arc<crate::scheduler::ActiveJob>,
    ) -> BoxedPartitionIter<T> {
        Box::new(CancelCheck {
            inner,
            job,
            countdown: 0,
        })
    }
}

impl<T> sealed::Sealed for CancelCheck<T> {}

impl<T> Iterator for CancelCheck<T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.countdown == 0 {
            self.job.check_unwind();
            self.countdown = BATCH;
        }
        self.countdown -= 1;
        self.inner.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<T> PartitionIterator<T> for CancelCheck<T> {
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        let CancelCheck { inner, job, .. } = *self;
        job.check_unwind();
        inner.drain_batches(&mut |b| {
            job.check_unwind();
            sink(b)
        });
    }

    fn drain_chunks(self: Box<Self>, sink: &mut dyn FnMut(Chunk<'_, T>)) {
        let CancelCheck { inner, job, .. } = *self;
        job.check_unwind();
        inner.drain_chunks(&mut |c| {
            job.check_unwind();
            sink(c)
        });
    }
}

/// Any iterator, as a partition iterator.
struct Pull<I>(I);

impl<I> sealed::Sealed for Pull<I> {}

impl<I: Iterator> Iterator for Pull<I> {
    type Item = I::Item;
    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<I: Iterator> PartitionIterator<I::Item> for Pull<I> {
    fn drain_into(self: Box<Self>, sink: &mut dyn FnMut(I::Item)) {
        self.0.for_each(sink);
    }

    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<I::Item>)) {
        let mut batcher = Batcher::new(sink);
        self.0.for_each(|x| batcher.push(x));
        batcher.finish();
    }
}

/// `map` (and `map_values`, `keys`, `values`, `key_by`).
pub(crate) struct Mapped<T, F> {
    parent: BoxedPartitionIter<T>,
    f: F,
}

impl<T, F> Mapped<T, F> {
    pub(crate) fn boxed<U>(parent: BoxedPartitionIter<T>, f: F) -> BoxedPartitionIter<U>
    where
        T: 'static,
        F: FnMut(T) -> U + 'static,
    {
        Box::new(Mapped { parent, f })
    }
}

impl<T, F> sealed::Sealed for Mapped<T, F> {}

impl<T, U, F: FnMut(T) -> U> Iterator for Mapped<T, F> {
    type Item = U;
    #[inline]
    fn next(&mut self) -> Option<U> {
        self.parent.next().map(&mut self.f)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.parent.size_hint()
    }
}

impl<T, U, F: FnMut(T) -> U> PartitionIterator<U> for Mapped<T, F> {
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<U>)) {
        let Mapped { parent, mut f } = *self;
        let mut out = Vec::with_capacity(BATCH);
        parent.drain_batches(&mut |b| {
            out.extend(b.drain(..).map(&mut f));
            sink(&mut out);
            out.clear();
        });
    }
}

/// `filter`.
pub(crate) struct Filtered<T, F> {
    parent: BoxedPartitionIter<T>,
    f: F,
}

impl<T, F> Filtered<T, F> {
    pub(crate) fn boxed(parent: BoxedPartitionIter<T>, f: F) -> BoxedPartitionIter<T>
    where
        T: 'static,
        F: FnMut(&T) -> bool + 'static,
    {
        Box::new(Filtered { parent, f })
    }
}

impl<T, F> sealed::Sealed for Filtered<T, F> {}

impl<T, F: FnMut(&T) -> bool> Iterator for Filtered<T, F> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        let f = &mut self.f;
        self.parent.by_ref().find(|x| f(x))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, self.parent.size_hint().1)
    }
}

impl<T, F: FnMut(&T) -> bool> PartitionIterator<T> for Filtered<T, F> {
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        let Filtered { parent, mut f } = *self;
        parent.drain_batches(&mut |b| {
            b.retain(|x| f(x));
            if !b.is_empty() {
                sink(b);
            }
        });
    }
}

/// `flat_map` (and `flat_map_values`): `f` returns the inner iterator of one element.
pub(crate) struct FlatMapped<T, F, I> {
    parent: BoxedPartitionIter<T>,
    f: F,
    front: Option<I>,
}

impl<T, F, I> FlatMapped<T, F, I> {
    pub(crate) fn boxed(parent: BoxedPartitionIter<T>, f: F) -> BoxedPartitionIter<I::Item>
    where
        T: 'static,
        F: FnMut(T) -> I + 'static,
        I: Iterator + 'static,
    {
        Box::new(FlatMapped {
            parent,
            f,
            front: None,
        })
    }
}

impl<T, F, I> sealed::Sealed for FlatMapped<T, F, I> {}

impl<T, F: FnMut(T) -> I, I: Iterator> Iterator for FlatMapped<T, F, I> {
    type Item = I::Item;
    #[inline]
    fn next(&mut self) -> Option<I::Item> {
        loop {
            if let Some(front) = &mut self.front {
                if let Some(x) = front.next() {
                    return Some(x);
                }
                self.front = None;
            }
            let x = self.parent.next()?;
            self.front = Some((self.f)(x));
        }
    }
}

impl<T, F: FnMut(T) -> I, I: Iterator> PartitionIterator<I::Item> for FlatMapped<T, F, I> {
    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<I::Item>)) {
        let FlatMapped {
            parent,
            mut f,
            front,
        } = *self;
        let mut batcher = Batcher::new(sink);
        if let Some(front) = front {
            front.for_each(|u| batcher.push(u));
        }
        parent.drain_batches(&mut |b| {
            for x in b.drain(..) {
                f(x).for_each(|u| batcher.push(u));
            }
        });
        batcher.finish();
    }
}

/// Several partitions one after the other (`coalesce`).
pub(crate) struct Concat<T> {
    parts: std::collections::VecDeque<BoxedPartitionIter<T>>,
}

impl<T: 'static> Concat<T> {
    pub(crate) fn boxed(parts: Vec<BoxedPartitionIter<T>>) -> BoxedPartitionIter<T> {
        Box::new(Concat {
            parts: parts.into(),
        })
    }
}

impl<T> sealed::Sealed for Concat<T> {}

impl<T> Iterator for Concat<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        loop {
            let x = self.parts.front_mut()?.next();
            if x.is_some() {
                return x;
            }
            self.parts.pop_front();
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.parts.iter().fold((0, Some(0)), |(lo, hi), p| {
            let (l, h) = p.size_hint();
            (
                lo.saturating_add(l),
                hi.zip(h).and_then(|(a, b)| a.checked_add(b)),
            )
        })
    }
}

impl<T> PartitionIterator<T> for Concat<T> {
    fn drain_into(self: Box<Self>, sink: &mut dyn FnMut(T)) {
        for p in self.parts {
            p.drain_into(sink);
        }
    }

    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        for p in self.parts {
            p.drain_batches(sink);
        }
    }
}

/// Clones the elements of a shared vector (a cached block, a parallelized collection).
pub(crate) struct ArcVecIter<T> {
    data: Arc<Vec<T>>,
    pos: usize,
    end: usize,
}

impl<T> ArcVecIter<T> {
    pub(crate) fn new(data: Arc<Vec<T>>) -> Self {
        let end = data.len();
        ArcVecIter { data, pos: 0, end }
    }

    pub(crate) fn slice(data: Arc<Vec<T>>, start: usize, end: usize) -> Self {
        ArcVecIter {
            data,
            pos: start,
            end,
        }
    }
}

impl<T> sealed::Sealed for ArcVecIter<T> {}

impl<T: Clone> Iterator for ArcVecIter<T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.pos < self.end {
            let x = self.data[self.pos].clone();
            self.pos += 1;
            Some(x)
        } else {
            None
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.pos;
        (n, Some(n))
    }
}

impl<T: Clone> PartitionIterator<T> for ArcVecIter<T> {
    fn drain_into(self: Box<Self>, sink: &mut dyn FnMut(T)) {
        for x in &self.data[self.pos..self.end] {
            sink(x.clone());
        }
    }

    fn drain_batches(self: Box<Self>, sink: &mut dyn FnMut(&mut Vec<T>)) {
        drain_slice_batches(&self.data[self.pos..self.end], sink);
    }

    fn drain_chunks(self: Box<Self>, sink: &mut dyn FnMut(Chunk<'_, T>)) {
        for chunk in self.data[self.pos..self.end].chunks(BATCH) {
            sink(Chunk::Shared(chunk));
        }
    }
}

/// Batches of clones of a slice's elements.
pub(crate) fn drain_slice_batches<T: Clone>(data: &[T], sink: &mut dyn FnMut(&mut Vec<T>)) {
    let mut batch = Vec::with_capacity(BATCH.min(data.len()));
    for chunk in data.chunks(BATCH) {
        batch.extend_from_slice(chunk);
        sink(&mut batch);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(n: u64) -> BoxedPartitionIter<u64> {
        Box::new(ArcVecIter::new(Arc::new((0..n).collect())))
    }

    fn pulled<T>(it: BoxedPartitionIter<T>) -> Vec<T> {
        it.collect()
    }

    #[test]
    fn every_adapter_drains_what_it_pulls() {
        type Chain = fn() -> BoxedPartitionIter<u64>;
        let chains: [Chain; 7] = [
            || source(50),
            || source(3 * BATCH as u64 + 5),
            || Filtered::boxed(source(5 * BATCH as u64), |x| x % 7 == 0),
            || Mapped::boxed(source(50), |x| x * 3),
            || Filtered::boxed(source(50), |x| x % 3 != 1),
            || FlatMapped::boxed(source(20), |x| 0..x % 4),
            || {
                let f = Filtered::boxed(source(40), |x| x % 2 == 0);
                let m = Mapped::boxed(f, |x| x + 1);
                FlatMapped::boxed(boxed(m), |x| std::iter::repeat_n(x, 2))
            },
        ];
        for chain in chains {
            let mut one_by_one = Vec::new();
            chain().drain_into(&mut |x| one_by_one.push(x));
            assert_eq!(drain_to_vec(chain()), pulled(chain()), "in batches");
            assert_eq!(one_by_one, pulled(chain()), "one by one");
            let mut chunked = Vec::new();
            chain().drain_chunks(&mut |c| chunked.extend(c.records()));
            assert_eq!(chunked, pulled(chain()), "in chunks, shared or owned");
        }
    }

    #[test]
    fn a_shared_source_lends_its_records_and_the_rest_after_a_partial_pull() {
        let mut it = source(3 * BATCH as u64 + 7);
        let first: Vec<u64> = it.by_ref().take(5).collect();
        let (mut shared, mut owned) = (0, 0);
        let mut rest = Vec::new();
        it.drain_chunks(&mut |c| {
            match &c {
                Chunk::Shared(_) => shared += 1,
                Chunk::Owned(_) => owned += 1,
            }
            rest.extend(c.records());
        });
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        assert_eq!(rest, (5..3 * BATCH as u64 + 7).collect::<Vec<_>>());
        assert_eq!(
            (shared, owned),
            (4, 0),
            "no batch copy from a shared source"
        );
    }

    #[test]
    fn draining_after_a_partial_pull_yields_the_rest() {
        let mut it = FlatMapped::boxed(source(10), |x| vec![x, x + 100].into_iter());
        let first: Vec<u64> = it.by_ref().take(3).collect();
        assert_eq!(first, vec![0, 100, 1]);
        let rest = drain_to_vec(it);
        assert_eq!(rest[0], 101);
        assert_eq!(rest.len(), 17);
    }

    #[test]
    fn fold_and_count_drain_every_element() {
        assert_eq!(drain_count(source(1000)), 1000);
        assert_eq!(drain_fold(source(100), 0, |a, x| a + x), 4950);
    }
}
