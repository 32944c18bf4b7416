//! Accumulators (Spark's `AccumulatorV2`): values that tasks add to and the driver reads.
//!
//! An [`Accumulator`] is a cheap handle; clone it into closures. Inside a task, `add` goes
//! to a copy private to that task attempt, started from [`Accumulable::zero`]. When the
//! task **succeeds**, its copy is merged into the accumulator's value; a task that fails
//! (a panic, an I/O error, a cancelled job) contributes nothing, and a retried task
//! ([`ContextBuilder::task_max_failures`](crate::ContextBuilder::task_max_failures))
//! contributes once, from the attempt that succeeded. Merges happen when the task's stage
//! ends, in partition order, so a [`CollectionAccumulator`]'s list is in the same order on
//! every run.
//!
//! This is Spark's rule, and so is its consequence for transformations: an update inside
//! an action (`foreach`, `foreach_partition`) counts exactly once per partition and job,
//! while an update inside a transformation counts once per *computation* of the partition.
//! An RDD used by two actions without [`Rdd::cache`](crate::Rdd::cache) is computed twice
//! and counts twice; `take` computes only the partitions (and the elements of them) it
//! needs; a shuffle's map side that is reused from an earlier job is not computed again.
//!
//! Adds are attributed **by thread**: an `add` made on the thread that runs a task belongs to
//! that task. Outside a task (on the driver, or on a thread a closure spawned itself),
//! `add` applies to the value at once. So a closure that fans out with rayon (`par_iter`
//! inside a `map`) must not add from inside the parallel section: those adds run on other
//! threads and apply at once, or, on a pool thread that is itself running another task,
//! count with that task. Reduce inside the parallel section and add the result once, on
//! the task's thread. A job started inside a task (a nested action) adds to the outer
//! task: its updates count when, and if, the outer task succeeds.
//!
//! ```
//! # let ctx = flintlock::Context::new();
//! let blank = ctx.long_accumulator("blank lines");
//! let lines = ctx.parallelize(vec!["a", "", "b", ""], 2);
//! let seen = blank.clone();
//! lines.foreach(move |l| if l.is_empty() { seen.add(1) })?;
//! assert_eq!(blank.value(), 2);
//! assert_eq!(blank.count(), 2); // number of adds, as Spark's LongAccumulator counts
//! # Ok::<(), flintlock::Error>(())
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// A value that accumulates: what an [`Accumulator`] holds (Spark's `AccumulatorV2`).
///
/// `add` and `merge` must be commutative and associative for the result not to depend on
/// how elements were split into tasks (a list is the exception users accept knowingly:
/// flintlock merges in partition order, so the order is still reproducible).
///
/// ```
/// use flintlock::Accumulable;
/// /// The largest value seen.
/// #[derive(Default)]
/// struct Max(Option<i64>);
/// impl Accumulable for Max {
///     type Input = i64;
///     type Output = Option<i64>;
///     fn zero(&self) -> Self { Max(None) }
///     fn add(&mut self, x: i64) { self.0 = Some(self.0.map_or(x, |m| m.max(x))) }
///     fn merge(&mut self, other: Self) { if let Some(x) = other.0 { self.add(x) } }
///     fn value(&self) -> Option<i64> { self.0 }
/// }
/// # let ctx = flintlock::Context::new();
/// let max = ctx.accumulator("max", Max(None));
/// let m = max.clone();
/// ctx.parallelize(vec![3, -1, 7, 2], 3).foreach(move |x| m.add(x))?;
/// assert_eq!(max.value(), Some(7));
/// # Ok::<(), flintlock::Error>(())
/// ```
pub trait Accumulable: Send + 'static {
    /// What tasks add.
    type Input;
    /// What the driver reads.
    type Output;
    /// An empty value of the same kind (Spark's `copyAndReset`): each task attempt starts
    /// from one.
    fn zero(&self) -> Self
    where
        Self: Sized;
    /// Adds one input.
    fn add(&mut self, input: Self::Input);
    /// Merges the value of a finished task.
    fn merge(&mut self, other: Self)
    where
        Self: Sized;
    /// The current result.
    fn value(&self) -> Self::Output;
}

/// A shared, named accumulator; see the [module docs](crate::accumulator) for when adds
/// count. Made by [`Context::accumulator`](crate::Context::accumulator) and its typed
/// forms.
pub struct Accumulator<A: Accumulable> {
    shared: Arc<Shared<A>>,
}

struct Shared<A> {
    id: u64,
    name: Option<String>,
    value: Mutex<A>,
}

impl<A: Accumulable> Clone for Accumulator<A> {
    fn clone(&self) -> Self {
        Accumulator {
            shared: self.shared.clone(),
        }
    }
}

impl<A: Accumulable> fmt::Debug for Accumulator<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accumulator")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .field("type", &std::any::type_name::<A>())
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl<A: Accumulable> Accumulator<A> {
    pub(crate) fn new(name: Option<String>, initial: A) -> Self {
        Accumulator {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                name,
                value: Mutex::new(initial),
            }),
        }
    }

    /// Adds `input`: to this task attempt's private copy inside a task, to the value itself
    /// elsewhere (see the [module docs](crate::accumulator) on threads).
    pub fn add(&self, input: A::Input) {
        let id = self.shared.id;
        // The task's copy is taken out of its frame while `A::add` runs, so that an `add`
        // that adds to another accumulator finds the frame free.
        let taken = FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let frame = frames.last_mut()?;
            Some(frame.remove(&id))
        });
        let Some(slot) = taken else {
            self.shared.value.lock().add(input);
            return;
        };
        let slot = slot.unwrap_or_else(|| {
            let zero = self.shared.value.lock().zero();
            Box::new(Local {
                shared: self.shared.clone(),
                local: zero,
            })
        });
        // Put back however `A::add` ends (a closure may catch its panic).
        struct PutBack(Option<Box<dyn Pending>>, u64);
        impl Drop for PutBack {
            fn drop(&mut self) {
                if let Some(slot) = self.0.take() {
                    let id = self.1;
                    FRAMES.with(|frames| {
                        if let Some(frame) = frames.borrow_mut().last_mut() {
                            frame.insert(id, slot);
                        }
                    });
                }
            }
        }
        let mut guard = PutBack(Some(slot), id);
        if let Some(slot) = guard.0.as_mut() {
            slot.as_any_mut()
                .downcast_mut::<Local<A>>()
                .expect("accumulator ids are unique")
                .local
                .add(input);
        }
        drop(guard);
    }

    /// The merged value of every successful task so far (and of adds made outside tasks).
    /// Read inside a task, it is the same driver-side value, without that task's own adds.
    pub fn value(&self) -> A::Output {
        self.shared.value.lock().value()
    }

    /// Resets the value to its [`Accumulable::zero`].
    pub fn reset(&self) {
        let mut v = self.shared.value.lock();
        *v = v.zero();
    }

    /// The name given when it was made.
    pub fn name(&self) -> Option<&str> {
        self.shared.name.as_deref()
    }

    /// Runs `f` on the accumulated value itself (for kinds with more to read than
    /// [`Accumulator::value`], such as [`LongAccumulator::count`]).
    pub fn with_value<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        f(&self.shared.value.lock())
    }
}

// ---- typed kinds ----

/// The state of a [`LongAccumulator`]: a wrapping sum of `i64` and the number of adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LongSum {
    /// The sum (wrapping on overflow, as Spark's `Long` does).
    pub sum: i64,
    /// How many values were added.
    pub count: u64,
}

impl Accumulable for LongSum {
    type Input = i64;
    type Output = i64;
    fn zero(&self) -> Self {
        LongSum::default()
    }
    fn add(&mut self, x: i64) {
        self.sum = self.sum.wrapping_add(x);
        self.count += 1;
    }
    fn merge(&mut self, other: Self) {
        self.sum = self.sum.wrapping_add(other.sum);
        self.count += other.count;
    }
    fn value(&self) -> i64 {
        self.sum
    }
}

/// The state of a [`DoubleAccumulator`]: a sum of `f64` and the number of adds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DoubleSum {
    /// The sum.
    pub sum: f64,
    /// How many values were added.
    pub count: u64,
}

impl Accumulable for DoubleSum {
    type Input = f64;
    type Output = f64;
    fn zero(&self) -> Self {
        DoubleSum::default()
    }
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.count += 1;
    }
    fn merge(&mut self, other: Self) {
        self.sum += other.sum;
        self.count += other.count;
    }
    fn value(&self) -> f64 {
        self.sum
    }
}

/// The state of a [`CollectionAccumulator`]: the added elements, tasks in partition order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collected<T>(pub Vec<T>);

impl<T> Default for Collected<T> {
    fn default() -> Self {
        Collected(Vec::new())
    }
}

impl<T: Clone + Send + 'static> Accumulable for Collected<T> {
    type Input = T;
    type Output = Vec<T>;
    fn zero(&self) -> Self {
        Collected(Vec::new())
    }
    fn add(&mut self, x: T) {
        self.0.push(x);
    }
    fn merge(&mut self, mut other: Self) {
        self.0.append(&mut other.0);
    }
    fn value(&self) -> Vec<T> {
        self.0.clone()
    }
}

/// Spark's `LongAccumulator`: `i64` sum, with [`count`](LongAccumulator::count) and
/// [`avg`](LongAccumulator::avg).
pub type LongAccumulator = Accumulator<LongSum>;
/// Spark's `DoubleAccumulator`: `f64` sum, with `count` and `avg`.
pub type DoubleAccumulator = Accumulator<DoubleSum>;
/// Spark's `CollectionAccumulator`: every added element, as a list.
pub type CollectionAccumulator<T> = Accumulator<Collected<T>>;

impl Accumulator<LongSum> {
    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.with_value(|v| v.count)
    }
    /// The sum (same as [`Accumulator::value`]).
    pub fn sum(&self) -> i64 {
        self.with_value(|v| v.sum)
    }
    /// The mean of the added values; NaN when none was added.
    pub fn avg(&self) -> f64 {
        self.with_value(|v| v.sum as f64 / v.count as f64)
    }
}

impl Accumulator<DoubleSum> {
    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.with_value(|v| v.count)
    }
    /// The sum (same as [`Accumulator::value`]).
    pub fn sum(&self) -> f64 {
        self.with_value(|v| v.sum)
    }
    /// The mean of the added values; NaN when none was added.
    pub fn avg(&self) -> f64 {
        self.with_value(|v| v.sum / v.count as f64)
    }
}

// ---- task-side buffering ----

/// A task attempt's private copy of one accumulator.
trait Pending: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn merge_into_shared(self: Box<Self>);
    /// Merges another copy of the same accumulator into this one.
    fn absorb(&mut self, other: Box<dyn Pending>);
}

struct Local<A: Accumulable> {
    shared: Arc<Shared<A>>,
    local: A,
}

impl<A: Accumulable> Pending for Local<A> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn absorb(&mut self, mut other: Box<dyn Pending>) {
        if let Some(o) = other.as_any_mut().downcast_mut::<Local<A>>() {
            let zero = o.local.zero();
            let local = std::mem::replace(&mut o.local, zero);
            self.local.merge(local);
        }
    }
    fn merge_into_shared(self: Box<Self>) {
        let Local { shared, local } = *self;
        shared.value.lock().merge(local);
    }
}

/// One task attempt's copies, by accumulator id.
type Frame = FxHashMap<u64, Box<dyn Pending>>;

/// The updates of one task attempt, merged only if it succeeds.
#[derive(Default)]
pub(crate) struct TaskUpdates(Frame);

impl fmt::Debug for TaskUpdates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskUpdates({} accumulators)", self.0.len())
    }
}

impl TaskUpdates {
    /// Whether the task updated no accumulator.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Merges every update into its accumulator, or, when this thread is itself running a
    /// task (a job started inside a task), into that task's copies: they then count only if
    /// the outer task succeeds.
    pub(crate) fn apply(self) {
        let rest = FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let Some(outer) = frames.last_mut() else {
                return Some(self.0);
            };
            for (id, p) in self.0 {
                match outer.get_mut(&id) {
                    Some(mine) => mine.absorb(p),
                    None => {
                        outer.insert(id, p);
                    }
                }
            }
            None
        });
        // Merged in id order (ids grow with creation): deterministic for users whose
        // accumulators read each other.
        if let Some(frame) = rest {
            let mut all: Vec<(u64, Box<dyn Pending>)> = frame.into_iter().collect();
            all.sort_unstable_by_key(|(id, _)| *id);
            for (_, p) in all {
                p.merge_into_shared();
            }
        }
    }
}

thread_local! {
    /// One frame per task attempt running on this thread: a thread blocked in a nested
    /// rayon call may run another task, whose frame then sits on top until it finishes.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is running a task attempt (a job started now is a job inside a
/// task).
pub(crate) fn in_task() -> bool {
    FRAMES.with(|f| !f.borrow().is_empty())
}

/// Runs `body` as a task attempt: the accumulator adds it makes on this thread are
/// returned, not applied.
pub(crate) fn collect_updates<R>(body: impl FnOnce() -> R) -> (R, TaskUpdates) {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            // Runs during a panic too, so that the frame never outlives its attempt.
            FRAMES.with(|f| f.borrow_mut().pop());
        }
    }
    FRAMES.with(|f| f.borrow_mut().push(Frame::default()));
    let guard = Pop;
    let r = body();
    let frame = FRAMES.with(|f| f.borrow_mut().pop()).unwrap_or_default();
    std::mem::forget(guard);
    (r, TaskUpdates(frame))
}

impl crate::Context {
    /// A new accumulator holding `initial`, named `name` (Spark's `sc.register(acc, name)`).
    /// Any [`Accumulable`] works; [`Context::long_accumulator`](crate::Context::long_accumulator) and its siblings are the
    /// usual kinds.
    pub fn accumulator<A: Accumulable>(
        &self,
        name: impl Into<String>,
        initial: A,
    ) -> Accumulator<A> {
        Accumulator::new(Some(name.into()), initial)
    }

    /// An `i64` sum (Spark's `sc.longAccumulator(name)`).
    pub fn long_accumulator(&self, name: impl Into<String>) -> LongAccumulator {
        self.accumulator(name, LongSum::default())
    }

    /// An `f64` sum (Spark's `sc.doubleAccumulator(name)`).
    pub fn double_accumulator(&self, name: impl Into<String>) -> DoubleAccumulator {
        self.accumulator(name, DoubleSum::default())
    }

    /// A list of every added element, tasks in partition order (Spark's
    /// `sc.collectionAccumulator(name)`).
    pub fn collection_accumulator<T: Clone + Send + 'static>(
        &self,
        name: impl Into<String>,
    ) -> CollectionAccumulator<T> {
        self.accumulator(name, Collected::default())
    }
}
