//! The event log records every listener event, one JSON object per line after a versioned
//! first line, and reads back what a killed writer left.

use std::sync::{Arc, Mutex};

use flintlock::event_log::{self, Line, Record};
use flintlock::{Context, Error, Event};

fn names(lines: &[Line]) -> Vec<&'static str> {
    lines.iter().map(|l| l.record.name()).collect()
}

/// The name an [`Event`] has in the log.
fn event_name(e: &Event) -> String {
    let debug = format!("{e:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_listener_event_is_a_line_in_order_with_times_and_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ctx = Context::builder()
        .app_name("logged")
        .threads(2)
        .checkpoint_dir(dir.path().join("ckpt"))
        .event_log(&path)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    ctx.add_listener(move |e: &Event| s.lock().unwrap().push(event_name(e)));
    let pairs = ctx
        .range(0..1000, 4)
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b)
        .set_name("sums");
    pairs.checkpoint().unwrap();
    assert_eq!(pairs.count().unwrap(), 10);
    assert_eq!(pairs.count().unwrap(), 10);
    let app_id = ctx.app_id().to_string();
    drop(pairs);
    drop(ctx);

    let log = event_log::read(&path).unwrap();
    assert_eq!(log.version, event_log::VERSION);
    assert!(log.skipped.is_empty(), "{:?}", log.skipped);
    match &log.start.record {
        Record::LogStart {
            format,
            app_name,
            app_id: id,
            threads,
            ..
        } => {
            assert_eq!(format, event_log::FORMAT);
            assert_eq!(app_name, "logged");
            assert_eq!(id, &app_id);
            assert_eq!(*threads, 2);
        }
        other => panic!("first line {other:?}"),
    }
    // The same events as a listener registered after the log saw (in the same order on
    // each thread; workers interleave, so compared as multisets).
    let mut logged: Vec<String> = names(&log.lines).iter().map(|s| s.to_string()).collect();
    let mut heard = seen.lock().unwrap().clone();
    logged.sort();
    heard.sort();
    assert_eq!(logged, heard);
    // Times never go back by line for one thread; tasks ran on workers, jobs on the driver.
    let tasks: Vec<&Line> = log
        .lines
        .iter()
        .filter(|l| matches!(l.record, Record::TaskEnded { .. }))
        .collect();
    assert!(!tasks.is_empty());
    assert!(tasks.iter().all(|l| l.worker.is_some_and(|w| w < 2)));
    assert!(log
        .lines
        .iter()
        .filter(|l| matches!(l.record, Record::JobStarted { .. }))
        .all(|l| l.worker.is_none()));
    // Lineage snapshots: the first job sees the marked RDD and its parents, the second the
    // checkpoint RDD where the lineage now ends.
    let lineages: Vec<&Vec<event_log::LoggedNode>> = log
        .lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::JobLineage { nodes, .. } => Some(nodes),
            _ => None,
        })
        .collect();
    assert_eq!(lineages.len(), 2);
    assert_eq!(lineages[0][0].name.as_deref(), Some("sums"));
    assert_eq!(lineages[0][0].checkpoint_state, "Marked");
    assert!(lineages[0]
        .iter()
        .any(|n| n.parents.iter().any(|e| e.kind == "Shuffle")));
    assert_eq!(lineages[1][0].checkpoint_state, "Checkpointed");
    assert_eq!(lineages[1].len(), 2, "{:?}", lineages[1]);
    assert_eq!(lineages[1][1].kind, "ReliableCheckpointRdd");
    // Parts with bytes, the commit, and the swap.
    let part_bytes: u64 = log
        .lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::CheckpointPartitionWritten { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    let committed = log.lines.iter().find_map(|l| match &l.record {
        Record::CheckpointCommitted { bytes, path, .. } => Some((*bytes, path.clone())),
        _ => None,
    });
    let (bytes, folder) = committed.expect("a commit line");
    assert_eq!(bytes, part_bytes);
    assert!(std::path::Path::new(&folder).is_dir(), "{folder}");
    assert!(log.lines.iter().any(|l| matches!(
        &l.record,
        Record::LineageTruncated { checkpoint_kind, released_parents, .. }
            if checkpoint_kind == "ReliableCheckpointRdd" && !released_parents.is_empty()
    )));
}

#[test]
fn a_failed_job_logs_the_task_error_and_the_job_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ctx = Context::builder().event_log(&path).build().unwrap();
    let err = ctx
        .range(0..10, 2)
        .map(|x| {
            if x == 7 {
                panic!("seven is \"not\" <allowed>");
            }
            x
        })
        .count()
        .unwrap_err();
    drop(ctx);
    let log = event_log::read(&path).unwrap();
    let task_error = log.lines.iter().find_map(|l| match &l.record {
        Record::TaskFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(task_error.unwrap().contains("seven is \"not\" <allowed>"));
    let job_error = log.lines.iter().find_map(|l| match &l.record {
        Record::JobFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert_eq!(job_error.unwrap(), err.to_string());
    assert!(log.lines.iter().any(|l| matches!(
        l.record,
        Record::JobEnded {
            succeeded: false,
            ..
        }
    )));
}

#[test]
fn an_unwritable_event_log_fails_the_build_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no such folder").join("events.jsonl");
    let err = Context::builder().event_log(&path).build().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no such folder"), "{err}");
    let err = Context::builder()
        .event_log("s3://bucket/events.jsonl")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("local files"), "{err}");
}

#[test]
fn a_log_cut_off_mid_line_reads_up_to_the_cut_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ctx = Context::builder().event_log(&path).build().unwrap();
    ctx.range(0..100, 4).count().unwrap();
    drop(ctx);
    let full = std::fs::read(&path).unwrap();
    let whole = event_log::read(&path).unwrap();
    // Cut in the middle of the last line, as a killed writer leaves it.
    let cut = full.len() - 10;
    std::fs::write(&path, &full[..cut]).unwrap();
    let log = event_log::read(&path).unwrap();
    assert_eq!(log.lines.len(), whole.lines.len() - 1);
    assert_eq!(log.skipped.len(), 1, "{:?}", log.skipped);
    assert!(
        log.skipped[0].reason.contains("cut off"),
        "{:?}",
        log.skipped
    );
    assert_eq!(log.lines[..], whole.lines[..whole.lines.len() - 1]);
}

#[test]
fn a_file_that_is_not_an_event_log_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty", b"", "empty"),
        ("json", b"{\"a\":1}\n", "no \"event\" field"),
        (
            "job first",
            b"{\"t_us\":0,\"event\":\"JobStarted\",\"job_id\":0,\"rdd_id\":0,\"partitions\":1}\n",
            "not LogStart",
        ),
        (
            "other format",
            b"{\"t_us\":0,\"event\":\"LogStart\",\"format\":\"spark\",\"version\":1,\"flintlock\":\"x\",\"app_name\":\"a\",\"app_id\":\"b\",\"started_at\":\"c\",\"threads\":1}\n",
            "\"spark\"",
        ),
    ];
    for (name, bytes, why) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = event_log::read(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("not a flintlock event log"), "{name}: {msg}");
        assert!(msg.contains(why), "{name}: {msg}");
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
    }
    let missing = dir.path().join("missing.jsonl");
    let err = event_log::read(&missing).unwrap_err();
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn the_log_goes_on_after_a_listener_panics_and_two_contexts_write_two_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let ctx_a = Context::builder()
        .app_name("a")
        .event_log(&a)
        .build()
        .unwrap();
    let ctx_b = Context::builder()
        .app_name("b")
        .event_log(&b)
        .build()
        .unwrap();
    ctx_a.add_listener(|_: &Event| panic!("a listener that always panics"));
    ctx_a.range(0..10, 2).count().unwrap();
    ctx_b.range(0..10, 3).count().unwrap();
    ctx_a.range(0..10, 2).count().unwrap();
    drop((ctx_a, ctx_b));
    let (la, lb) = (event_log::read(&a).unwrap(), event_log::read(&b).unwrap());
    let jobs = |l: &event_log::EventLog| {
        l.lines
            .iter()
            .filter(|x| matches!(x.record, Record::JobEnded { .. }))
            .count()
    };
    assert_eq!((jobs(&la), jobs(&lb)), (2, 1));
    let tasks = |l: &event_log::EventLog| {
        l.lines
            .iter()
            .filter(|x| matches!(x.record, Record::TaskEnded { .. }))
            .count()
    };
    assert_eq!((tasks(&la), tasks(&lb)), (4, 3));
}

#[test]
fn a_failed_build_or_a_second_context_never_touches_a_log_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ckpt = dir.path().join("ckpt");
    let a = Context::builder()
        .app_id("fixed")
        .checkpoint_dir(&ckpt)
        .event_log(&path)
        .build()
        .unwrap();
    for _ in 0..3 {
        a.range(0..10, 2).count().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    // The same app id: the build fails on the checkpoint folder's lock, before the log.
    let err = Context::builder()
        .app_id("fixed")
        .checkpoint_dir(&ckpt)
        .event_log(&path)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    // Another app id, the same log: refused by the log's own lock.
    let err = Context::builder().event_log(&path).build().unwrap_err();
    assert!(
        err.to_string().contains("being written by another"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "the log was touched");
    a.range(0..10, 2).count().unwrap();
    drop(a);
    let log = event_log::read(&path).unwrap();
    assert!(log.skipped.is_empty(), "{:?}", log.skipped);
    let jobs = log
        .lines
        .iter()
        .filter(|l| matches!(l.record, Record::JobEnded { .. }))
        .count();
    assert_eq!(jobs, 4);
    // Free again once the context is gone.
    Context::builder().event_log(&path).build().unwrap();
}

#[test]
fn the_log_reaches_the_file_even_when_a_listener_keeps_its_context_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ctx = Context::builder().event_log(&path).build().unwrap();
    // A listener holding a clone of its own context: the context is never dropped.
    let keep = ctx.clone();
    ctx.add_listener(move |_: &Event| {
        let _ = keep.app_id();
    });
    let rdd = ctx.range(0..10, 2).cache();
    rdd.count().unwrap();
    rdd.local_checkpoint().unwrap(); // an event after the last job ended
    drop((rdd, ctx));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = event_log::read(&path).unwrap();
        if log.lines.iter().any(
            |l| matches!(&l.record, Record::CheckpointStateChanged { to, .. } if to == "Marked"),
        ) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last event never reached the file"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_long_lineage_is_logged_capped_with_its_depth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let ctx = Context::builder().event_log(&path).build().unwrap();
    let mut rdd = ctx.range(0..10, 2);
    for _ in 0..700 {
        rdd = rdd.map(|x| x + 1);
    }
    assert_eq!(rdd.count().unwrap(), 10);
    drop((rdd, ctx));
    let log = event_log::read(&path).unwrap();
    let (depth, nodes, omitted) = log
        .lines
        .iter()
        .find_map(|l| match &l.record {
            Record::JobLineage {
                depth,
                nodes,
                omitted_nodes,
                ..
            } => Some((*depth, nodes.len(), *omitted_nodes)),
            _ => None,
        })
        .unwrap();
    assert_eq!(depth, Some(700));
    assert_eq!(nodes, event_log::MAX_LOGGED_NODES);
    assert_eq!(nodes as u64 + omitted, 701);
    let html = flintlock::report::render(&log);
    assert!(html.contains("its lineage has 701 RDDs"), "not said");
    assert!(html.contains("lineage depth 700"));
}

#[test]
fn odd_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Context::builder().event_log("").build().unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = Context::builder()
        .event_log(dir.path())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // A local path may contain "://" after its first component.
    let odd = dir.path().join("a:").join("").join("x");
    std::fs::create_dir_all(&odd).unwrap();
    let inside = odd.join("log.jsonl");
    Context::builder().event_log(&inside).build().unwrap();
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = Context::builder().event_log(&fifo).build().unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }
}

/// A context dropped while another thread starts a child process releases its event log's
/// lock at once (the child holds a copy of the descriptor until its `exec`): the next
/// context writing the same log gets it.
#[cfg(unix)]
#[test]
fn a_dropped_contexts_log_is_taken_at_once_while_the_process_starts_children() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    crate::common::while_starting_processes(|| {
        for i in 0..400 {
            if let Err(e) = Context::builder().threads(1).event_log(&path).build() {
                panic!("reopening {i}: {e}");
            }
        }
    });
}
