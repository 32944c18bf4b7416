//! The timeline of stages and tasks per worker thread, and the plot of lineage depth and
//! time per job: plain SVG, scaled from the log's microseconds.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::esc;
use super::model::Model;

/// Tasks beyond this many are left out of the timeline (said under it).
pub(crate) const MAX_TIMELINE_TASKS: usize = 20_000;

const WIDTH: f64 = 1100.0;
const LABEL_W: f64 = 120.0;
const ROW_H: f64 = 18.0;

/// A colour per stage, cycling through well-separated hues.
fn stage_color(stage: u64) -> String {
    format!("hsl({}, 62%, 58%)", (stage.wrapping_mul(67)) % 360)
}

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// The timeline: a lane of jobs, a lane of stages, then one row per worker thread with its
/// tasks, coloured by stage.
pub(crate) fn timeline(m: &Model) -> String {
    let t0 = m
        .jobs
        .iter()
        .filter_map(|j| j.start_t)
        .chain(m.tasks.iter().map(|t| t.start_t))
        .min()
        .unwrap_or(0);
    let t1 = m.last_t.max(t0.saturating_add(1));
    let span = (t1.saturating_sub(t0) as f64).max(1.0);
    let plot_w = WIDTH - LABEL_W - 10.0;
    let x = |t: u64| LABEL_W + (t.saturating_sub(t0) as f64 / span) * plot_w;
    let mut rows: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
    let shown = m.tasks.len().min(MAX_TIMELINE_TASKS);
    for (i, t) in m.tasks.iter().take(shown).enumerate() {
        rows.entry(t.worker).or_default().push(i);
    }
    let lanes_top = 24.0;
    let rows_top = lanes_top + 2.0 * ROW_H + 8.0;
    let height = rows_top + rows.len().max(1) as f64 * ROW_H + 30.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" \
         aria-label=\"timeline of jobs, stages and tasks\">"
    );
    // Axis: five ticks.
    for k in 0..=5u64 {
        let t = t0 + (u128::from(t1 - t0) * u128::from(k) / 5) as u64;
        let xx = x(t);
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{xx:.1}\" y=\"14\">{}</text>",
            lanes_top - 4.0,
            height - 24.0,
            ms(t.saturating_sub(t0))
        );
    }
    let _ = write!(
        out,
        "<text class=\"lane\" x=\"4\" y=\"{:.1}\">jobs</text>\
         <text class=\"lane\" x=\"4\" y=\"{:.1}\">stages</text>",
        lanes_top + 13.0,
        lanes_top + ROW_H + 13.0
    );
    for j in &m.jobs {
        let (Some(s), e) = (j.start_t, j.end_t.unwrap_or(m.last_t)) else {
            continue;
        };
        let (a, b) = (x(s), x(e.max(s)));
        let _ = write!(
            out,
            "<rect class=\"job{}\" x=\"{a:.1}\" y=\"{lanes_top:.1}\" width=\"{:.1}\" \
             height=\"{:.1}\"><title>job {}: {}</title></rect>",
            if j.succeeded == Some(false) {
                " failed"
            } else {
                ""
            },
            (b - a).max(1.0),
            ROW_H - 3.0,
            j.id,
            j.elapsed_us.map_or_else(|| "did not end".to_string(), ms)
        );
    }
    for s in m.stages.values() {
        let Some(start) = s.start_t else {
            continue;
        };
        let end = s.end_t.unwrap_or(m.last_t).max(start);
        let (a, b) = (x(start), x(end));
        let _ = write!(
            out,
            "<rect class=\"stage-bar\" x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" \
             height=\"{:.1}\" fill=\"{}\"><title>stage {} ({}) of job {}: {} tasks, {}</title>\
             </rect>",
            lanes_top + ROW_H,
            (b - a).max(1.0),
            ROW_H - 3.0,
            stage_color(s.id),
            s.id,
            esc(&s.kind),
            s.job_id,
            s.tasks,
            s.elapsed_us.map_or_else(|| "did not end".to_string(), ms)
        );
    }
    for (r, (worker, tasks)) in rows.iter().enumerate() {
        let y = rows_top + r as f64 * ROW_H;
        let label = worker.map_or_else(|| "driver".to_string(), |w| format!("worker {w}"));
        let _ = write!(
            out,
            "<text class=\"lane\" x=\"4\" y=\"{:.1}\">{label}</text>",
            y + 13.0
        );
        for &i in tasks {
            let t = &m.tasks[i];
            let end = t.end_t.unwrap_or(m.last_t).max(t.start_t);
            let (a, b) = (x(t.start_t), x(end));
            let _ = write!(
                out,
                "<rect class=\"task{}\" x=\"{a:.1}\" y=\"{y:.1}\" width=\"{:.1}\" \
                 height=\"{:.1}\" fill=\"{}\"><title>stage {} partition {}: {}{}</title></rect>",
                if t.succeeded == Some(false) {
                    " failed"
                } else {
                    ""
                },
                (b - a).max(0.8),
                ROW_H - 3.0,
                stage_color(t.stage_id),
                t.stage_id,
                t.partition,
                t.end_t.map_or_else(
                    || "did not end".to_string(),
                    |e| ms(e.saturating_sub(t.start_t))
                ),
                t.error
                    .as_ref()
                    .map(|e| format!(" — {}", esc(&super::shorten(e, 500))))
                    .unwrap_or_default()
            );
        }
    }
    out.push_str("</svg>");
    if m.tasks.len() > shown {
        let _ = write!(
            out,
            "<p class=\"note\">The timeline shows the first {shown} of {} tasks.</p>",
            m.tasks.len()
        );
    }
    out
}

/// Lineage depth and wall time per job, as two lines over the job number; `None` below
/// two jobs.
pub(crate) fn depth_plot(m: &Model) -> Option<String> {
    let points: Vec<(u64, u64, u64)> = m
        .jobs
        .iter()
        .filter(|j| !j.lineage.is_empty())
        .map(|j| (j.id, j.depth, j.elapsed_us.unwrap_or(0)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let (w, h, left, right, top, bottom) = (720.0, 230.0, 50.0, 70.0, 26.0, 34.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max_depth = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let max_time = points.iter().map(|p| p.2).max().unwrap_or(1).max(1) as f64;
    let n = points.len();
    let px = |i: usize| left + plot_w * i as f64 / (n - 1) as f64;
    let py = |v: f64, max: f64| top + plot_h * (1.0 - v / max);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" \
         height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"lineage depth and time per job\">\
         <rect class=\"frame\" x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\"/>\
         <text class=\"label depth\" x=\"{left}\" y=\"{:.0}\">lineage depth</text>\
         <text class=\"label time\" x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">job time</text>\
         <text class=\"axis\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{max_depth:.0}</text>\
         <text class=\"axis\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">0</text>\
         <text class=\"axis\" x=\"{:.0}\" y=\"{:.1}\">{}</text>\
         <text class=\"axis\" x=\"{:.0}\" y=\"{:.1}\">0</text>\
         <text class=\"axis\" x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">job</text>",
        top - 8.0,
        w - right,
        top - 8.0,
        left - 5.0,
        top + 8.0,
        left - 5.0,
        top + plot_h,
        w - right + 5.0,
        top + 8.0,
        ms(max_time as u64),
        w - right + 5.0,
        top + plot_h,
        left + plot_w / 2.0,
        h - 4.0
    );
    let mut depth_line = String::new();
    let mut time_line = String::new();
    for (i, (job, depth, time)) in points.iter().enumerate() {
        let (x, yd, yt) = (
            px(i),
            py(*depth as f64, max_depth),
            py(*time as f64, max_time),
        );
        let _ = write!(depth_line, "{x:.1},{yd:.1} ");
        let _ = write!(time_line, "{x:.1},{yt:.1} ");
        let _ = write!(
            out,
            "<circle class=\"depth\" cx=\"{x:.1}\" cy=\"{yd:.1}\" r=\"3\"><title>job {job}: \
             depth {depth}</title></circle><circle class=\"time\" cx=\"{x:.1}\" \
             cy=\"{yt:.1}\" r=\"3\"><title>job {job}: {}</title></circle>",
            ms(*time)
        );
        if n <= 40 || i % (n / 20).max(1) == 0 {
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{job}</text>",
                top + plot_h + 14.0
            );
        }
    }
    let _ = write!(
        out,
        "<polyline class=\"depth\" points=\"{depth_line}\"/>\
         <polyline class=\"time\" points=\"{time_line}\"/></svg>"
    );
    Some(out)
}
