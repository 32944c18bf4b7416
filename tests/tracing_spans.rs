//! flintlock's `tracing` output, as a subscriber sees it: a job span, its stages' spans
//! inside it, their tasks' spans inside those (tasks run on the pool's threads), the
//! checkpoint phases where they happen (parts written inside the tasks that wrote them; the
//! commit and the swap inside the job), shuffle sizes inside the map tasks, and a removed
//! checkpoint once a series lets it go.
//!
//! One test: the subscriber is the process's global default (the pool's threads do not
//! see a thread-local one), and a test binary has one process.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span or an event's fields, as text.
type Fields = BTreeMap<String, String>;

/// A span as it was opened: its name and fields, and the same for each enclosing span,
/// innermost first.
#[derive(Clone, Debug)]
struct SpanRecord {
    name: String,
    fields: Fields,
    parents: Vec<(String, Fields)>,
}

/// An event: its message and fields, and the spans it happened in, innermost first.
#[derive(Clone, Debug)]
struct EventRecord {
    message: String,
    fields: Fields,
    scope: Vec<(String, Fields)>,
}

#[derive(Default)]
struct Recorded {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

struct FieldText<'a>(&'a mut Fields);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// Keeps each span's fields in its extensions (for the events inside it) and records
/// every span and event with its enclosing spans; panics on an event whose message is
/// the second field's (a subscriber with a bug).
#[derive(Clone)]
struct Recorder(Arc<Mutex<Recorded>>, Arc<Mutex<Option<String>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldText(&mut fields));
        let span = ctx.span(id).expect("a new span is in the registry");
        let parents = span
            .scope()
            .skip(1)
            .map(|p| {
                let f = p.extensions().get::<Fields>().cloned().unwrap_or_default();
                (p.name().to_string(), f)
            })
            .collect();
        span.extensions_mut().insert(fields.clone());
        self.0.lock().unwrap().spans.push(SpanRecord {
            name: span.name().to_string(),
            fields,
            parents,
        });
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldText(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        if self.1.lock().unwrap().as_deref() == Some(message.as_str()) {
            panic!("the subscriber's own bug, on {message:?}");
        }
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|s| {
                        let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_string(), f)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().events.push(EventRecord {
            message,
            fields,
            scope,
        });
    }
}

impl Recorded {
    /// The events recorded with `message`, in order.
    fn events(&self, message: &str) -> Vec<&EventRecord> {
        self.events
            .iter()
            .filter(|e| e.message == message)
            .collect()
    }

    /// The events whose message starts with `start` (messages that go on to explain).
    fn events_starting(&self, start: &str) -> Vec<&EventRecord> {
        self.events
            .iter()
            .filter(|e| e.message.starts_with(start))
            .collect()
    }
}

fn names(scope: &[(String, Fields)]) -> Vec<&str> {
    scope.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn a_job_traces_its_stages_tasks_and_checkpoint_phases() {
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let panic_on = Arc::new(Mutex::new(None));
    let subscriber = tracing_subscriber::registry()
        .with(Recorder(recorded.clone(), panic_on.clone()))
        .with(tracing_subscriber::filter::LevelFilter::DEBUG);
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx_with_dir(dir.path());
    let sums = ctx
        .parallelize((0..1_000u64).map(|i| (i % 10, i)).collect::<Vec<_>>(), 4)
        .reduce_by_key(|a, b| a + b);
    sums.checkpoint().unwrap();
    assert_eq!(sums.count().unwrap(), 10);
    let job_id = {
        let r = recorded.lock().unwrap();
        let jobs: Vec<&SpanRecord> = r.spans.iter().filter(|s| s.name == "job").collect();
        assert_eq!(jobs.len(), 1, "one action, one job span: {jobs:?}");
        assert!(
            jobs[0].parents.is_empty(),
            "a job is a root span: {:?}",
            jobs[0]
        );
        jobs[0].fields["job_id"].clone()
    };

    let r = recorded.lock().unwrap();
    // Stages inside the job: the shuffle's map side, then the result stage.
    let stages: Vec<&SpanRecord> = r.spans.iter().filter(|s| s.name == "stage").collect();
    let kinds: Vec<&str> = stages.iter().map(|s| s.fields["kind"].as_str()).collect();
    assert_eq!(kinds, ["ShuffleMap", "Result"], "{stages:?}");
    for stage in &stages {
        assert_eq!(names(&stage.parents), ["job"], "{stage:?}");
        assert_eq!(stage.parents[0].1["job_id"], job_id);
    }
    // Four tasks in each stage, each a child of its stage (opened on a pool thread), each
    // with its start and end inside it (traced with no listener attached).
    for stage in &stages {
        let id = &stage.fields["stage_id"];
        for message in ["task started", "task ended"] {
            let mut partitions: Vec<&str> = r
                .events
                .iter()
                .filter(|e| e.message == message && &e.fields["stage_id"] == id)
                .inspect(|e| {
                    assert_eq!(names(&e.scope), ["task", "stage", "job"], "{e:?}");
                    assert_eq!(e.scope[0].1["partition"], e.fields["partition"]);
                })
                .map(|e| e.fields["partition"].as_str())
                .collect();
            partitions.sort_unstable();
            assert_eq!(partitions, ["0", "1", "2", "3"], "{message} in stage {id}");
        }
    }
    for stage in &stages {
        let id = &stage.fields["stage_id"];
        let mut partitions: Vec<&str> = r
            .spans
            .iter()
            .filter(|s| s.name == "task" && &s.fields["stage_id"] == id)
            .inspect(|t| {
                assert_eq!(names(&t.parents), ["stage", "job"], "{t:?}");
                assert_eq!(&t.parents[0].1["stage_id"], id, "{t:?}");
            })
            .map(|t| t.fields["partition"].as_str())
            .collect();
        partitions.sort_unstable();
        assert_eq!(partitions, ["0", "1", "2", "3"], "tasks of stage {id}");
    }

    let events = |message: &str| r.events(message);
    // Shuffle sizes, inside the map tasks: 10 keys, combined on the map side.
    let outputs = events("shuffle map output (records held in memory; spilled runs not counted)");
    assert_eq!(outputs.len(), 4, "{outputs:?}");
    let mut records = 0;
    for e in &outputs {
        assert_eq!(names(&e.scope), ["task", "stage", "job"], "{e:?}");
        assert_eq!(e.scope[1].1["kind"], "ShuffleMap");
        records += e.fields["records"].parse::<usize>().unwrap();
    }
    assert_eq!(
        records, 40,
        "each map partition holds each of the 10 keys once"
    );
    // The checkpoint's parts, written by the result stage's tasks as they computed them.
    let parts = events("checkpoint part written");
    assert_eq!(parts.len(), 4, "{parts:?}");
    for e in &parts {
        assert_eq!(names(&e.scope), ["task", "stage", "job"], "{e:?}");
        assert_eq!(e.scope[1].1["kind"], "Result");
        assert_eq!(e.scope[0].1["partition"], e.fields["partition"]);
    }
    // The commit and the swap, in the job once its stages are done.
    for message in [
        "checkpoint committed",
        "checkpoint swapped in: lineage truncated",
    ] {
        let found = events(message);
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        assert_eq!(names(&found[0].scope), ["job"], "{message}: {found:?}");
    }
    let states: Vec<String> = events("checkpoint state changed")
        .iter()
        .map(|e| format!("{} -> {}", e.fields["from"], e.fields["to"]))
        .collect();
    assert_eq!(
        states,
        [
            "Initialized -> Marked",
            "Marked -> InProgress",
            "InProgress -> Checkpointed"
        ],
        "{states:?}"
    );
    // The job's own start and end, inside its span.
    for message in ["job started", "job ended"] {
        let found = events(message);
        assert_eq!(found.len(), 1, "{message}");
        assert_eq!(found[0].fields["job_id"], job_id);
        assert_eq!(names(&found[0].scope), ["job"]);
    }
    drop(r);

    // Cleanup: a series keeping one checkpoint removes the older one once a newer one is
    // committed (no RDD reads it any more).
    let mut series = ctx.checkpointer::<(u64, u64)>("sums").every(1).keep(1);
    for step in 1..=2u64 {
        let rdd = sums.map_values(move |v| v * step);
        assert!(series.update(step, &rdd).unwrap());
        rdd.count().unwrap();
        drop(rdd);
    }
    flintlock::checkpoint::wait_for_removals(); // removals run in the background
    let r = recorded.lock().unwrap();
    let released = r.events("checkpoint released from its series");
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0].fields["step"], "1");
    let path = released[0].fields["path"].clone();
    let removed: Vec<&EventRecord> = r
        .events("checkpoint removed")
        .into_iter()
        .filter(|e| e.fields["path"] == path)
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "the released checkpoint {path} is removed"
    );
    assert!(!std::path::Path::new(&path).exists(), "{path} is gone");
    drop(r);

    // A task that fails says so inside its own span.
    let failing =
        ctx.parallelize(vec![1u32, 2, 3, 4], 2)
            .map(|x| if x == 3 { panic!("three") } else { x });
    assert!(failing.count().is_err());
    let r = recorded.lock().unwrap();
    let failed = r.events("task failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(names(&failed[0].scope), ["task", "stage", "job"]);
    assert_eq!(failed[0].scope[0].1["partition"], "1");
    assert!(failed[0].fields["error"].contains("three"), "{failed:?}");
    drop(r);

    // An element type whose layout cannot be traced (an enum reached only through a `Vec`
    // field of a struct inside another enum's variant) is named once, with what that
    // costs, however often it is checkpointed.
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    enum Mode {
        Slow,
        Fast(u8),
    }
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Log {
        modes: Vec<Mode>,
    }
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    enum Source {
        Local(Log),
    }
    for _ in 0..2 {
        let logs = ctx.parallelize(
            vec![
                Source::Local(Log {
                    modes: vec![Mode::Slow, Mode::Fast(2)]
                });
                4
            ],
            2,
        );
        logs.checkpoint().unwrap();
        assert_eq!(logs.count().unwrap(), 4);
    }
    let r = recorded.lock().unwrap();
    let untraced = r.events_starting("the serde layout of this element type cannot be traced");
    assert_eq!(untraced.len(), 1, "{untraced:?}");
    assert!(
        untraced[0].fields["element_type"].ends_with("::Source"),
        "{untraced:?}"
    );
    assert!(untraced[0].message.contains("undetected"), "{untraced:?}");
    drop(r);

    // A checkpoint that records no layout (format 1) is read by type name only, and the
    // reader is told so once per folder, however often it is opened.
    let golden =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden-v1/plain");
    for _ in 0..2 {
        let old = ctx.open_checkpoint::<(u64, String)>(&golden).unwrap();
        assert_eq!(old.count().unwrap(), 20);
    }
    let r = recorded.lock().unwrap();
    let unrecorded = r.events_starting("this checkpoint records no serde layout");
    assert_eq!(unrecorded.len(), 1, "{unrecorded:?}");
    assert!(
        unrecorded[0].fields["path"].ends_with("golden-v1/plain"),
        "{unrecorded:?}"
    );
    assert!(
        unrecorded[0].message.contains("undetected"),
        "{unrecorded:?}"
    );
    drop(r);

    // A subscriber that panics changes no action's outcome (as a panicking listener).
    *panic_on.lock().unwrap() = Some("job ended".into());
    let again = ctx.parallelize((0..100u64).collect::<Vec<_>>(), 2);
    again.checkpoint().unwrap();
    assert_eq!(again.count().unwrap(), 100);
    assert!(again.is_checkpointed());
}
