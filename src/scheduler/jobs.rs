//! The jobs running on a context, their groups, and cancellation (Spark's
//! `setJobGroup`/`cancelJobGroup`/`cancelAllJobs`).
//!
//! A cancelled job stops at the next check: before each task starts, at each batch its
//! tasks read from a stage input (a source, a shuffle, a cached block, a checkpoint), and
//! when a stage ends. A task stopped mid-partition unwinds like a panicking one (so its
//! half-written checkpoint part and its accumulator updates are dropped), but silently: no
//! panic message is printed and the job returns [`Error::Cancelled`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::error::Error;

/// One running job, shared with its tasks.
#[derive(Debug)]
pub(crate) struct ActiveJob {
    pub(crate) job_id: usize,
    group: Option<String>,
    cancelled: AtomicBool,
    reason: Mutex<Option<String>>,
    /// The job whose task started this one (a nested action): cancelling it cancels this.
    parent: Option<Arc<ActiveJob>>,
}

/// The payload a cancelled task unwinds with; `run_task` turns it into `Error::Cancelled`.
#[derive(Debug)]
pub(crate) struct CancelledUnwind;

impl ActiveJob {
    /// A job that is never registered, so never cancelled (driver-side reads outside jobs).
    pub(crate) fn detached() -> Arc<ActiveJob> {
        ActiveJob::new(usize::MAX, None, None)
    }

    fn new(job_id: usize, group: Option<String>, parent: Option<Arc<ActiveJob>>) -> Arc<Self> {
        Arc::new(ActiveJob {
            job_id,
            group,
            cancelled: AtomicBool::new(false),
            reason: Mutex::new(None),
            parent,
        })
    }

    fn cancel(&self, reason: String) -> bool {
        let mut r = self.reason.lock();
        if r.is_none() {
            *r = Some(reason);
        }
        !self.cancelled.swap(true, Ordering::AcqRel)
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
            || self.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// Unwinds the current task if the job was cancelled.
    #[inline]
    pub(crate) fn check_unwind(&self) {
        if self.is_cancelled() {
            std::panic::resume_unwind(Box::new(CancelledUnwind));
        }
    }

    /// `Err(Cancelled)` if the job was cancelled.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    /// The error a cancelled job returns.
    pub(crate) fn error(&self) -> Error {
        let own = self.reason.lock().clone();
        let reason = match (own, &self.parent) {
            (Some(r), _) => r,
            (None, Some(parent)) if parent.is_cancelled() => match parent.error() {
                Error::Cancelled { job_id, reason, .. } => {
                    format!("{reason} (its job {job_id} started this one from a task)")
                }
                other => other.to_string(),
            },
            (None, _) => "cancelled".to_string(),
        };
        Error::Cancelled {
            job_id: self.job_id,
            group: self.group.clone(),
            reason,
        }
    }
}

/// The running jobs of one context.
#[derive(Debug, Default)]
pub(crate) struct JobRegistry {
    jobs: Mutex<FxHashMap<usize, Arc<ActiveJob>>>,
}

/// Removes a job from its registry when the job ends, however it ends.
pub(crate) struct Registered<'a> {
    registry: &'a JobRegistry,
    pub(crate) job: Arc<ActiveJob>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.jobs.lock().remove(&self.job.job_id);
    }
}

impl JobRegistry {
    /// Registers job `job_id`, in the calling thread's job group of context `serial`; a job
    /// started inside a task of this context is that task's job's child, in its group.
    pub(crate) fn register(&self, serial: u64, job_id: usize) -> Registered<'_> {
        let parent = current_task_job(serial);
        let group = current_group(serial).or_else(|| parent.as_ref().and_then(|p| p.group.clone()));
        let job = ActiveJob::new(job_id, group, parent);
        self.jobs.lock().insert(job_id, job.clone());
        Registered {
            registry: self,
            job,
        }
    }

    /// Cancels the running jobs `pick` selects; returns how many were newly cancelled.
    pub(crate) fn cancel_where(
        &self,
        reason: &str,
        mut pick: impl FnMut(&ActiveJob) -> bool,
    ) -> usize {
        let jobs: Vec<Arc<ActiveJob>> = self
            .jobs
            .lock()
            .values()
            .filter(|j| pick(j))
            .cloned()
            .collect();
        jobs.iter().filter(|j| j.cancel(reason.to_string())).count()
    }

    pub(crate) fn cancel_group(&self, group: &str) -> usize {
        self.cancel_where(&format!("job group {group:?} was cancelled"), |j| {
            j.group.as_deref() == Some(group)
        })
    }

    /// The ids of the running jobs, in order.
    pub(crate) fn running(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self.jobs.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

thread_local! {
    /// The job group of each context (by serial) on this thread.
    static GROUPS: RefCell<Vec<(u64, String)>> = const { RefCell::new(Vec::new()) };
    /// The jobs whose tasks run on this thread, innermost last (a thread blocked in a nested
    /// rayon call may run another task), with their context's serial.
    static TASK_JOBS: RefCell<Vec<(u64, Arc<ActiveJob>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `body` with `job` recorded as the job of the task running on this thread.
pub(crate) fn in_task_of<R>(serial: u64, job: &Arc<ActiveJob>, body: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            TASK_JOBS.with(|t| t.borrow_mut().pop());
        }
    }
    TASK_JOBS.with(|t| t.borrow_mut().push((serial, job.clone())));
    let _pop = Pop;
    body()
}

fn current_task_job(serial: u64) -> Option<Arc<ActiveJob>> {
    TASK_JOBS.with(|t| {
        t.borrow()
            .last()
            .filter(|(s, _)| *s == serial)
            .map(|(_, j)| j.clone())
    })
}

pub(crate) fn set_group(serial: u64, group: Option<String>) {
    GROUPS.with(|g| {
        let mut g = g.borrow_mut();
        g.retain(|(s, _)| *s != serial);
        if let Some(group) = group {
            g.push((serial, group));
        }
    });
}

pub(crate) fn current_group(serial: u64) -> Option<String> {
    GROUPS.with(|g| {
        g.borrow()
            .iter()
            .find(|(s, _)| *s == serial)
            .map(|(_, n)| n.clone())
    })
}

impl crate::Context {
    /// Puts the jobs this thread starts on this context from now on in job group `group`
    /// (Spark's `setJobGroup`), until [`Context::clear_job_group`](crate::Context::clear_job_group) or another call. Other
    /// threads, and the threads of this context's pool, keep their own group.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flintlock::Error;
    /// let ctx = flintlock::Context::builder().threads(2).build()?;
    /// let worker = {
    ///     let ctx = ctx.clone();
    ///     std::thread::spawn(move || {
    ///         ctx.set_job_group("nightly");
    ///         // A job that would run for a long time.
    ///         ctx.range(0..u64::MAX, 2).map(|x| x.wrapping_mul(31)).count()
    ///     })
    /// };
    /// while ctx.running_jobs().is_empty() {
    ///     std::thread::sleep(Duration::from_millis(1));
    /// }
    /// assert_eq!(ctx.cancel_job_group("nightly"), 1);
    /// let result = worker.join().unwrap();
    /// assert!(matches!(result, Err(Error::Cancelled { ref group, .. }) if group.as_deref() == Some("nightly")));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    pub fn set_job_group(&self, group: impl Into<String>) {
        set_group(self.inner.serial, Some(group.into()));
    }

    /// Takes this thread's later jobs out of their job group.
    pub fn clear_job_group(&self) {
        set_group(self.inner.serial, None);
    }

    /// The job group this thread's jobs run in, if any.
    pub fn job_group(&self) -> Option<String> {
        current_group(self.inner.serial)
    }

    /// Cancels the running jobs of job group `group` (Spark's `cancelJobGroup`) and returns
    /// how many were cancelled. Their tasks stop at the next batch they read, tasks not yet
    /// started do not start, and each job's action returns [`Error::Cancelled`]. Jobs the
    /// group starts later are not affected.
    pub fn cancel_job_group(&self, group: &str) -> usize {
        self.inner.jobs.cancel_group(group)
    }

    /// Cancels every running job of this context (Spark's `cancelAllJobs`); returns how many.
    pub fn cancel_all_jobs(&self) -> usize {
        self.inner
            .jobs
            .cancel_where("all jobs were cancelled", |_| true)
    }

    /// Cancels job `job_id` (the id in [`Event::JobStarted`](crate::Event::JobStarted)) if it
    /// is running; returns whether this call cancelled it (false when it is not running or
    /// was cancelled already).
    pub fn cancel_job(&self, job_id: usize) -> bool {
        self.inner
            .jobs
            .cancel_where(&format!("job {job_id} was cancelled"), |j| {
                j.job_id == job_id
            })
            == 1
    }

    /// The ids of the jobs running now, in order.
    pub fn running_jobs(&self) -> Vec<usize> {
        self.inner.jobs.running()
    }
}
