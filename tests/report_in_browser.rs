//! The report in a real browser (headless Chromium): the drawn DOM has one node per RDD
//! with its state's colour, a screenshot is not blank, nothing is fetched from the network,
//! and a hostile RDD name shows as text without running.
//!
//! `.ci/run` installs Debian's `chromium` when it is missing and runs these with
//! `--ignored`; where no Chromium can be found, each test prints why it did not run.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::report::{drawn, expected, pagerank_log};
use flintlock::{event_log, report};

const IGNORE: &str = "needs Chromium: .ci/run installs Debian's chromium and runs these";

/// Chromium's binary: `$FLINTLOCK_CHROMIUM`, or the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLINTLOCK_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-headless-shell",
            "chromium-browser",
            "google-chrome",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

macro_rules! chromium_or_skip {
    () => {
        match chromium() {
            Some(c) => c,
            None => {
                eprintln!(
                    "NOT RUN: no Chromium found (set FLINTLOCK_CHROMIUM or install Debian's \
                     chromium; .ci/run does) — {}",
                    IGNORE
                );
                return;
            }
        }
    };
}

/// Runs headless Chromium on `page` with `extra` flags, in a fresh profile under `work`,
/// with every background connection off; returns stdout. Killed after 120 s.
fn run(chrome: &Path, work: &Path, page: &Path, extra: &[String]) -> String {
    let profile = tempfile::tempdir_in(work).unwrap();
    let mut cmd = Command::new(chrome);
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-extensions",
        "--mute-audio",
    ]);
    // Chromium's sandbox needs user namespaces that a root CI container does not give.
    #[cfg(target_os = "linux")]
    if std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
    {
        cmd.arg("--no-sandbox");
    }
    cmd.arg(format!("--user-data-dir={}", profile.path().display()));
    cmd.args(extra);
    cmd.arg(format!("file://{}", page.display()));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s).unwrap();
        s
    });
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "chromium failed: {status}\n{err}");
    out
}

fn dump_dom(chrome: &Path, work: &Path, page: &Path) -> String {
    run(
        chrome,
        work,
        page,
        &["--virtual-time-budget=5000".into(), "--dump-dom".into()],
    )
}

/// A report of a small PageRank run, written under `dir`; returns it and its log.
fn pagerank_report(dir: &Path, name: &str) -> (PathBuf, event_log::EventLog) {
    let log_path = dir.join("events.jsonl");
    pagerank_log(&log_path, &dir.join("ckpt"), name);
    let out = dir.join("report.html");
    report::write(&log_path, &out).unwrap();
    (out, event_log::read(&log_path).unwrap())
}

#[test]
#[ignore = "needs Chromium: .ci/run installs Debian's chromium and runs these"]
fn the_drawn_dom_has_one_node_per_rdd_in_its_state_colour() {
    let chrome = chromium_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let (page, log) = pagerank_report(dir.path(), "links");
    let dom = dump_dom(&chrome, dir.path(), &page);
    assert_eq!(
        drawn(&dom),
        expected(&log),
        "the browser's DOM differs from the log"
    );
    // Each node's fill is its state's colour, as the browser parsed it.
    let mut states = std::collections::BTreeMap::new();
    for g in dom.split("<g class=\"rdd ").skip(1) {
        let state = g.split("data-state=\"").nth(1).unwrap();
        let state = &state[..state.find('"').unwrap()];
        let fill = g.split("fill=\"").nth(1).unwrap();
        let fill = &fill[..fill.find('"').unwrap()];
        let want = match state {
            "Initialized" => "#ffffff",
            "Marked" => "#fff3a8",
            "InProgress" => "#ffb454",
            "Checkpointed" => "#9be39b",
            other => panic!("state {other}"),
        };
        assert_eq!(fill, want, "{state}");
        *states.entry(state.to_string()).or_insert(0) += 1;
    }
    assert!(states.contains_key("Checkpointed"), "{states:?}");
    assert!(states.contains_key("Initialized"), "{states:?}");
    // The job that wrote a checkpoint shows it Checkpointed with the checkpoint RDD and the
    // released lineage faded.
    assert!(dom.contains("checkpoint-rdd"));
    assert!(dom.contains(" truncated\""));
}

/// Decodes a PNG into (width, height, RGBA bytes).
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgba)
}

#[test]
#[ignore = "needs Chromium: .ci/run installs Debian's chromium and runs these"]
fn a_screenshot_of_the_report_is_not_blank() {
    let chrome = chromium_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let (page, _) = pagerank_report(dir.path(), "links");
    let shot = dir.path().join("shot.png");
    run(
        &chrome,
        dir.path(),
        &page,
        &[
            "--hide-scrollbars".into(),
            "--window-size=1280,1600".into(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    let (w, h, rgba) = decode_png(&shot);
    assert!(w >= 1000 && h >= 1000, "{w}x{h}");
    let background = [0xfa, 0xfa, 0xfa];
    let pixels: Vec<[u8; 3]> = rgba.chunks(4).map(|p| [p[0], p[1], p[2]]).collect();
    let drawn = pixels.iter().filter(|p| **p != background).count();
    let colours: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        drawn * 100 > pixels.len() * 5,
        "only {drawn} of {} pixels drawn",
        pixels.len()
    );
    assert!(colours.len() > 20, "{} colours", colours.len());
    // The plot's blue line is on the first screen.
    assert!(
        pixels
            .iter()
            .any(|p| p[2] > 180 && p[0] < 90 && p[1] > 90 && p[1] < 140),
        "no depth line in the screenshot"
    );
}

/// The http(s) and ws(s) URLs a page asked for, from a Chromium net log: requests whose
/// initiator is an origin (the page's; a `file://` page is the origin `null`). Chromium's
/// own background requests have the initiator `not an origin` and are left out.
fn fetched(net_log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(net_log).unwrap();
    let log: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut urls: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let p = e.get("params")?;
            let url = p.get("url")?.as_str()?;
            // Only the request starts carry an initiator.
            let initiator = p.get("initiator")?.as_str()?;
            let network = ["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|s| url.starts_with(s));
            (network && initiator != "not an origin").then(|| url.to_string())
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

#[test]
#[ignore = "needs Chromium: .ci/run installs Debian's chromium and runs these"]
fn the_report_fetches_nothing_from_the_network() {
    let chrome = chromium_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let (page, _) = pagerank_report(dir.path(), "links");
    let net = |name: &str, page: &Path| {
        let log = dir.path().join(name);
        run(
            &chrome,
            dir.path(),
            page,
            &[
                "--virtual-time-budget=5000".into(),
                "--dump-dom".into(),
                format!("--log-net-log={}", log.display()),
            ],
        );
        fetched(&log)
    };
    // The control: a page that does fetch shows up, so the check can fail.
    let control = dir.path().join("control.html");
    std::fs::write(
        &control,
        "<!DOCTYPE html><html><body><img src=\"http://127.0.0.1:9/flintlock-probe.png\">\
         </body></html>",
    )
    .unwrap();
    let seen = net("control.json", &control);
    assert!(
        seen.iter().any(|u| u.contains("flintlock-probe")),
        "the net log does not show a page's fetch: {seen:?}"
    );
    let seen = net("report.json", &page);
    assert!(seen.is_empty(), "the report fetched {seen:?}");
}

#[test]
#[ignore = "needs Chromium: .ci/run installs Debian's chromium and runs these"]
fn a_hostile_rdd_name_shows_as_text_and_runs_nothing() {
    let chrome = chromium_or_skip!();
    let hostile =
        "<script>document.title='pwned'</script>\"'</svg><img src=x onerror=\"document.title='img'\">";
    let dir = tempfile::tempdir().unwrap();
    let (page, _) = pagerank_report(dir.path(), hostile);
    let dom = dump_dom(&chrome, dir.path(), &page);
    assert!(!dom.contains("<script"), "a script element in the DOM");
    assert!(!dom.contains("<img"), "an img element in the DOM");
    let title = &dom[dom.find("<title>").unwrap()..dom.find("</title>").unwrap()];
    assert!(
        title.contains("flintlock report"),
        "the title changed: {title}"
    );
    assert!(!dom.contains("pwned</title>"));
    // The name is there, as text, in the drawing's nodes.
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;\"'&lt;/svg&gt;&lt;img"),
        "the name is not shown as text"
    );
}
