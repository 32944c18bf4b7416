//! `flintlock report` on truncated, damaged and hostile event logs: a clear error or a
//! partial report that says what it skipped, never a panic.

use crate::common;

use std::io::Cursor;
use std::path::Path;

use flintlock::event_log::{self, read_from};
use flintlock::report;
use proptest::prelude::*;

/// A real log of a small PageRank with checkpoints, written once per test binary.
fn real_log() -> &'static [u8] {
    static LOG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        common::report::pagerank_log(&path, &dir.path().join("ckpt"), "links");
        std::fs::read(&path).unwrap()
    })
}

fn header() -> String {
    String::from_utf8_lossy(real_log())
        .lines()
        .next()
        .unwrap()
        .to_string()
}

/// Reads and renders `bytes`: either an error that names the log, or a page that ends and
/// lists every skipped line.
fn check(bytes: &[u8]) {
    let path = Path::new("hostile.jsonl");
    match read_from(Cursor::new(bytes), path) {
        Err(e) => assert!(e.to_string().contains("hostile.jsonl"), "{e}"),
        Ok(log) => {
            let html = report::render(&log);
            assert!(html.ends_with("</html>\n"));
            assert!(!html.contains("<script"));
            if !log.skipped.is_empty() {
                assert!(html.contains("id=\"skipped\""));
            }
        }
    }
}

#[test]
fn damaged_lines_are_skipped_and_named() {
    let h = header();
    let cases: Vec<(String, &str)> = vec![
        (format!("{h}\n{{\"t_us\":1,\"event\":\"JobStarted\",\"job_id\":\"zero\",\"rdd_id\":0,\"partitions\":1}}\n"), "invalid type"),
        (format!("{h}\n{{\"t_us\":1,\"event\":\"JobStarted\",\"job_id\":18446744073709551616,\"rdd_id\":0,\"partitions\":1}}\n"), "JobStarted"),
        (format!("{h}\n{{\"t_us\":1e400,\"event\":\"TaskEnded\"}}\n"), "not JSON"),
        (format!("{h}\n{{\"t_us\":-5,\"event\":\"TaskStarted\",\"stage_id\":0,\"partition\":0}}\n"), "TaskStarted"),
        (format!("{h}\n{{\"t_us\":1,\"event\":\"SomethingNew\",\"x\":1}}\n"), "unknown event \"SomethingNew\""),
        (format!("{h}\n{{\"t_us\":1,\"event\":7}}\n"), "not a string"),
        (format!("{h}\n[1,2,3]\n"), "no \"event\" field"),
        (format!("{h}\n{h}\n"), "second LogStart"),
        (format!("{h}\n{{\"t_us\":1,\"event\":\"JobStar"), "cut off"),
    ];
    for (text, why) in cases {
        let log = read_from(Cursor::new(text.as_bytes()), Path::new("x.jsonl")).unwrap();
        assert_eq!(log.skipped.len(), 1, "{text}: {:?}", log.skipped);
        assert_eq!(log.skipped[0].line, 2);
        assert!(
            log.skipped[0].reason.contains(why),
            "{why}: {:?}",
            log.skipped
        );
        let html = report::render(&log);
        assert!(html.contains("line 2:"), "{html}");
    }
    // A file of binary lines is not a log (not "empty"), nor is one whose first line is.
    let err = read_from(Cursor::new(b"\xff\xfe\n\xff\n".to_vec()), Path::new("bin")).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    let mut bytes = b"garbage \xff\n".to_vec();
    bytes.extend_from_slice(format!("{h}\n").as_bytes());
    assert!(read_from(Cursor::new(bytes), Path::new("bin")).is_err());
    let zero = h.replace(
        &format!("\"version\":{}", event_log::VERSION),
        "\"version\":0",
    );
    let err = read_from(Cursor::new(zero.into_bytes()), Path::new("z")).unwrap_err();
    assert!(
        err.to_string().contains("version 0; versions start at 1"),
        "{err}"
    );
    // Noncharacters and bidirectional overrides do not reach the page.
    let text = format!(
        "{h}\n{{\"t_us\":1,\"event\":\"PartitionerDropped\",\"rdd_id\":1,\"reason\":\"a\\uffffb\\u202egnp.exe\"}}\n"
    );
    let log = read_from(Cursor::new(text.into_bytes()), Path::new("x")).unwrap();
    let html = report::render(&log);
    assert!(!html.contains('\u{ffff}') && !html.contains('\u{202e}'));
    assert!(html.contains("a\u{fffd}b\u{fffd}gnp.exe"));
    // Not UTF-8.
    let mut bytes = format!("{h}\n").into_bytes();
    bytes.extend_from_slice(b"{\"t_us\":1,\xff\xfe}\n");
    let log = read_from(Cursor::new(bytes), Path::new("x.jsonl")).unwrap();
    assert_eq!(log.skipped[0].reason, "not UTF-8");
    // A newer version is read, and said to be newer.
    let newer = h.replace(
        &format!("\"version\":{}", event_log::VERSION),
        &format!("\"version\":{}", event_log::VERSION + 1),
    );
    let log = read_from(Cursor::new(newer.into_bytes()), Path::new("x.jsonl")).unwrap();
    assert!(log.newer_version);
    assert!(report::render(&log).contains("newer flintlock"));
}

/// Lineages with very many paths (a zip of two chains, every node joining a shared
/// branch, a complete DAG) are drawn, not hung on: layout-rs's cycle check walks every
/// path, so edges are given to it parents first.
#[test]
fn lineages_with_exponentially_many_paths_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fib.jsonl");
    let ctx = flintlock::Context::builder()
        .event_log(&path)
        .build()
        .unwrap();
    let mut a = ctx.range(0..100, 2).cache();
    let mut b = a.map(|x| x + 1).cache();
    for _ in 0..60 {
        let c = b.zip(&a).map(|(x, y)| x.wrapping_add(y)).cache();
        a = b;
        b = c;
    }
    b.count().unwrap();
    drop((a, b, ctx));
    let log = flintlock::event_log::read(&path).unwrap();
    let html = report::render(&log);
    assert!(!html.contains("Lineage not drawn"), "not drawn");
    let nodes = log
        .lines
        .iter()
        .find_map(|l| match &l.record {
            flintlock::event_log::Record::JobLineage { nodes, .. } => Some(nodes.len()),
            _ => None,
        })
        .unwrap();
    assert_eq!(nodes, 122);
    assert_eq!(html.matches("<g class=\"rdd ").count(), nodes);
    // Complete DAGs: every node a parent of every later one. 16 nodes are drawn; 40 (with
    // about 10,000 layers skipped by edges) are listed instead, not hung on.
    let h = header();
    for (n, drawn) in [(16u64, true), (40, false)] {
        let nodes: Vec<String> = (0..n)
        .map(|i| {
            let parents: Vec<String> = (i + 1..n)
                .map(|p| format!("{{\"parent\":{p},\"kind\":\"OneToOne\"}}"))
                .collect();
            format!(
                "{{\"id\":{i},\"kind\":\"K\",\"call_site\":\"x\",\"partitions\":1,\"storage_level\":\"None\",\"checkpoint_state\":\"Initialized\",\"parents\":[{}]}}",
                parents.join(",")
            )
        })
        .collect();
        let text = format!(
        "{h}\n{{\"t_us\":1,\"event\":\"JobStarted\",\"job_id\":0,\"rdd_id\":0,\"partitions\":1}}\n\
         {{\"t_us\":2,\"event\":\"JobLineage\",\"job_id\":0,\"nodes\":[{}]}}\n",
        nodes.join(",")
    );
        let log = read_from(Cursor::new(text.into_bytes()), Path::new("x")).unwrap();
        let html = report::render(&log);
        if drawn {
            assert_eq!(html.matches("<g class=\"rdd ").count() as u64, n);
        } else {
            assert!(html.contains("too many for the layout engine"), "{n}");
        }
    }
}

#[test]
fn times_at_the_ends_of_u64_render() {
    let h = header();
    let max = u64::MAX;
    for (a, b) in [(max, max), (0, max), (max - 1, 0)] {
        let text = format!(
            "{h}\n{{\"t_us\":{a},\"event\":\"JobStarted\",\"job_id\":0,\"rdd_id\":0,\"partitions\":1}}\n\
             {{\"t_us\":{a},\"event\":\"TaskStarted\",\"stage_id\":0,\"partition\":0}}\n\
             {{\"t_us\":{b},\"event\":\"TaskEnded\",\"stage_id\":0,\"partition\":0,\"succeeded\":true,\"elapsed_us\":{max}}}\n\
             {{\"t_us\":{b},\"event\":\"JobEnded\",\"job_id\":0,\"succeeded\":true,\"elapsed_us\":{max}}}\n"
        );
        let log = read_from(Cursor::new(text.into_bytes()), Path::new("x")).unwrap();
        let html = report::render(&log);
        assert!(!html.contains("NaN") && !html.contains("inf"), "{a} {b}");
    }
}

#[test]
fn hostile_lineages_render_without_panicking() {
    let h = header();
    let node = |id: u64, parents: &[u64]| {
        format!(
            "{{\"id\":{id},\"kind\":\"MapPartitionsRdd\",\"call_site\":\"x\",\"partitions\":18446744073709551615,\"storage_level\":\"None\",\"checkpoint_state\":\"Weird\",\"parents\":[{}]}}",
            parents
                .iter()
                .map(|p| format!("{{\"parent\":{p},\"kind\":\"Shuffle\"}}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let lineage = |nodes: Vec<String>| {
        format!(
            "{h}\n{{\"t_us\":5,\"event\":\"JobStarted\",\"job_id\":0,\"rdd_id\":0,\"partitions\":1}}\n\
             {{\"t_us\":6,\"event\":\"JobLineage\",\"job_id\":0,\"nodes\":[{}]}}\n\
             {{\"t_us\":18446744073709551615,\"event\":\"JobEnded\",\"job_id\":0,\"succeeded\":true,\"elapsed_us\":18446744073709551615}}\n",
            nodes.join(",")
        )
    };
    // A cycle, a self edge, a missing parent, duplicate ids.
    check(
        lineage(vec![
            node(0, &[1]),
            node(1, &[2, 1]),
            node(2, &[0, 99]),
            node(2, &[]),
        ])
        .as_bytes(),
    );
    // Too many nodes to draw: listed as not drawn.
    let many: Vec<String> = (0..3000).map(|i| node(i, &[i + 1])).collect();
    let log = read_from(Cursor::new(lineage(many).into_bytes()), Path::new("x")).unwrap();
    let html = report::render(&log);
    assert!(html.contains("Lineage not drawn"), "too many nodes drawn");
    // A deep chain of 250 is drawn.
    let deep: Vec<String> = (0..250).map(|i| node(i, &[i + 1])).collect();
    check(lineage(deep).as_bytes());
    // Tasks that end before they start, never end, or end twice.
    check(
        format!(
            "{h}\n{{\"t_us\":100,\"event\":\"TaskEnded\",\"stage_id\":3,\"partition\":1,\"succeeded\":true,\"elapsed_us\":5000}}\n\
             {{\"t_us\":50,\"worker\":9999999,\"event\":\"TaskStarted\",\"stage_id\":3,\"partition\":1}}\n\
             {{\"t_us\":40,\"event\":\"TaskEnded\",\"stage_id\":3,\"partition\":1,\"succeeded\":false,\"elapsed_us\":1}}\n\
             {{\"t_us\":41,\"event\":\"TaskEnded\",\"stage_id\":3,\"partition\":1,\"succeeded\":false,\"elapsed_us\":1}}\n\
             {{\"t_us\":42,\"event\":\"StageEnded\",\"job_id\":7,\"stage_id\":3,\"succeeded\":false,\"elapsed_us\":1}}\n\
             {{\"t_us\":43,\"event\":\"CheckpointCommitted\",\"rdd_id\":1,\"path\":\"</td><script>\",\"bytes\":18446744073709551615}}\n"
        )
        .as_bytes(),
    );
}

/// One way of damaging a log.
#[derive(Clone, Debug)]
enum Damage {
    Truncate(usize),
    FlipByte(usize, u8),
    ReplaceLine(usize, String),
    InsertLine(usize, String),
    DuplicateLine(usize),
}

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("1e308".to_string()),
        Just("18446744073709551616".to_string()),
        Just("\"<script>\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[a-z<>\"/ ]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

fn hostile_line() -> impl Strategy<Value = String> {
    let events = prop_oneof![
        Just("JobStarted"),
        Just("JobLineage"),
        Just("JobEnded"),
        Just("StageStarted"),
        Just("TaskStarted"),
        Just("TaskEnded"),
        Just("CheckpointCommitted"),
        Just("LineageTruncated"),
        Just("Nope"),
    ];
    let fields = prop_oneof![
        Just("job_id"),
        Just("rdd_id"),
        Just("stage_id"),
        Just("partition"),
        Just("nodes"),
        Just("elapsed_us"),
        Just("succeeded"),
        Just("path"),
        Just("t_us"),
        Just("worker"),
    ];
    (
        events,
        prop::collection::vec((fields, json_value()), 0..8),
        any::<bool>(),
    )
        .prop_map(|(event, fields, cut)| {
            let mut s = format!("{{\"event\":\"{event}\"");
            for (k, v) in fields {
                s.push_str(&format!(",\"{k}\":{v}"));
            }
            s.push('}');
            if cut {
                s.truncate(s.len() / 2);
            }
            s
        })
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::FlipByte(i, b)),
        (any::<usize>(), hostile_line()).prop_map(|(i, l)| Damage::ReplaceLine(i, l)),
        (any::<usize>(), hostile_line()).prop_map(|(i, l)| Damage::InsertLine(i, l)),
        any::<usize>().prop_map(Damage::DuplicateLine),
    ]
}

fn apply(log: &[u8], damages: &[Damage]) -> Vec<u8> {
    let mut bytes = log.to_vec();
    for d in damages {
        match d {
            Damage::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Damage::FlipByte(i, b) => {
                if !bytes.is_empty() {
                    let k = i % bytes.len();
                    bytes[k] = *b;
                }
            }
            Damage::ReplaceLine(i, l) | Damage::InsertLine(i, l) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                let k = i % (lines.len() + 1);
                if matches!(d, Damage::ReplaceLine(..)) && k < lines.len() {
                    lines[k] = l.clone();
                } else {
                    lines.insert(k, l.clone());
                }
                bytes = (lines.join("\n") + "\n").into_bytes();
            }
            Damage::DuplicateLine(i) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                if !lines.is_empty() {
                    let k = i % lines.len();
                    let l = lines[k].clone();
                    lines.insert(k, l);
                }
                bytes = (lines.join("\n") + "\n").into_bytes();
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any damage to a real log: an error naming the log, or a report that ends and says
    /// what it skipped; never a panic.
    #[test]
    fn any_damaged_log_is_an_error_or_a_report(damages in prop::collection::vec(damage(), 1..5)) {
        check(&apply(real_log(), &damages));
    }

    /// Arbitrary bytes after a valid first line.
    #[test]
    fn arbitrary_bytes_after_the_first_line(tail in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = format!("{}\n", header()).into_bytes();
        bytes.extend(tail);
        check(&bytes);
    }
}
