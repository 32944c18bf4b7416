//! `flintlock report`: one self-contained HTML page from an [event log](crate::event_log),
//! with each job's lineage drawn as SVG (checkpoint states coloured, stages boxed, shuffles
//! marked, truncated lineage faded), a timeline of stages and tasks per worker thread, the
//! checkpoint writes, and lineage depth and time per job.
//!
//! The page fetches nothing and runs no script: its Content-Security-Policy allows neither,
//! and every string from the log (RDD names, call sites, paths, error messages) is escaped.
//!
//! ```no_run
//! let summary = flintlock::report::write("run.jsonl", "report.html")?;
//! println!("{} jobs; {} lines skipped", summary.jobs, summary.skipped.len());
//! # Ok::<(), flintlock::Error>(())
//! ```

mod charts;
mod dag;
mod model;

use std::fmt::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::event_log::{self, EventLog, Record, SkippedLine};
use model::Model;

/// Jobs beyond this many are listed in a table without their lineage drawn.
pub const MAX_DRAWN_JOBS: usize = 200;

/// What [`write()`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportSummary {
    /// Jobs in the report.
    pub jobs: usize,
    /// Stages in the report.
    pub stages: usize,
    /// Tasks in the report.
    pub tasks: usize,
    /// Lines of the log left out (the report says so too).
    pub skipped: Vec<SkippedLine>,
    /// Jobs whose lineage is not drawn, and why.
    pub not_drawn: Vec<(u64, String)>,
}

/// Reads the event log at `log` and writes its report to `out`.
///
/// # Errors
/// The errors of [`event_log::read`]; [`Error::Io`] naming `out` when it cannot be written;
/// [`Error::InvalidArgument`] when `out` is the log itself.
pub fn write(log: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<ReportSummary> {
    let (log, out) = (log.as_ref(), out.as_ref());
    let same = match (std::fs::canonicalize(log), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::InvalidArgument(format!(
            "the report would overwrite its own event log {}; write it to another file",
            log.display()
        )));
    }
    let log = event_log::read(log)?;
    let (html, summary) = render_with_summary(&log);
    std::fs::write(out, html).map_err(|e| Error::io("write", out, e))?;
    Ok(summary)
}

/// The report of `log` as one HTML page.
pub fn render(log: &EventLog) -> String {
    render_with_summary(log).0
}

/// HTML-escapes `s` for text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters and noncharacters are not allowed in XML text (inline
            // SVG); bidirectional overrides would let a name display as another.
            c if (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{fdd0}'..='\u{fdef}')
                || (c as u32 & 0xfffe) == 0xfffe
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push('\u{fffd}')
            }
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn fmt_us(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}
.meta{color:#555}.note{color:#555;font-size:13px}
.warning{background:#fff4e5;border:1px solid #f0b45b;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.figure{overflow-x:auto;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:6px;margin:6px 0}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:14px;height:12px;border:1px solid #777;margin-right:4px;vertical-align:-2px}
svg text{font:11px ui-monospace,'DejaVu Sans Mono',monospace;fill:#222}
svg .b{font-weight:bold}
svg.dag .rdd text{text-anchor:middle}
svg.dag .rdd rect{stroke:#444;stroke-width:1.2}
svg.dag .rdd.cached rect{stroke-width:3}
svg.dag .rdd.checkpoint-rdd rect{stroke:#1d7a1d;stroke-width:2.2}
svg.dag .truncated{opacity:.32}
svg.dag .edge{fill:none;stroke:#555;stroke-width:1.3}
svg.dag .edge.shuffle{stroke:#c0392b;stroke-dasharray:6 4;stroke-width:1.6}
svg.dag .edge.checkpoint{stroke:#1d7a1d;stroke-width:2}
svg.dag .shuffle-label{fill:#c0392b;font-size:10px}
svg.dag .stage rect{fill:#f3f6fb;stroke:#8aa2c8;stroke-dasharray:3 3}
svg.dag .stage text{fill:#4a6590;font-size:10px}
svg.timeline .tick{stroke:#e2e2e2}svg .axis{fill:#666;font-size:10px}
svg.timeline .lane{fill:#444}
svg.timeline .job{fill:#9fb7d9}svg.timeline .failed{stroke:#c0392b;stroke-width:2}
svg.plot .frame{fill:#fff;stroke:#ccc}
svg.plot polyline{fill:none;stroke-width:2}
svg.plot circle.depth,svg.plot polyline.depth{stroke:#2e6fd8}svg.plot circle.depth{fill:#2e6fd8}
svg.plot circle.time,svg.plot polyline.time{stroke:#e67e22}svg.plot circle.time{fill:#e67e22}
svg.plot .label{font-size:11px;font-weight:bold}svg.plot .label.depth{fill:#2e6fd8}
svg.plot .label.time{fill:#e67e22}
";

fn legend() -> String {
    let mut out = String::from("<p class=\"legend\">");
    for state in ["Initialized", "Marked", "InProgress", "Checkpointed"] {
        let _ = write!(
            out,
            "<span><i style=\"background:{}\"></i>{state}</span>",
            dag::state_color(state)
        );
    }
    out.push_str(
        "<span><i style=\"background:#fff;opacity:.32\"></i>lineage released by a \
         checkpoint</span><span><i style=\"border:2px solid #1d7a1d\"></i>checkpoint RDD \
         (where lineage now ends)</span><span><i style=\"border-width:3px\"></i>cached</span>\
         <span style=\"color:#c0392b\">- - → shuffle</span><span style=\"color:#4a6590\">\
         dashed box: a stage</span></p>",
    );
    out
}

fn render_with_summary(log: &EventLog) -> (String, ReportSummary) {
    let m = Model::build(log);
    let mut not_drawn = Vec::new();
    let (app_name, app_id, started_at, flintlock, threads) = match &log.start.record {
        Record::LogStart {
            app_name,
            app_id,
            started_at,
            flintlock,
            threads,
            ..
        } => (
            app_name.as_str(),
            app_id.as_str(),
            started_at.as_str(),
            flintlock.as_str(),
            *threads,
        ),
        _ => ("?", "?", "?", "?", 0),
    };
    let mut h = String::with_capacity(64 << 10);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>flintlock report: {}</title><style>{STYLE}</style></head><body>\
         <h1>flintlock job report: {}</h1><p class=\"meta\">app id <b>{}</b> · started {} · \
         {threads} worker threads · written by flintlock {} (event log version {}) · {} \
         jobs, {} stages, {} tasks, {} checkpoints</p>",
        esc(app_name),
        esc(app_name),
        esc(app_id),
        esc(started_at),
        esc(flintlock),
        log.version,
        m.jobs.len(),
        m.stages.len(),
        m.tasks.len(),
        m.checkpoints.len()
    );
    if log.newer_version {
        let _ = write!(
            h,
            "<p class=\"warning\">This log was written by a newer flintlock (event log \
             version {}; this one reads up to {}). What this version knows is shown.</p>",
            log.version,
            event_log::VERSION
        );
    }
    if !log.skipped.is_empty() {
        let _ =
            write!(
            h,
            "<div class=\"warning\" id=\"skipped\"><b>{} line{} of the log {} left out:</b><ul>",
            log.skipped.len(),
            if log.skipped.len() == 1 { "" } else { "s" },
            if log.skipped.len() == 1 { "was" } else { "were" }
        );
        for s in log.skipped.iter().take(20) {
            let _ = write!(
                h,
                "<li>line {}: {}</li>",
                s.line,
                esc(&shorten(&s.reason, 300))
            );
        }
        if log.skipped.len() > 20 {
            let _ = write!(h, "<li>and {} more</li>", log.skipped.len() - 20);
        }
        h.push_str("</ul></div>");
    }
    if let Some(plot) = charts::depth_plot(&m) {
        let _ = write!(
            h,
            "<h2>Lineage depth and time per job</h2><p class=\"note\">Depth is the longest \
             path from the job's RDD to a source or a checkpoint (blue); time is the job's wall \
             time (orange). In an iterative job, depth grows each round until a checkpoint \
             truncates it.</p><div class=\"figure\">{plot}</div>"
        );
    }
    h.push_str("<h2>Jobs</h2>");
    h.push_str(&legend());
    for (k, job) in m.jobs.iter().enumerate() {
        let stages = m.stages_of(job.id);
        let outcome = match job.succeeded {
            Some(true) => "succeeded".to_string(),
            Some(false) => "failed".to_string(),
            None => "did not end in this log".to_string(),
        };
        let _ = write!(
            h,
            "<section class=\"job\" id=\"job-{}\"><h3>Job {}{} · {} · {} · lineage depth {}</h3>",
            job.id,
            job.id,
            job.rdd_id
                .map(|r| format!(" on rdd {r}"))
                .unwrap_or_default(),
            job.elapsed_us.map_or_else(|| "-".to_string(), fmt_us),
            outcome,
            job.depth
        );
        if let Some(e) = &job.error {
            let _ = write!(h, "<p class=\"warning\">{}</p>", esc(&shorten(e, 2000)));
        }
        if k < MAX_DRAWN_JOBS {
            match dag::render(job, &stages) {
                Ok(svg) => {
                    let _ = write!(h, "<div class=\"figure\">{svg}</div>");
                }
                Err(why) => {
                    let _ = write!(h, "<p class=\"note\">Lineage not drawn: {}.</p>", esc(&why));
                    not_drawn.push((job.id, why));
                }
            }
        } else {
            not_drawn.push((
                job.id,
                format!("only the first {MAX_DRAWN_JOBS} jobs are drawn"),
            ));
        }
        if !stages.is_empty() {
            h.push_str(
                "<table><tr><th>stage</th><th>kind</th><th>rdd</th><th>shuffle</th>\
                 <th>tasks</th><th>time</th><th>outcome</th></tr>",
            );
            for s in &stages {
                let _ = write!(
                    h,
                    "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td>{}</td></tr>",
                    s.id,
                    esc(&s.kind),
                    s.rdd_id,
                    s.shuffle_id
                        .map_or_else(|| "-".to_string(), |x| x.to_string()),
                    s.tasks,
                    s.elapsed_us.map_or_else(|| "-".to_string(), fmt_us),
                    match s.succeeded {
                        Some(true) => "ok",
                        Some(false) => "failed",
                        None => "did not end",
                    }
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>");
    }
    if m.jobs.len() > MAX_DRAWN_JOBS {
        let _ = write!(
            h,
            "<p class=\"note\">The lineage of the first {MAX_DRAWN_JOBS} of {} jobs is drawn.</p>",
            m.jobs.len()
        );
    }
    let _ = write!(
        h,
        "<h2>Timeline</h2><p class=\"note\">Jobs, stages, and each worker thread's tasks \
         (coloured by stage; hover for details).</p><div class=\"figure\">{}</div>",
        charts::timeline(&m)
    );
    h.push_str("<h2>Checkpoint writes</h2>");
    if m.checkpoints.is_empty() {
        h.push_str("<p class=\"note\">No checkpoints were written.</p>");
    } else {
        h.push_str(
            "<table id=\"checkpoints\"><tr><th>rdd</th><th>kind</th><th>parts</th>\
             <th>records</th><th>bytes</th><th>time</th><th>throughput</th><th>path</th></tr>",
        );
        for c in m.checkpoints.values() {
            let bytes = c.committed_bytes.unwrap_or(c.part_bytes);
            let time = match (c.started_t, c.committed_t) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            let rate = match time {
                Some(t) if t > 0 && bytes > 0 => {
                    format!("{}/s", fmt_bytes((bytes as f64 / (t as f64 / 1e6)) as u64))
                }
                _ => "-".to_string(),
            };
            let _ = write!(
                h,
                "<tr><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{rate}</td><td>{}</td></tr>",
                c.rdd_id,
                esc(c.kind.as_deref().unwrap_or("-")),
                c.parts,
                c.records,
                fmt_bytes(bytes),
                time.map_or_else(|| "-".to_string(), fmt_us),
                c.path.as_deref().map_or_else(
                    || "not committed in this log".to_string(),
                    |p| format!("<code>{}</code>", esc(p))
                )
            );
        }
        h.push_str("</table>");
    }
    if !m.notes.is_empty() {
        h.push_str("<h2>Other events</h2><table><tr><th>at</th><th>what</th><th>detail</th></tr>");
        for (t, what, text) in m.notes.iter().take(2000) {
            let _ = write!(
                h,
                "<tr><td class=\"n\">{}</td><td>{what}</td><td>{}</td></tr>",
                fmt_us(*t),
                esc(&shorten(text, 2000))
            );
        }
        h.push_str("</table>");
        if m.notes.len() > 2000 {
            let _ = write!(h, "<p class=\"note\">and {} more</p>", m.notes.len() - 2000);
        }
    }
    h.push_str("</body></html>\n");
    let summary = ReportSummary {
        jobs: m.jobs.len(),
        stages: m.stages.len(),
        tasks: m.tasks.len(),
        skipped: log.skipped.clone(),
        not_drawn,
    };
    (h, summary)
}
