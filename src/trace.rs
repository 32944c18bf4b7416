//! `tracing` output: spans for jobs, stages and tasks (opened by the scheduler) and one
//! event for each listener [`Event`], so that a program with a `tracing` subscriber sees
//! what a [`crate::Listener`] sees, nested where it happened: a checkpoint part written
//! inside the task that wrote it, a commit inside its job.
//!
//! Everything is at `debug` level (the lineage snapshot at `trace`), except what a user
//! should hear about without asking: a reopened checkpoint whose partitioner was dropped
//! and a damaged checkpoint passed over while resuming, at `warn`. Without a subscriber (or
//! with these levels filtered out) a callsite costs one relaxed load: `tracing` caches each
//! callsite's interest. Targets are module paths below `flintlock` (the spans
//! `flintlock::scheduler`, the listener events `flintlock::trace`, shuffle sizes and
//! checkpoint removals their own modules'), so `RUST_LOG=flintlock=debug` selects all of it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::listener::Event;

/// Whether the subscriber wants [`event`]'s events at `level` (`TRACE`, or `DEBUG` for any
/// other level): work done only to produce them (task events without a listener, the
/// lineage snapshot) is skipped otherwise. Asked here so that the answer is for the
/// events' own target.
pub(crate) fn wanted(level: tracing::Level) -> bool {
    match level {
        tracing::Level::TRACE => tracing::enabled!(tracing::Level::TRACE),
        _ => tracing::enabled!(tracing::Level::DEBUG),
    }
}

/// [`event`], with a panicking subscriber contained as a panicking listener is: the action
/// goes on (its outcome does not depend on what observes it), and the first panic is
/// reported on stderr.
pub(crate) fn guarded(e: &Event) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| event(e)))
        && !REPORTED.swap(true, Ordering::AcqRel)
    {
        eprintln!(
            "flintlock: the tracing subscriber panicked on {e:?}: {} (the event was \
                 dropped; later panics of the subscriber are not reported)",
            crate::scheduler::panic_message(payload.as_ref())
        );
    }
}

/// Emits `event` as a `tracing` event in the current span (through [`guarded`]).
fn event(event: &Event) {
    use tracing::{debug, trace, warn};
    match event {
        Event::JobStarted {
            job_id,
            rdd_id,
            partitions,
        } => debug!(job_id, rdd_id, partitions, "job started"),
        Event::JobLineage { job_id, nodes } => {
            trace!(job_id, rdds = nodes.len(), lineage = ?nodes, "job lineage")
        }
        Event::JobFailed { job_id, error } => debug!(job_id, %error, "job failed"),
        Event::JobEnded {
            job_id,
            succeeded,
            elapsed,
        } => debug!(job_id, succeeded, ?elapsed, "job ended"),
        Event::StageStarted {
            job_id,
            stage_id,
            kind,
            rdd_id,
            shuffle_id,
            tasks,
        } => debug!(
            job_id,
            stage_id,
            ?kind,
            rdd_id,
            ?shuffle_id,
            tasks,
            "stage started"
        ),
        Event::StageEnded {
            job_id,
            stage_id,
            succeeded,
            elapsed,
        } => debug!(job_id, stage_id, succeeded, ?elapsed, "stage ended"),
        Event::TaskStarted {
            stage_id,
            partition,
        } => debug!(stage_id, partition, "task started"),
        Event::TaskFailed {
            stage_id,
            partition,
            error,
        } => debug!(stage_id, partition, %error, "task failed"),
        Event::TaskEnded {
            stage_id,
            partition,
            succeeded,
            elapsed,
        } => debug!(stage_id, partition, succeeded, ?elapsed, "task ended"),
        Event::CheckpointStateChanged { rdd_id, from, to } => {
            debug!(rdd_id, %from, %to, "checkpoint state changed")
        }
        Event::CheckpointPartitionWritten {
            rdd_id,
            partition,
            records,
            bytes,
        } => debug!(rdd_id, partition, records, bytes, "checkpoint part written"),
        Event::CheckpointCommitted {
            rdd_id,
            path,
            bytes,
        } => debug!(rdd_id, path = %path.display(), bytes, "checkpoint committed"),
        Event::LineageTruncated {
            rdd_id,
            checkpoint_rdd_id,
            checkpoint_kind,
            released_parents,
        } => debug!(
            rdd_id,
            checkpoint_rdd_id,
            checkpoint_kind,
            ?released_parents,
            "checkpoint swapped in: lineage truncated"
        ),
        Event::CheckpointRequestIgnored { rdd_id, reason } => {
            debug!(rdd_id, %reason, "checkpoint request ignored")
        }
        Event::CheckpointSkipped {
            series,
            path,
            reason,
        } => warn!(
                        %series,
            path = %path.display(),
            %reason,
            "checkpoint passed over while looking for the newest to resume from"
        ),
        Event::CheckpointReleased {
            series,
            step,
            path,
            deleted_now,
        } => debug!(
                        %series,
            step,
            path = %path.display(),
            deleted_now,
            "checkpoint released from its series"
        ),
        Event::PartitionerDropped { rdd_id, reason } => warn!(
                        rdd_id,
            %reason,
            "partitioner of a reopened checkpoint dropped: by-key operations will shuffle it"
        ),
    }
}
