//! Clocks: when a batch may start. Wall time in production, a manual clock in tests.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

/// The time source of a [`super::StreamingContext`]. Times are durations since the clock's
/// epoch (the UNIX epoch for [`WallClock`]). A batch's time is *logical* (zero + id ×
/// interval, recorded in its plan), so the clock decides only when a batch starts, never
/// what it computes.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Duration;

    /// Blocks until `now() >= t` or `stop` is raised; returns whether `t` was reached.
    fn wait_until(&self, t: Duration, stop: &StopSignal) -> bool;
}

/// Real time: [`SystemTime`] since the UNIX epoch. Waiting sleeps in slices of at most
/// 50 ms, so a stop is seen promptly.
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }

    fn wait_until(&self, t: Duration, stop: &StopSignal) -> bool {
        loop {
            if stop.is_raised() {
                return false;
            }
            let now = self.now();
            if now >= t {
                return true;
            }
            std::thread::sleep((t - now).min(Duration::from_millis(50)));
        }
    }
}

/// A clock that moves only when told to: for tests. Clones share one time.
///
/// [`ManualClock::new`] starts at zero and stands still until [`ManualClock::advance`] or
/// [`ManualClock::set`] moves it, so a test controls exactly when each batch starts.
/// [`ManualClock::auto`] instead jumps to each time it is asked to wait for: a simulated
/// clock under which batches run back to back, as fast as they compute.
///
/// ```
/// use std::time::Duration;
/// use flintlock::streaming::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(clock.now(), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<Duration>,
    moved: Condvar,
    auto: bool,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.inner.now.lock())
            .field("auto", &self.inner.auto)
            .finish()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock at zero that moves only by [`ManualClock::advance`] and [`ManualClock::set`].
    pub fn new() -> ManualClock {
        Self::with(false)
    }

    /// A clock at zero that jumps forward to whatever time it is asked to wait for.
    pub fn auto() -> ManualClock {
        Self::with(true)
    }

    fn with(auto: bool) -> ManualClock {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(Duration::ZERO),
                moved: Condvar::new(),
                auto,
            }),
        }
    }

    /// Moves the clock forward by `d`, waking a waiting stream.
    pub fn advance(&self, d: Duration) {
        let mut now = self.inner.now.lock();
        *now += d;
        self.inner.moved.notify_all();
    }

    /// Sets the clock to `t` (it may go back; a stream never runs a batch twice for it).
    pub fn set(&self, t: Duration) {
        *self.inner.now.lock() = t;
        self.inner.moved.notify_all();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.inner.now.lock()
    }

    fn wait_until(&self, t: Duration, stop: &StopSignal) -> bool {
        let mut now = self.inner.now.lock();
        loop {
            if stop.is_raised() {
                return false;
            }
            if *now >= t {
                return true;
            }
            if self.inner.auto {
                *now = t;
                return true;
            }
            // Polls the stop flag every 20 ms: a stop does not signal this condition variable.
            self.inner
                .moved
                .wait_for(&mut now, Duration::from_millis(20));
        }
    }
}

/// How a stream is asked to stop; shared by a [`super::StopHandle`] and the running loop.
#[derive(Debug, Default)]
pub struct StopSignal {
    raised: AtomicBool,
    graceful: AtomicBool,
}

impl StopSignal {
    /// Raises the signal. `graceful`: the running batch finishes and commits first.
    pub(crate) fn raise(&self, graceful: bool) {
        // A non-graceful request wins over a graceful one.
        if !graceful {
            self.graceful.store(false, Ordering::Release);
        } else if !self.raised.load(Ordering::Acquire) {
            self.graceful.store(true, Ordering::Release);
        }
        self.raised.store(true, Ordering::Release);
    }

    /// Whether a stop was requested.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Whether a raised stop lets the running batch finish.
    pub(crate) fn is_graceful(&self) -> bool {
        self.graceful.load(Ordering::Acquire)
    }

    /// Lowers the signal (a new `run` after a stop).
    pub(crate) fn reset(&self) {
        self.raised.store(false, Ordering::Release);
        self.graceful.store(false, Ordering::Release);
    }
}
