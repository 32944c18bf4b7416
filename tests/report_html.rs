//! `flintlock report` writes one self-contained page: a lineage drawing per job with one node
//! per RDD, state colours, stages, shuffles and the checkpoint RDD where lineage ends; every
//! string from the log escaped; a golden log of each format version still renders.

use crate::common;

use std::path::Path;

use common::report::{drawn, expected, pagerank_log};
use flintlock::event_log;
use flintlock::{report, Context};

#[test]
fn each_job_is_drawn_with_one_node_per_rdd_and_its_states() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.jsonl");
    pagerank_log(&log_path, &dir.path().join("ckpt"), "links");
    let log = event_log::read(&log_path).unwrap();
    let html = report::render(&log);
    assert_eq!(drawn(&html), expected(&log));
    // States: the checkpointed ranks are green, the checkpoint RDD is where lineage ends,
    // and the lineage it released is faded.
    assert!(html.contains("class=\"rdd state-checkpointed"));
    assert!(html.contains("fill=\"#9be39b\""));
    assert!(html.contains("checkpoint-rdd"));
    assert!(html.contains("rdd state-initialized truncated"));
    assert!(html.contains("class=\"edge shuffle"));
    assert!(html.contains("class=\"stage\" data-stage="));
    // The stage that computed the checkpointed ranks is drawn around the RDDs it computed,
    // the ones the checkpoint released included.
    let released_in_stage = html.split("<g class=\"stage\"").skip(1).any(|g| {
        let rdds = g.split("data-rdds=\"").nth(1).unwrap();
        rdds[..rdds.find('"').unwrap()].split(' ').count() > 3 && g.contains("ShuffleMap")
    });
    assert!(released_in_stage);
    assert!(html.contains("<svg class=\"timeline\""));
    assert!(html.contains("<svg class=\"plot\""));
    assert!(html.contains("<table id=\"checkpoints\">"));
    // Self-contained: nothing to fetch, no script.
    assert!(!html.contains("<script"));
    assert!(!html.contains(" src="));
    assert!(html.contains("Content-Security-Policy"));
    for url in html.match_indices("http") {
        let rest = &html[url.0..];
        assert!(
            rest.starts_with("http://www.w3.org/2000/svg\"") || rest.starts_with("http-equiv"),
            "{}",
            &rest[..40.min(rest.len())]
        );
    }
}

#[test]
fn hostile_names_paths_and_errors_show_as_text() {
    let hostile =
        "<script>document.title='pwned'</script>\"'</svg><img src=x onerror=alert(1)>&amp;";
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.jsonl");
    pagerank_log(
        &log_path,
        &dir.path().join(hostile.replace('/', "_")),
        hostile,
    );
    // A failing job: its panic message goes into the page too.
    let ctx = Context::builder()
        .event_log(dir.path().join("fail.jsonl"))
        .build()
        .unwrap();
    let _ = ctx
        .range(0..4, 1)
        .map(|_| -> u64 { panic!("{}", "</p><script>alert(2)</script>") })
        .set_name(hostile)
        .count();
    drop(ctx);
    for log in [log_path, dir.path().join("fail.jsonl")] {
        let html = report::render(&event_log::read(&log).unwrap());
        assert!(
            !html.contains("<script"),
            "a script tag in the report of {}",
            log.display()
        );
        assert!(!html.contains("<img"));
        assert!(!html.contains("</svg><img"));
        assert!(
            html.contains("&lt;script&gt;"),
            "the name is not shown as text"
        );
    }
}

#[test]
fn the_golden_logs_of_every_format_version_still_render() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/event-log");
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let log = event_log::read(&path).unwrap();
        assert!(
            log.skipped.is_empty(),
            "{}: {:?}",
            path.display(),
            log.skipped
        );
        let html = report::render(&log);
        let d = drawn(&html);
        assert!(!d.is_empty(), "{}: nothing drawn", path.display());
        assert_eq!(d, expected(&log), "{}", path.display());
        versions.push(log.version);
    }
    versions.sort();
    let all: Vec<u32> = (1..=event_log::VERSION).collect();
    assert_eq!(versions, all, "a golden log for each version");
}

/// Writes the golden log of the current version when it is missing (run explicitly when a
/// version is added; the file is then committed).
#[test]
#[ignore = "writes tests/data/event-log/v<VERSION>.jsonl; run only when a version is added"]
fn write_the_golden_log_of_this_version() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/event-log");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("v{}.jsonl", event_log::VERSION));
    assert!(
        !path.exists(),
        "{} exists: versions are never rewritten",
        path.display()
    );
    let ckpt = tempfile::tempdir().unwrap();
    pagerank_log(&path, ckpt.path(), "links");
}

#[test]
fn the_cli_writes_the_report_and_says_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.jsonl");
    pagerank_log(&log_path, &dir.path().join("ckpt"), "links");
    // Cut the last line, as a killed process leaves it.
    let bytes = std::fs::read(&log_path).unwrap();
    std::fs::write(&log_path, &bytes[..bytes.len() - 7]).unwrap();
    let out = dir.path().join("report.html");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flintlock"))
        .arg("report")
        .arg(&log_path)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("report.html"), "{stdout}");
    assert!(
        stderr.contains("line") && stderr.contains("cut off"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("id=\"skipped\""));
    // The log as its own output: refused, the log kept.
    let before = std::fs::read(&log_path).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flintlock"))
        .arg("report")
        .arg(&log_path)
        .arg("-o")
        .arg(&log_path)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("overwrite its own event log"));
    assert_eq!(std::fs::read(&log_path).unwrap(), before);
    // Not a log: exit status 2 and the path.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flintlock"))
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(dir.path().join("x.html"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("report.html") && stderr.contains("not a flintlock event log"),
        "{stderr}"
    );
}

#[test]
fn a_released_checkpoint_says_whether_its_removal_started_or_waits_for_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("events.jsonl");
    let ctx = Context::builder()
        .checkpoint_dir(dir.path().join("ckpt"))
        .event_log(&log_path)
        .build()
        .unwrap();
    let mut cp = ctx.checkpointer::<u64>("ranks").every(1).keep(1);
    let mut held = None;
    for step in 1..=3u64 {
        let r = ctx.range(0..10, 2).map(move |x| x * step);
        cp.update(step, &r).unwrap();
        r.count().unwrap();
        if step == 1 {
            held = Some(r); // still read: its removal waits for it
        }
    }
    drop((held, cp, ctx)); // the log is complete once the context is gone
    flintlock::checkpoint::wait_for_removals();
    let html = report::render(&event_log::read(&log_path).unwrap());
    let note = |step: u64| {
        let at = html
            .find(&format!("ranks&quot; step {step},"))
            .unwrap_or_else(|| panic!("no note of step {step}"));
        let rest = &html[at..];
        rest[..rest.find('<').unwrap()].to_string()
    };
    assert!(
        note(1).ends_with(": removal starts when its last reader goes"),
        "{}",
        note(1)
    );
    assert!(note(2).ends_with(": removal started"), "{}", note(2));
}
