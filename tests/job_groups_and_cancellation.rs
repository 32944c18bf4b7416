//! Job groups and cancellation: a cancelled job's running tasks stop at their next batch,
//! its action returns `Err(Cancelled)`, and nothing it half did survives (no checkpoint
//! files, no shuffle outputs, no accumulator updates of the stopped tasks). The context
//! stays usable and the next run of the same job is exact.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flintlock::{CheckpointState, Context, Error, Event, Rdd};

fn ctx(threads: usize) -> Context {
    Context::builder().threads(threads).build().unwrap()
}

/// An RDD that would take hours: every element spins a little.
fn endless(ctx: &Context) -> Rdd<u64> {
    ctx.range(0..u64::MAX, 2)
        .map(|x| std::hint::black_box((0..50).fold(x, |a, b| a.wrapping_mul(31).wrapping_add(b))))
}

fn wait_until_running(ctx: &Context, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctx.running_jobs().len() < n {
        assert!(Instant::now() < deadline, "jobs never started");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn cancelling_a_job_group_stops_its_running_job() {
    let ctx = ctx(2);
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || {
            ctx.set_job_group("etl");
            assert_eq!(ctx.job_group().as_deref(), Some("etl"));
            endless(&ctx).count()
        })
    };
    wait_until_running(&ctx, 1);
    assert_eq!(ctx.cancel_job_group("other"), 0);
    assert_eq!(ctx.cancel_job_group("etl"), 1);
    let err = worker.join().unwrap().unwrap_err();
    match &err {
        Error::Cancelled { group, reason, .. } => {
            assert_eq!(group.as_deref(), Some("etl"));
            assert!(reason.contains("etl"), "{reason}");
        }
        other => panic!("expected Cancelled, got {other}"),
    }
    assert!(ctx.running_jobs().is_empty());
    // The context and the group still work: later jobs are not cancelled.
    ctx.set_job_group("etl");
    assert_eq!(ctx.range(0..100, 4).count().unwrap(), 100);
    ctx.clear_job_group();
    assert_eq!(ctx.job_group(), None);
}

#[test]
fn cancel_all_jobs_stops_jobs_of_every_thread() {
    let ctx = ctx(2);
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let ctx = ctx.clone();
            thread::spawn(move || {
                if i == 0 {
                    ctx.set_job_group("a");
                }
                endless(&ctx)
                    .map(|x| (x % 7, x))
                    .reduce_by_key(|a, b| a ^ b)
                    .count()
            })
        })
        .collect();
    wait_until_running(&ctx, 3);
    assert_eq!(ctx.cancel_all_jobs(), 3);
    for w in workers {
        assert!(matches!(w.join().unwrap(), Err(Error::Cancelled { .. })));
    }
    assert_eq!(
        ctx.memory_stats().shuffles,
        0,
        "a cancelled map stage keeps no output"
    );
}

#[test]
fn job_groups_belong_to_a_thread_and_a_context() {
    let a = ctx(1);
    let b = ctx(1);
    a.set_job_group("g");
    assert_eq!(a.job_group().as_deref(), Some("g"));
    assert_eq!(b.job_group(), None);
    let other = {
        let a = a.clone();
        thread::spawn(move || a.job_group()).join().unwrap()
    };
    assert_eq!(other, None);
}

#[test]
fn a_listener_can_cancel_the_job_it_watches_and_later_tasks_never_start() {
    let ctx = ctx(1);
    let started = Arc::new(AtomicUsize::new(0));
    let (c, s) = (ctx.clone(), started.clone());
    ctx.add_listener(move |e: &Event| match e {
        Event::JobStarted { job_id, .. } => {
            c.cancel_job(*job_id);
        }
        Event::TaskStarted { .. } => {
            s.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    });
    let err = ctx.range(0..1_000_000, 100).count().unwrap_err();
    assert!(matches!(err, Error::Cancelled { group: None, .. }), "{err}");
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "no task of a cancelled job starts"
    );
    assert!(!ctx.cancel_job(12345));
}

#[test]
fn a_cancelled_checkpoint_leaves_the_rdd_marked_and_the_next_action_writes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(dir.path())
        .build()
        .unwrap();
    let gate = Arc::new(AtomicUsize::new(0));
    let g = gate.clone();
    // Elements spin until the gate opens; the first run is cancelled while they spin.
    let rdd = ctx.range(0..20_000, 4).map(move |x| {
        while g.load(Ordering::Relaxed) == 0 && x % 5000 == 4000 {
            std::hint::spin_loop();
        }
        x * 2
    });
    rdd.checkpoint().unwrap();
    let worker = {
        let (ctx, rdd) = (ctx.clone(), rdd.clone());
        thread::spawn(move || {
            ctx.set_job_group("ckpt");
            rdd.count()
        })
    };
    wait_until_running(&ctx, 1);
    thread::sleep(Duration::from_millis(50));
    ctx.cancel_job_group("ckpt");
    // Tasks blocked in the user's closure notice at their next batch: open the gate.
    thread::sleep(Duration::from_millis(20));
    gate.store(1, Ordering::Relaxed);
    let err = worker.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    assert_eq!(rdd.count().unwrap(), 20_000);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
    assert_eq!(
        rdd.collect().unwrap(),
        (0..20_000u64).map(|x| x * 2).collect::<Vec<_>>()
    );
    // Only the committed checkpoint is on disk: no temp part of the cancelled run.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_cancelled_job_keeps_only_whole_tasks_accumulator_updates() {
    let ctx = ctx(2);
    let acc = ctx.long_accumulator("n");
    let gate = Arc::new(AtomicUsize::new(0));
    let (a, g) = (acc.clone(), gate.clone());
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || {
            ctx.set_job_group("acc");
            // 1000 partitions of 1000 elements; each element adds 1. From partition 5 on,
            // tasks stop half-way until the gate opens.
            ctx.range(0..1_000_000, 1000).foreach(move |x| {
                a.add(1);
                while x >= 5000 && x % 1000 == 500 && g.load(Ordering::Relaxed) == 0 {
                    std::hint::spin_loop();
                }
            })
        })
    };
    wait_until_running(&ctx, 1);
    thread::sleep(Duration::from_millis(30));
    ctx.cancel_job_group("acc");
    gate.store(1, Ordering::Relaxed);
    assert!(matches!(
        worker.join().unwrap(),
        Err(Error::Cancelled { .. })
    ));
    let v = acc.value();
    assert_eq!(v % 1000, 0, "{v}: part of a stopped task was counted");
    assert!(v <= 5000, "{v}");
}

#[test]
fn the_cancelled_error_names_the_job_and_why() {
    let ctx = ctx(2);
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || endless(&ctx).count())
    };
    wait_until_running(&ctx, 1);
    let id = ctx.running_jobs()[0];
    assert!(ctx.cancel_job(id));
    let err = worker.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("job {id}")), "{text}");
    assert!(text.contains("cancelled"), "{text}");
}

#[test]
fn a_job_started_inside_a_task_is_cancelled_with_its_group() {
    let ctx = ctx(2);
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || {
            ctx.set_job_group("outer");
            let inner_ctx = ctx.clone();
            // The task's own nested job would run for hours; unwrapping its error is what a
            // user's closure does.
            ctx.parallelize(vec![0u8], 1)
                .map(move |_| endless(&inner_ctx).count().unwrap())
                .collect()
        })
    };
    wait_until_running(&ctx, 2);
    assert_eq!(
        ctx.cancel_job_group("outer"),
        2,
        "the nested job is in the group"
    );
    let err = worker.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
}

#[test]
fn cancelling_the_outer_job_cancels_the_nested_one() {
    let ctx = ctx(2);
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || {
            let inner_ctx = ctx.clone();
            ctx.parallelize(vec![0u8], 1)
                .map(move |_| endless(&inner_ctx).count().unwrap())
                .collect()
        })
    };
    wait_until_running(&ctx, 2);
    let outer = ctx.running_jobs()[0];
    assert!(ctx.cancel_job(outer));
    let err = worker.join().unwrap().unwrap_err();
    match err {
        Error::Cancelled { job_id, .. } => assert_eq!(job_id, outer),
        other => panic!("expected Cancelled, got {other}"),
    }
}

#[test]
fn a_job_waiting_for_another_jobs_shuffle_stage_can_be_cancelled() {
    let ctx = ctx(2);
    let gate = Arc::new(AtomicUsize::new(0));
    let g = gate.clone();
    let shuffled = ctx
        .range(0..1000, 2)
        .map(move |x| {
            while g.load(Ordering::Relaxed) == 0 {
                std::hint::spin_loop();
            }
            (x % 10, x)
        })
        .reduce_by_key(|a, b| a + b);
    let first = {
        let s = shuffled.clone();
        thread::spawn(move || s.count())
    };
    wait_until_running(&ctx, 1);
    let second = {
        let (ctx, s) = (ctx.clone(), shuffled.clone());
        thread::spawn(move || {
            ctx.set_job_group("waiter");
            s.collect()
        })
    };
    wait_until_running(&ctx, 2);
    ctx.cancel_job_group("waiter");
    // The waiter returns while the stage it waits for is still blocked.
    let err = second.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    gate.store(1, Ordering::Relaxed);
    assert_eq!(first.join().unwrap().unwrap(), 10);
}

#[test]
fn a_sort_whose_sampling_job_was_cancelled_says_to_sort_again() {
    let ctx = ctx(2);
    let worker = {
        let ctx = ctx.clone();
        thread::spawn(move || {
            ctx.set_job_group("sort");
            endless(&ctx).map(|x| (x, ())).sort_by_key(true)
        })
    };
    wait_until_running(&ctx, 1);
    ctx.cancel_job_group("sort");
    let sorted = worker.join().unwrap();
    let err = sorted.count().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(err.to_string().contains("call sort_by_key again"), "{err}");
}

#[cfg(unix)]
fn pid_alive(pid: &str) -> bool {
    // A reaped process has no /proc entry; a zombie's state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[cfg(unix)]
#[test]
fn a_cancelled_pipe_kills_and_reaps_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let ctx = ctx(2);
    let worker = {
        let (ctx, pidfile) = (ctx.clone(), pidfile.clone());
        thread::spawn(move || {
            ctx.set_job_group("pipe");
            let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
            ctx.parallelize(vec![1], 1)
                .pipe(["sh", "-c", script.as_str()])
                .count()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Ok(p) = std::fs::read_to_string(&pidfile)
            && !p.trim().is_empty()
        {
            break p.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the command never started");
        thread::sleep(Duration::from_millis(5));
    };
    assert!(pid_alive(&pid));
    ctx.cancel_job_group("pipe");
    let err = worker.join().unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    assert!(!pid_alive(&pid), "the command outlived its cancelled task");
}

#[cfg(unix)]
#[test]
fn a_failed_pipe_attempt_leaves_no_command_running() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let ctx = ctx(1);
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let written = pidfile.clone();
    let err = ctx
        .range(0..10_000, 1)
        .map(move |x| {
            if x == 5000 {
                // The command has started (and said who it is) before upstream fails: on a
                // loaded machine it could otherwise be killed before its first line ran.
                let deadline = Instant::now() + Duration::from_secs(30);
                let said = || std::fs::read_to_string(&written).is_ok_and(|s| s.ends_with('\n'));
                while !said() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            assert!(x < 5000, "upstream fails while the command runs");
            x
        })
        .pipe(["sh", "-c", script.as_str()])
        .count()
        .unwrap_err();
    assert!(matches!(err, Error::TaskFailed { .. }), "{err}");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        !pid_alive(pid.trim()),
        "the command outlived its failed task"
    );
}
