//! One job's lineage as an SVG: laid out by `layout-rs` (a Sugiyama-style layered layout),
//! drawn here so that every string is escaped and every node carries its RDD id and state.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::model::{Job, Stage};
use super::{esc, shorten};

/// Graphs with more RDDs than this are listed, not drawn (the layout is superlinear).
pub(crate) const MAX_DRAWN_NODES: usize = 250;

/// The most nodes layout-rs is given, counting one per layer an edge skips.
const MAX_LAYOUT_ELEMENTS: usize = 2500;

const CHAR_W: f64 = 6.8;
const LINE_H: f64 = 14.0;

/// The fill of each checkpoint state (also the legend's).
pub(crate) fn state_color(state: &str) -> &'static str {
    match state {
        "Marked" => "#fff3a8",
        "InProgress" => "#ffb454",
        "Checkpointed" => "#9be39b",
        _ => "#ffffff",
    }
}

/// The CSS class of a state (`state-in-progress`).
pub(crate) fn state_class(state: &str) -> &'static str {
    match state {
        "Marked" => "state-marked",
        "InProgress" => "state-in-progress",
        "Checkpointed" => "state-checkpointed",
        "Initialized" => "state-initialized",
        _ => "state-unknown",
    }
}

struct DrawNode {
    id: u64,
    lines: Vec<(String, bool)>,
    title: String,
    state: String,
    cached: bool,
    checkpoint_rdd: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EdgeKind {
    Narrow,
    Shuffle,
    /// From a checkpoint RDD to the RDD whose lineage it replaced.
    Checkpoint,
}

struct DrawEdge {
    from: usize,
    to: usize,
    kind: EdgeKind,
    truncated: bool,
}

/// Collects the arrows layout-rs routes, by the edge index each carries in its properties;
/// nodes are drawn from their laid-out positions instead.
#[derive(Default)]
struct Arrows(HashMap<usize, Vec<(Point, Point)>>);

impl RenderBackend for Arrows {
    fn draw_rect(
        &mut self,
        _: Point,
        _: Point,
        _: &StyleAttr,
        _: Option<String>,
        _: Option<ClipHandle>,
    ) {
    }
    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}
    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}
    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}
    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _: bool,
        _: (bool, bool),
        _: &StyleAttr,
        properties: Option<String>,
        _: &str,
    ) {
        if let Some(i) = properties.and_then(|p| p.parse().ok()) {
            self.0.insert(i, path.to_vec());
        }
    }
    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

/// The SVG of `job`'s lineage as it stood when the job ended (states coloured, truncated
/// parents faded, checkpoint RDDs where lineage now ends, stages boxed, shuffles marked),
/// or an explanation of why it is not drawn.
pub(crate) fn render(job: &Job, stages: &[&Stage]) -> Result<String, String> {
    if job.omitted_nodes > 0 {
        return Err(format!(
            "its lineage has {} RDDs, more than the {MAX_DRAWN_NODES} drawn; checkpoint it \
             to shorten it",
            (job.lineage.len() as u64).saturating_add(job.omitted_nodes)
        ));
    }
    let (nodes, edges) = graph(job);
    let (rank, edges) = acyclic(nodes.len(), edges);
    if nodes.is_empty() {
        return Err("the log has no lineage snapshot of this job".to_string());
    }
    if nodes.len() > MAX_DRAWN_NODES {
        return Err(format!(
            "its lineage has {} RDDs, more than the {MAX_DRAWN_NODES} drawn; checkpoint it \
             to shorten it",
            nodes.len()
        ));
    }
    // layout-rs splits an edge that skips layers into one dummy node per layer, and its
    // crossing reduction grows with the square of a layer's width: a graph with many long
    // edges (only a hand-made log has thousands) is listed instead.
    let mut by_rank: Vec<usize> = (0..nodes.len()).collect();
    by_rank.sort_by_key(|&v| rank[v]);
    let mut layer = vec![0usize; nodes.len()];
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for e in &edges {
        into[e.to].push(e.from);
    }
    for &v in &by_rank {
        layer[v] = into[v].iter().map(|&p| layer[p] + 1).max().unwrap_or(0);
    }
    let dummies: usize = edges
        .iter()
        .map(|e| layer[e.to].saturating_sub(layer[e.from] + 1))
        .sum();
    if nodes.len() + dummies > MAX_LAYOUT_ELEMENTS {
        return Err(format!(
            "its {} RDDs and {} edges span {} layers between them, too many for the layout \
             engine",
            nodes.len(),
            edges.len(),
            dummies
        ));
    }
    let sizes: Vec<Point> = nodes.iter().map(size_of).collect();
    // layout-rs asserts its invariants (also in release builds): a panic here is a graph
    // it cannot lay out, reported as such.
    let laid = catch_unwind(AssertUnwindSafe(|| {
        let mut vg = VisualGraph::new(Orientation::TopToBottom);
        // Its validation re-checks the whole graph for cycles after every edge, by a search
        // that walks every path (exponential in a lineage with many paths); the graph is
        // acyclic by construction here (`acyclic`).
        vg.dag.set_validate(false);
        let handles: Vec<_> = sizes
            .iter()
            .map(|s| {
                vg.add_node(Element::create(
                    ShapeKind::new_box(""),
                    StyleAttr::simple(),
                    Orientation::LeftToRight,
                    *s,
                ))
            })
            .collect();
        // Edges into a node are added before the edges out of it (parents first): layout-rs
        // checks each new edge for a cycle by a search from its head that walks every path,
        // and this order leaves that search nothing to walk.
        let mut order: Vec<usize> = (0..edges.len()).collect();
        order.sort_by_key(|&i| (rank[edges[i].to], rank[edges[i].from]));
        for i in order {
            let e = &edges[i];
            vg.add_edge(
                Arrow::simple_with_properties("", i.to_string()),
                handles[e.from],
                handles[e.to],
            );
        }
        let mut arrows = Arrows::default();
        vg.do_it(false, false, false, &mut arrows);
        let boxes: Vec<(Point, Point)> = handles
            .iter()
            .map(|h| {
                let p = vg.pos(*h);
                (p.center(), p.size(false))
            })
            .collect();
        (boxes, arrows.0)
    }));
    let (boxes, mut arrows) =
        laid.map_err(|_| "the layout engine could not lay this graph out".to_string())?;
    let arrows: Vec<Vec<(Point, Point)>> = (0..edges.len())
        .map(|i| arrows.remove(&i).unwrap_or_default())
        .collect();
    Ok(draw(job, stages, &nodes, &edges, &boxes, &arrows))
}

/// The nodes (the job's lineage, then checkpoint RDDs swapped in during the job) and edges
/// (parent to child).
fn graph(job: &Job) -> (Vec<DrawNode>, Vec<DrawEdge>) {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut nodes = Vec::new();
    for n in &job.lineage {
        if index.contains_key(&n.id) {
            continue;
        }
        index.insert(n.id, nodes.len());
        let state = job
            .end_states
            .get(&n.id)
            .cloned()
            .unwrap_or_else(|| n.checkpoint_state.clone());
        let mut lines = Vec::new();
        if let Some(name) = &n.name {
            lines.push((shorten(name, 48), true));
        }
        lines.push((
            format!("{} [{}]", shorten(&n.kind, 40), n.id),
            n.name.is_none(),
        ));
        lines.push((shorten(&n.call_site, 48), false));
        let mut third = format!(
            "{} partition{}",
            n.partitions,
            if n.partitions == 1 { "" } else { "s" }
        );
        if let Some(p) = &n.partitioner {
            let _ = write!(third, " · {}", shorten(p, 24));
        }
        lines.push((third, false));
        let cached = n.storage_level != "None" && !n.storage_level.is_empty();
        let mut fourth = Vec::new();
        if state != "Initialized" {
            fourth.push(shorten(&state, 20));
        }
        if cached {
            fourth.push("cached".to_string());
        }
        if !fourth.is_empty() {
            lines.push((fourth.join(" · "), false));
        }
        let title = format!(
            "{}{} [{}]\n{}\n{} partitions{}\nstorage: {}\ncheckpoint: {}",
            n.name
                .as_ref()
                .map(|s| format!("{}\n", shorten(s, 1000)))
                .unwrap_or_default(),
            shorten(&n.kind, 200),
            n.id,
            shorten(&n.call_site, 1000),
            n.partitions,
            n.partitioner
                .as_ref()
                .map(|p| format!(", {}", shorten(p, 200)))
                .unwrap_or_default(),
            shorten(&n.storage_level, 200),
            shorten(&state, 200)
        );
        nodes.push(DrawNode {
            id: n.id,
            lines,
            title,
            state,
            cached,
            checkpoint_rdd: n.kind.contains("CheckpointRdd"),
        });
    }
    for t in &job.truncations {
        if !index.contains_key(&t.checkpoint) && index.contains_key(&t.rdd) {
            index.insert(t.checkpoint, nodes.len());
            nodes.push(DrawNode {
                id: t.checkpoint,
                lines: vec![
                    (format!("{} [{}]", shorten(&t.kind, 40), t.checkpoint), true),
                    (format!("lineage of rdd {} ends here", t.rdd), false),
                ],
                title: format!(
                    "{} [{}]: swapped in for the lineage of rdd {} when its checkpoint \
                     committed; parents released: {:?}",
                    t.kind, t.checkpoint, t.rdd, t.released
                ),
                state: "Checkpointed".to_string(),
                cached: false,
                checkpoint_rdd: true,
            });
        }
    }
    if nodes.len() > MAX_DRAWN_NODES {
        return (nodes, Vec::new());
    }
    let truncated: HashSet<u64> = job.truncations.iter().map(|t| t.rdd).collect();
    let mut edges = Vec::new();
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for n in &job.lineage {
        let Some(&child) = index.get(&n.id) else {
            continue;
        };
        for e in &n.parents {
            let Some(&parent) = index.get(&e.parent) else {
                continue;
            };
            if parent == child || !seen.insert((parent, child)) {
                continue;
            }
            edges.push(DrawEdge {
                from: parent,
                to: child,
                kind: if e.kind == "Shuffle" {
                    EdgeKind::Shuffle
                } else {
                    EdgeKind::Narrow
                },
                truncated: truncated.contains(&n.id),
            });
        }
    }
    for t in &job.truncations {
        if let (Some(&c), Some(&r)) = (index.get(&t.checkpoint), index.get(&t.rdd))
            && c != r
            && seen.insert((c, r))
        {
            edges.push(DrawEdge {
                from: c,
                to: r,
                kind: EdgeKind::Checkpoint,
                truncated: false,
            });
        }
    }
    (nodes, edges)
}

/// A topological rank of each node (parents before children, by Kahn's algorithm), and the
/// edges without those that close a cycle (only a damaged log has any; they are not drawn).
fn acyclic(n: usize, edges: Vec<DrawEdge>) -> (Vec<usize>, Vec<DrawEdge>) {
    let mut indegree = vec![0usize; n];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &edges {
        indegree[e.to] += 1;
        children[e.from].push(e.to);
    }
    let mut rank = vec![usize::MAX; n];
    let mut ready: std::collections::VecDeque<usize> =
        (0..n).filter(|&v| indegree[v] == 0).collect();
    let mut next = 0;
    while let Some(v) = ready.pop_front() {
        rank[v] = next;
        next += 1;
        for &c in &children[v] {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push_back(c);
            }
        }
    }
    // Nodes on a cycle: ranked after the rest, in order.
    for r in rank.iter_mut().filter(|r| **r == usize::MAX) {
        *r = next;
        next += 1;
    }
    let kept = edges
        .into_iter()
        .filter(|e| rank[e.from] < rank[e.to])
        .collect();
    (rank, kept)
}

fn size_of(n: &DrawNode) -> Point {
    let chars = n
        .lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(1);
    Point::new(
        (chars as f64 * CHAR_W + 18.0).max(90.0),
        n.lines.len() as f64 * LINE_H + 12.0,
    )
}

/// The nodes still reached from the job's RDD without crossing a truncated edge: the rest
/// is lineage the checkpoint released, drawn faded.
fn live_nodes(nodes: &[DrawNode], edges: &[DrawEdge]) -> HashSet<usize> {
    let mut parents: HashMap<usize, Vec<usize>> = HashMap::new();
    for e in edges.iter().filter(|e| !e.truncated) {
        parents.entry(e.to).or_default().push(e.from);
    }
    let mut live = HashSet::new();
    let mut stack = if nodes.is_empty() { vec![] } else { vec![0] };
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(parents.get(&n).into_iter().flatten().copied());
        }
    }
    live
}

fn draw(
    job: &Job,
    stages: &[&Stage],
    nodes: &[DrawNode],
    edges: &[DrawEdge],
    boxes: &[(Point, Point)],
    arrows: &[Vec<(Point, Point)>],
) -> String {
    let live = live_nodes(nodes, edges);
    let index: HashMap<u64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    // Stage boxes: the RDDs a stage's tasks compute (its RDD and narrow ancestors).
    let mut stage_boxes = Vec::new();
    for s in stages {
        let Some(&root) = index.get(&s.rdd_id) else {
            continue;
        };
        let mut members = HashSet::new();
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if !members.insert(n) {
                continue;
            }
            for e in edges {
                if e.to == n && e.kind == EdgeKind::Narrow {
                    stack.push(e.from);
                }
            }
        }
        let pad = 8.0 + 4.0 * (stage_boxes.len() % 3) as f64;
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for &n in &members {
            let (c, s) = boxes[n];
            x0 = x0.min(c.x - s.x / 2.0 - pad);
            y0 = y0.min(c.y - s.y / 2.0 - pad - 12.0);
            x1 = x1.max(c.x + s.x / 2.0 + pad);
            y1 = y1.max(c.y + s.y / 2.0 + pad);
        }
        let mut ids: Vec<u64> = members.iter().map(|&n| nodes[n].id).collect();
        ids.sort_unstable();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        stage_boxes.push((s, ids.join(" "), x0, y0, x1, y1));
    }
    let (mut min_x, mut min_y, mut max_x, mut max_y) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (c, s) in boxes {
        min_x = min_x.min(c.x - s.x / 2.0);
        min_y = min_y.min(c.y - s.y / 2.0);
        max_x = max_x.max(c.x + s.x / 2.0);
        max_y = max_y.max(c.y + s.y / 2.0);
    }
    for (_, _, x0, y0, x1, y1) in &stage_boxes {
        min_x = min_x.min(*x0);
        min_y = min_y.min(*y0);
        max_x = max_x.max(*x1);
        max_y = max_y.max(*y1);
    }
    for path in arrows {
        for (a, b) in path {
            for p in [a, b] {
                min_x = min_x.min(p.x);
                min_y = min_y.min(p.y);
                max_x = max_x.max(p.x);
                max_y = max_y.max(p.y);
            }
        }
    }
    let (ox, oy) = (min_x - 10.0, min_y - 10.0);
    let (w, h) = (max_x - min_x + 20.0, max_y - min_y + 20.0);
    let j = job.id;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"dag\" data-job=\"{j}\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"{ox:.1} {oy:.1} {w:.1} {h:.1}\" \
         role=\"img\" aria-label=\"lineage of job {j}\">\
         <defs><marker id=\"arrow-{j}\" markerWidth=\"9\" markerHeight=\"7\" refX=\"9\" \
         refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 9 3.5, 0 7\" fill=\"#555\"/>\
         </marker><marker id=\"arrow-shuffle-{j}\" markerWidth=\"9\" markerHeight=\"7\" \
         refX=\"9\" refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 9 3.5, 0 7\" \
         fill=\"#c0392b\"/></marker></defs>"
    );
    for (s, members, x0, y0, x1, y1) in &stage_boxes {
        let _ = write!(
            out,
            "<g class=\"stage\" data-stage=\"{}\" data-rdds=\"{members}\"><title>stage {} ({}) computes rdd {}</title>\
             <rect x=\"{x0:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"6\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">stage {} · {}</text></g>",
            s.id,
            s.id,
            esc(&s.kind),
            s.rdd_id,
            x1 - x0,
            y1 - y0,
            x0 + 6.0,
            y0 + 12.0,
            s.id,
            esc(&shorten(&s.kind, 24)),
        );
    }
    for (e, path) in edges.iter().zip(arrows) {
        if path.len() < 2 {
            continue;
        }
        let mut d = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            path[0].0.x,
            path[0].0.y,
            path[0].1.x,
            path[0].1.y,
            path[1].0.x,
            path[1].0.y,
            path[1].1.x,
            path[1].1.y
        );
        for p in &path[2..] {
            let _ = write!(d, " S {:.1} {:.1}, {:.1} {:.1}", p.0.x, p.0.y, p.1.x, p.1.y);
        }
        let faded = e.truncated || !live.contains(&e.to);
        let (class, marker) = match e.kind {
            EdgeKind::Shuffle => ("edge shuffle", format!("arrow-shuffle-{j}")),
            EdgeKind::Narrow => ("edge narrow", format!("arrow-{j}")),
            EdgeKind::Checkpoint => ("edge checkpoint", format!("arrow-{j}")),
        };
        let _ = write!(
            out,
            "<path class=\"{class}{}\" d=\"{d}\" marker-end=\"url(#{marker})\"/>",
            if faded { " truncated" } else { "" }
        );
        if e.kind == EdgeKind::Shuffle {
            let a = path[0].0;
            let b = path[path.len() - 1].1;
            let _ = write!(
                out,
                "<text class=\"shuffle-label\" x=\"{:.1}\" y=\"{:.1}\">shuffle</text>",
                (a.x + b.x) / 2.0 + 4.0,
                (a.y + b.y) / 2.0
            );
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (c, s) = boxes[i];
        let faded = !live.contains(&i);
        let mut class = format!("rdd {}", state_class(&n.state));
        if faded {
            class.push_str(" truncated");
        }
        if n.cached {
            class.push_str(" cached");
        }
        if n.checkpoint_rdd {
            class.push_str(" checkpoint-rdd");
        }
        let (x, y) = (c.x - s.x / 2.0, c.y - s.y / 2.0);
        let _ = write!(
            out,
            "<g class=\"{class}\" data-rdd=\"{}\" data-state=\"{}\"><title>{}</title>\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"5\" \
             fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">",
            n.id,
            esc(&n.state),
            esc(&n.title),
            s.x,
            s.y,
            state_color(&n.state),
            c.x,
            y + 4.0,
        );
        for (line, bold) in &n.lines {
            let _ = write!(
                out,
                "<tspan x=\"{:.1}\" dy=\"{LINE_H}\"{}>{}</tspan>",
                c.x,
                if *bold { " class=\"b\"" } else { "" },
                esc(line)
            );
        }
        out.push_str("</text></g>");
    }
    out.push_str("</svg>");
    out
}
