//! Broadcast variables (Spark's `Broadcast[T]`): a read-only value shared by every task.
//!
//! In one process a closure is already shared by all tasks, so a broadcast is an `Arc` with
//! Spark's life cycle around it: [`Context::broadcast`](crate::Context::broadcast) makes one, tasks read it with
//! [`Broadcast::value`] (or through `Deref`), and [`Broadcast::destroy`] declares that no
//! task may use it again. Using a destroyed broadcast is a bug Spark reports; flintlock
//! does too: `value` panics with the broadcast's id and the line that destroyed it (inside a
//! task that is an [`Error::TaskFailed`](crate::Error::TaskFailed)). The memory is freed
//! when the last handle is dropped.
//!
//! ```
//! # let ctx = flintlock::Context::new();
//! use std::collections::HashMap;
//! let names = ctx.broadcast(HashMap::from([(1, "one"), (2, "two")]));
//! let n = names.clone();
//! let named = ctx.parallelize(vec![1, 2, 1], 2).map(move |k| n[&k].to_string());
//! assert_eq!(named.collect()?, vec!["one", "two", "one"]);
//! # Ok::<(), flintlock::Error>(())
//! ```

use std::fmt;
use std::ops::Deref;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// A read-only value shared by every task; see the [module docs](crate::broadcast).
pub struct Broadcast<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    id: u64,
    value: T,
    destroyed_at: OnceLock<&'static Location<'static>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            inner: self.inner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Broadcast");
        d.field("id", &self.inner.id);
        match self.inner.destroyed_at.get() {
            Some(at) => d.field("destroyed_at", &format_args!("{at}")),
            None => d.field("value", &self.inner.value),
        };
        d.finish()
    }
}

impl<T: Send + Sync + 'static> Broadcast<T> {
    fn new(value: T) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Broadcast {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                value,
                destroyed_at: OnceLock::new(),
            }),
        }
    }

    /// The value.
    ///
    /// # Panics
    /// After [`Broadcast::destroy`], naming the line that destroyed it.
    #[track_caller]
    pub fn value(&self) -> &T {
        if let Some(at) = self.inner.destroyed_at.get() {
            panic!(
                "broadcast {} was used after it was destroyed (at {at})",
                self.inner.id
            );
        }
        &self.inner.value
    }

    /// The value, or `None` after [`Broadcast::destroy`].
    pub fn try_value(&self) -> Option<&T> {
        match self.inner.destroyed_at.get() {
            Some(_) => None,
            None => Some(&self.inner.value),
        }
    }

    /// A number unique in this process.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Declares that no task will use the broadcast again (Spark's `destroy`): every later
    /// [`Broadcast::value`], through any handle, panics. Calling it twice is harmless.
    #[track_caller]
    pub fn destroy(&self) {
        let _ = self.inner.destroyed_at.set(Location::caller());
    }

    /// Whether [`Broadcast::destroy`] was called.
    pub fn is_destroyed(&self) -> bool {
        self.inner.destroyed_at.get().is_some()
    }
}

impl<T: Send + Sync + 'static> Deref for Broadcast<T> {
    type Target = T;
    #[track_caller]
    fn deref(&self) -> &T {
        self.value()
    }
}

impl crate::Context {
    /// Shares `value` read-only with every task (Spark's `sc.broadcast`); see
    /// [`Broadcast`].
    pub fn broadcast<T: Send + Sync + 'static>(&self, value: T) -> Broadcast<T> {
        Broadcast::new(value)
    }
}
