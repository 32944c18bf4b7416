//! Named checkpoint series for restartable jobs (DESIGN §5, issue 10): a restarted job
//! resumes from the newest committed step, keeps the newest `keep`, never deletes what a
//! live RDD reads, refuses another computation's checkpoint, and passes over a damaged one.

use crate::common;

use std::path::Path;

use flintlock::{Context, Error, Event, Partitioner, Rdd};

fn ctx(dir: &Path) -> Context {
    Context::builder()
        .app_id("job")
        .threads(2)
        .checkpoint_dir(dir)
        .build()
        .unwrap()
}

/// One iteration of a toy job: every value plus its step, partitioned by key.
fn iterate(rdd: &Rdd<(u64, u64)>, step: u64) -> Rdd<(u64, u64)> {
    rdd.map_values(move |v| v + step)
        .reduce_by_key(|a, b| a + b)
}

/// Runs steps `first..=last` from `start`, updating the series; returns the last RDD.
fn run(
    cp: &mut flintlock::checkpoint::Checkpointer<(u64, u64)>,
    start: Rdd<(u64, u64)>,
    first: u64,
    last: u64,
) -> Rdd<(u64, u64)> {
    let mut r = start;
    for step in first..=last {
        r = iterate(&r, step);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
    }
    r
}

fn initial(ctx: &Context) -> Rdd<(u64, u64)> {
    ctx.parallelize((0..100u64).map(|k| (k, k)).collect(), 4)
        .partition_by(Partitioner::hash(4))
}

fn sorted(r: &Rdd<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut v = r.collect().unwrap();
    v.sort();
    v
}

#[test]
fn a_restarted_job_resumes_from_the_newest_committed_step_with_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let uncrashed = {
        let other = tempfile::tempdir().unwrap();
        let ctx = ctx(other.path());
        let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(3);
        sorted(&run(&mut cp, initial(&ctx), 1, 10))
    };
    // First run: "crashes" after step 7 (steps 3 and 6 committed).
    {
        let ctx = ctx(dir.path());
        let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(3);
        assert!(cp.latest().unwrap().is_none());
        run(&mut cp, initial(&ctx), 1, 7);
    }
    let ctx = ctx(dir.path());
    let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(3);
    let (step, resumed) = cp.latest().unwrap().expect("a committed step");
    assert_eq!(step, 6);
    assert_eq!(resumed.partitioner(), Some(Partitioner::hash(4)));
    let done = run(&mut cp, resumed, step + 1, 10);
    assert_eq!(sorted(&done), uncrashed);
    // Manifests record the series, step, write time and meta.
    let newest = &cp.committed().unwrap()[0];
    assert_eq!(newest.step, 9);
    let written = newest.written_at.as_deref().unwrap();
    assert!(
        written.ends_with('Z') && humantime::parse_rfc3339(written).is_ok(),
        "{written}"
    );
}

#[test]
fn keep_removes_older_checkpoints_but_never_one_a_live_rdd_reads() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let events = common::Recorder::attach(&ctx);
    let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(1).keep(2);
    let mut r = initial(&ctx);
    let mut held = None;
    for step in 1..=5 {
        r = iterate(&r, step);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
        if step == 1 {
            held = Some(r.clone()); // an old RDD the user keeps
        }
    }
    let steps: Vec<u64> = cp.committed().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, vec![5, 4, 1], "step 1 is still read by a live RDD");
    let held = held.unwrap();
    let path = held.checkpoint_path().unwrap();
    assert!(path.exists());
    assert_eq!(held.count().unwrap(), 100);
    drop(held);
    flintlock::checkpoint::wait_for_removals(); // removals run in the background
    assert!(!path.exists(), "gone with its last reader");
    let steps: Vec<u64> = cp.committed().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, vec![5, 4]);
    let released: Vec<(u64, bool)> = events.take_matching(|e| match e {
        Event::CheckpointReleased {
            step, deleted_now, ..
        } => Some((step, deleted_now)),
        _ => None,
    });
    assert!(released.contains(&(1, false)), "{released:?}");
    assert!(released.contains(&(2, true)), "{released:?}");
}

#[test]
fn a_resume_with_other_meta_is_an_error_naming_the_key_and_both_values() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = ctx(dir.path());
        let mut cp = ctx
            .checkpointer::<(u64, u64)>("ranks")
            .meta("graph", "abc123")
            .meta("damping", 0.85);
        run(&mut cp, initial(&ctx), 1, 2);
    }
    let ctx = ctx(dir.path());
    let cp = ctx
        .checkpointer::<(u64, u64)>("ranks")
        .meta("graph", "def456")
        .meta("damping", 0.85);
    let err = cp.latest().unwrap_err();
    match &err {
        Error::ResumeMismatch {
            key,
            recorded,
            expected,
            step,
            ..
        } => {
            assert_eq!(key, "graph");
            assert_eq!(recorded.as_deref(), Some("abc123"));
            assert_eq!(expected.as_deref(), Some("def456"));
            assert_eq!(*step, 2);
        }
        other => panic!("expected ResumeMismatch, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("abc123") && msg.contains("def456"), "{msg}");
    // A key that is new is a mismatch too.
    let extra = ctx
        .checkpointer::<(u64, u64)>("ranks")
        .meta("graph", "abc123")
        .meta("damping", 0.85)
        .meta("iterations", 10);
    assert!(matches!(
        extra.latest().unwrap_err(),
        Error::ResumeMismatch { key, recorded: None, .. } if key == "iterations"
    ));
    // Another series in the same folder is not affected.
    assert!(ctx
        .checkpointer::<(u64, u64)>("other")
        .latest()
        .unwrap()
        .is_none());
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = ctx(dir.path());
        let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").keep(4);
        run(&mut cp, initial(&ctx), 1, 4);
    }
    let ctx = ctx(dir.path());
    let events = common::Recorder::attach(&ctx);
    let cp = ctx.checkpointer::<(u64, u64)>("ranks");
    let all = cp.committed().unwrap();
    assert_eq!(
        all.iter().map(|c| c.step).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    // Step 4 gets a flipped byte inside a part (same length: only the checksum tells);
    // step 3 loses a part file; step 2's manifest gets a flipped byte.
    let part = all[0].path.join("part-00002");
    let mut bytes = std::fs::read(&part).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&part, bytes).unwrap();
    std::fs::remove_file(all[1].path.join("part-00001")).unwrap();
    let manifest = all[2].path.join("_manifest.json");
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[40] ^= 0x20;
    std::fs::write(&manifest, bytes).unwrap();
    let (step, rdd) = cp.latest().unwrap().expect("step 1 is intact");
    assert_eq!(step, 1);
    assert_eq!(rdd.count().unwrap(), 100);
    let skipped: Vec<String> = events.take_matching(|e| match e {
        Event::CheckpointSkipped { path, .. } => Some(path.display().to_string()),
        _ => None,
    });
    assert_eq!(skipped.len(), 3, "{skipped:?}");
}

#[test]
fn every_marks_multiples_and_latest_needs_a_checkpoint_dir() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut cp = ctx.checkpointer::<u64>("n").every(4);
    let r = ctx.range(0..10, 2);
    assert!(!cp.update(3, &r).unwrap());
    assert!(cp.update(4, &r).unwrap());
    let none = common::ctx();
    let cp = none.checkpointer::<u64>("n");
    assert!(matches!(cp.latest(), Err(Error::NoCheckpointDir)));
}

/// A job restarted from scratch (not resuming) while an earlier run's higher steps are
/// still there: what it commits stays until it is beyond `keep` by its own newer commits,
/// and a resume continues from the newest step either run wrote.
#[test]
fn a_rerun_from_scratch_keeps_what_it_commits_next_to_an_earlier_runs_higher_steps() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ctx = ctx(dir.path());
        let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(1).keep(2);
        run(&mut cp, initial(&ctx), 1, 6);
    }
    let ctx = ctx(dir.path());
    let mut cp = ctx.checkpointer::<(u64, u64)>("ranks").every(1).keep(2);
    let mut r = initial(&ctx);
    for step in 1..=2 {
        r = iterate(&r, step);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
        let steps: Vec<u64> = cp.committed().unwrap().iter().map(|c| c.step).collect();
        assert!(steps.contains(&step), "step {step} was removed: {steps:?}");
        assert_eq!(
            r.checkpoint_state(),
            flintlock::CheckpointState::Checkpointed
        );
        assert_eq!(r.count().unwrap(), 100, "the new checkpoint still reads");
    }
    let steps: Vec<u64> = cp.committed().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, vec![6, 5, 2], "{steps:?}");
    assert_eq!(cp.latest().unwrap().unwrap().0, 6);
}

/// Two computations under one series name (another element type, or other meta): each
/// keeps its own newest `keep`, and never removes the other's checkpoints.
#[test]
fn a_series_name_reused_for_another_type_or_meta_never_removes_the_others_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut numbers = ctx.checkpointer::<u64>("s").keep(1);
    let mut words = ctx.checkpointer::<String>("s").keep(1);
    let n = ctx.parallelize(vec![1u64, 2, 3], 2);
    numbers.update(1, &n).unwrap();
    n.count().unwrap();
    drop(n);
    let w = ctx.parallelize(vec!["x".to_string()], 1);
    words.update(2, &w).unwrap();
    w.count().unwrap();
    let (step, back) = numbers.latest().unwrap().expect("the u64 checkpoint stays");
    assert_eq!((step, back.collect().unwrap()), (1, vec![1, 2, 3]));
    let (step, back) = words.latest().unwrap().expect("the String checkpoint");
    assert_eq!((step, back.collect().unwrap()), (2, vec!["x".to_string()]));

    let mut a = ctx.checkpointer::<u64>("m").keep(1).meta("graph", "a");
    let mut b = ctx.checkpointer::<u64>("m").keep(1).meta("graph", "b");
    let commit = |cp: &mut flintlock::checkpoint::Checkpointer<u64>, step: u64| {
        let r = ctx.range(0..step, 1);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
    };
    commit(&mut a, 5);
    commit(&mut b, 1);
    commit(&mut b, 2);
    assert_eq!(a.latest().unwrap().unwrap().0, 5);
    assert_eq!(
        b.latest().unwrap().unwrap().0,
        2,
        "graph b resumes from its own step"
    );
    let steps: Vec<u64> = b.committed().unwrap().iter().map(|c| c.step).collect();
    assert_eq!(steps, vec![5, 2], "b kept 1 of its own; a's step 5 stays");
}

/// A step committed twice (a rerun within the same second): the later write wins.
#[test]
fn a_step_written_twice_resumes_from_the_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut cp = ctx.checkpointer::<u64>("s").keep(1);
    // Make the first write's folder sort after the second's by name ("rdd-9" > "rdd-11").
    while ctx.range(0..1, 1).id() < 8 {}
    let first = ctx.parallelize(vec![1u64, 2, 3], 2);
    cp.update(5, &first).unwrap();
    first.count().unwrap();
    drop(first);
    let second = ctx.parallelize(vec![10u64, 20, 30], 2);
    cp.update(5, &second).unwrap();
    second.count().unwrap();
    let (step, back) = cp.latest().unwrap().unwrap();
    assert_eq!((step, back.collect().unwrap()), (5, vec![10, 20, 30]));
    assert_eq!(
        cp.committed().unwrap().len(),
        1,
        "keep(1) removed the earlier write"
    );
}
