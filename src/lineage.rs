//! Lineage tools: depth, debug string, Graphviz — every walk iterative, with an explicit
//! stack and a visited set by RDD id (never recursion: lineage depth is unbounded in
//! iterative jobs).
//!
//! Each node describes itself in one line ([`describe`]); this module owns the layout:
//! indentation, shuffle boundaries, checkpoint state.

use std::fmt::Write;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::block_store::StorageLevel;
use crate::checkpoint::CheckpointState;
use crate::rdd::node::{describe, RddBase};

/// The longest path from `root` to a node without dependencies (a source or checkpoint).
pub(crate) fn depth(root: Arc<dyn RddBase>) -> usize {
    let mut memo: FxHashMap<usize, usize> = FxHashMap::default();
    // (node, its parents' ids once expanded): each node's dependencies are built once.
    let mut stack: Vec<(Arc<dyn RddBase>, Option<Vec<usize>>)> = vec![(root.clone(), None)];
    while let Some((node, parents)) = stack.pop() {
        if memo.contains_key(&node.id()) {
            continue;
        }
        if let Some(parents) = parents {
            let d = parents
                .iter()
                .map(|p| memo.get(p).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            memo.insert(node.id(), d);
            continue;
        }
        let deps = node.dependencies();
        let ids = deps.iter().map(|d| d.parent_id()).collect();
        stack.push((node, Some(ids)));
        for dep in deps {
            if !memo.contains_key(&dep.parent_id()) {
                stack.push((dep.parent(), None));
            }
        }
    }
    memo.get(&root.id()).copied().unwrap_or(0)
}

/// One node's line: `name Kind[id] at op at file:line [storage]`, plus the checkpoint state
/// when it is not `Initialized`.
fn line(node: &dyn RddBase) -> String {
    let level = node.storage_level();
    let storage = if level == StorageLevel::None {
        String::new()
    } else {
        format!(
            "{}; CachedPartitions: {}",
            level.description(),
            node.cached_partitions()
        )
    };
    let mut s = format!("{} [{}]", describe(node), storage);
    let state = node.checkpoint_state();
    if state != CheckpointState::Initialized {
        let _ = write!(s, " (checkpoint: {state})");
    }
    s
}

/// Every RDD `root` reaches, once each, `root` first (then in depth-first order), with
/// the edges to its parents: the lineage a job starts with ([`crate::Event::JobLineage`]).
pub(crate) fn snapshot(root: Arc<dyn RddBase>) -> Vec<crate::listener::LineageNode> {
    let mut nodes = Vec::new();
    let mut seen: FxHashSet<usize> = FxHashSet::default();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if !seen.insert(node.id()) {
            continue;
        }
        let deps = node.dependencies();
        let parents = deps
            .iter()
            .map(|d| crate::listener::LineageEdge {
                parent: d.parent_id(),
                kind: d.kind(),
            })
            .collect();
        nodes.push(crate::listener::LineageNode {
            id: node.id(),
            kind: node.kind(),
            name: node.name(),
            call_site: node.call_site().to_string(),
            partitions: node.num_partitions(),
            partitioner: node.partitioner(),
            storage_level: node.storage_level(),
            checkpoint_state: node.checkpoint_state(),
            parents,
        });
        stack.extend(deps.into_iter().rev().map(|d| d.parent()));
    }
    nodes
}

/// Spark's `toDebugString`, iteratively. A node met a second time (a shared parent) is
/// printed once more with `(shown above)` instead of repeating its whole lineage.
pub(crate) fn debug_string(root: Arc<dyn RddBase>) -> String {
    struct Frame {
        node: Arc<dyn RddBase>,
        prefix: String,
        shuffle: bool,
        last: bool,
        first: bool,
    }
    let mut out = String::new();
    let mut shown: FxHashSet<usize> = FxHashSet::default();
    let mut stack = vec![Frame {
        node: root,
        prefix: String::new(),
        shuffle: false,
        last: false,
        first: true,
    }];
    while let Some(f) = stack.pop() {
        let partitions = format!("({})", f.node.num_partitions());
        let left = (partitions.len() - 1) / 2;
        let bar = format!(
            "{}|{}",
            " ".repeat(left),
            " ".repeat(partitions.len() - left)
        );
        let mut desc = line(f.node.as_ref());
        let deps = f.node.dependencies();
        let repeat = !shown.insert(f.node.id()) && !deps.is_empty();
        if repeat {
            desc.push_str(" (shown above)");
        }
        let next_prefix = if f.first {
            let _ = writeln!(out, "{partitions} {desc}");
            bar
        } else if f.shuffle {
            let this = trim_bar(&f.prefix);
            let _ = writeln!(out, "{this}+-{partitions} {desc}");
            format!("{this}{}{bar}", if f.last { "  " } else { "| " })
        } else {
            let _ = writeln!(out, "{}{desc}", f.prefix);
            f.prefix.clone()
        };
        if repeat {
            continue;
        }
        let n = deps.len();
        for (i, dep) in deps.into_iter().enumerate().rev() {
            stack.push(Frame {
                node: dep.parent(),
                prefix: next_prefix.clone(),
                shuffle: dep.is_shuffle(),
                last: i + 1 == n,
                first: false,
            });
        }
    }
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Spark's `prefix.replaceAll("\\|\\s+$", "")`: drops a trailing `|` and the blanks after it.
fn trim_bar(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches(' ');
    if trimmed.len() < prefix.len()
        && let Some(stripped) = trimmed.strip_suffix('|')
    {
        return stripped.to_string();
    }
    prefix.to_string()
}

/// A Graphviz `digraph` of the lineage: an edge from each RDD to its parents, shuffle edges
/// dashed, nodes filled by checkpoint state and bold when cached.
pub(crate) fn dot(root: Arc<dyn RddBase>) -> String {
    let mut out = String::from(
        "digraph lineage {\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
    );
    let mut seen: FxHashSet<usize> = FxHashSet::default();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if !seen.insert(node.id()) {
            continue;
        }
        let color = match node.checkpoint_state() {
            CheckpointState::Initialized => "white",
            CheckpointState::Marked => "lightyellow",
            CheckpointState::InProgress => "orange",
            CheckpointState::Checkpointed => "palegreen",
        };
        let name = node.name().map(|n| format!("{n}\\n")).unwrap_or_default();
        let cached = node.storage_level() != StorageLevel::None;
        let _ = writeln!(
            out,
            "  n{} [label=\"{}{}[{}]\\n{}\\n{} partitions{}\", fillcolor=\"{}\"{}];",
            node.id(),
            escape(&name),
            node.kind(),
            node.id(),
            escape(&node.call_site().to_string()),
            node.num_partitions(),
            match node.checkpoint_state() {
                CheckpointState::Initialized => String::new(),
                s => format!("\\ncheckpoint: {s}"),
            },
            color,
            if cached { ", penwidth=3" } else { "" }
        );
        for dep in node.dependencies() {
            let style = if dep.is_shuffle() {
                " [style=dashed, label=\"shuffle\"]"
            } else {
                ""
            };
            let _ = writeln!(out, "  n{} -> n{}{};", node.id(), dep.parent_id(), style);
            stack.push(dep.parent());
        }
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::trim_bar;

    #[test]
    fn trim_bar_drops_a_trailing_bar_and_blanks_only() {
        assert_eq!(trim_bar(" |  "), " ");
        assert_eq!(trim_bar("    |  "), "    ");
        assert_eq!(trim_bar("abc"), "abc");
        assert_eq!(trim_bar(""), "");
    }
}
