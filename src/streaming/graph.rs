//! The operator graph: what a stream records about itself, its fingerprint, and the named
//! differences a restart with other code is checked for (S3, S17).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How strictly a restart must match the recorded graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphPolicy {
    /// Every node must match: names, kinds, element and state types, the order of the
    /// stateless steps, the outputs and the batch interval. State partition counts and
    /// checkpoint intervals may change (the state is repartitioned once; the next
    /// checkpoint follows the new interval). The default.
    #[default]
    Strict,
    /// Sources, stateful operators, their element and state types and the batch interval
    /// must match; stateless steps and outputs may change (a fixed bug in a `map`, a new
    /// sink). The new code's results then differ from the old code's from the recovery
    /// point on: the replayed batches rebuild state with the new closures.
    AllowStatelessChanges,
}

/// One node of the recorded graph: a source, a stateless step, a stateful operator or an
/// output, in creation order (which is a topological order: parents come first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeDesc {
    pub(crate) id: usize,
    /// `queue_stream`, `map`, `update_state_by_key`, `sink`, ...
    pub(crate) kind: String,
    /// The stable name of a source, stateful operator or output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// The element type of the stream this node produces (`std::any::type_name`); for an
    /// output, of the stream it consumes.
    pub(crate) element: String,
    /// A stateful operator's state type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
    pub(crate) parents: Vec<usize>,
    /// A stateful operator's state partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) partitions: Option<usize>,
    /// A stateful operator's reliable checkpoint interval, in batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) every: Option<u32>,
    /// What a source reads, when it is named by the user: a text file stream's folder
    /// (canonical when it existed), since its recorded progress names that folder's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) input: Option<String>,
    /// In how many batches the node has an RDD: every `slide`-th (see `DNode::slide`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub(crate) slide: u64,
    /// A `map_with_state` operator's idle timeout, in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_nanos: Option<u64>,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

impl NodeDesc {
    pub(crate) fn role(&self) -> Role {
        match self.kind.as_str() {
            "queue_stream" | "text_file_stream" | "socket_text_stream" => Role::Source,
            "update_state_by_key" | "reduce_by_key_and_window_inv" | "map_with_state" => {
                Role::Stateful
            }
            "sink" | "foreach_rdd" => Role::Output,
            _ => Role::Step,
        }
    }

    fn label(&self) -> String {
        let role = match self.role() {
            Role::Source => "source",
            Role::Stateful => "stateful",
            Role::Output => "output",
            Role::Step => "step",
        };
        match &self.name {
            Some(n) => format!("{role} `{n}`"),
            None => format!("{role} {}", self.kind),
        }
    }
}

/// What a node is to the graph check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Source,
    Step,
    Stateful,
    Output,
}

/// The format name of a graph file.
pub(crate) const GRAPH_FORMAT: &str = "flintlock-stream-graph";

/// A stream's graph as recorded in `graph/<fingerprint>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GraphDesc {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) interval_nanos: u64,
    pub(crate) nodes: Vec<NodeDesc>,
}

impl GraphDesc {
    pub(crate) fn new(interval: Duration, nodes: Vec<NodeDesc>) -> GraphDesc {
        GraphDesc {
            format: GRAPH_FORMAT.to_string(),
            version: super::meta::STREAM_FORMAT_VERSION,
            interval_nanos: interval.as_nanos() as u64,
            nodes,
        }
    }

    /// A fingerprint of the whole description (16 hex digits): two CRC-32C over the
    /// canonical JSON, forwards and backwards. It names graph files; equality of graphs is
    /// decided by comparing the descriptions, never by the fingerprint alone.
    pub(crate) fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(&(self.interval_nanos, &self.nodes))
            .expect("a graph description always encodes");
        let rev: Vec<u8> = json.iter().rev().copied().collect();
        format!("{:08x}{:08x}", crc32c::crc32c(&json), crc32c::crc32c(&rev))
    }

    fn named(&self) -> BTreeMap<&str, &NodeDesc> {
        self.nodes
            .iter()
            .filter_map(|n| Some((n.name.as_deref()?, n)))
            .collect()
    }

    /// The stateless steps above `node` up to the named nodes it reads, as text:
    /// `map<(String, u64)>(flat_map<String>(source `lines`))`.
    fn upstream(&self, node: &NodeDesc) -> String {
        let by_id: BTreeMap<usize, &NodeDesc> = self.nodes.iter().map(|n| (n.id, n)).collect();
        let mut out = String::new();
        // Iterative pre-order walk (graphs are small, but never recurse over user data).
        let mut stack: Vec<Option<usize>> = node.parents.iter().rev().map(|&p| Some(p)).collect();
        while let Some(item) = stack.pop() {
            match item.map(|id| by_id.get(&id)) {
                None => out.push(')'),
                Some(None) => out.push('?'),
                Some(Some(n)) if n.name.is_some() => out.push_str(&n.label()),
                Some(Some(n)) => {
                    let _ = write!(out, "{}<{}>(", n.kind, n.element);
                    stack.push(None);
                    stack.extend(n.parents.iter().rev().map(|&p| Some(p)));
                    continue; // no separator right after an opening parenthesis
                }
            }
            if matches!(stack.last(), Some(Some(_))) {
                out.push_str(", ");
            }
        }
        out
    }
}

/// The differences between the recorded graph and the rebuilt one: those the state cannot
/// follow under `policy` (the restart fails with [`crate::Error::GraphChanged`]) and those
/// it accepts (reported in [`super::Recovery::changes`]).
pub(crate) fn diff(
    recorded: &GraphDesc,
    current: &GraphDesc,
    policy: GraphPolicy,
) -> (Vec<String>, Vec<String>) {
    let strict = policy == GraphPolicy::Strict;
    let mut breaking = Vec::new();
    let mut accepted = Vec::new();
    if recorded.interval_nanos != current.interval_nanos {
        breaking.push(format!(
            "batch interval: {:?} → {:?} (batch times and recorded plans would not match)",
            Duration::from_nanos(recorded.interval_nanos),
            Duration::from_nanos(current.interval_nanos)
        ));
    }
    let (old, new) = (recorded.named(), current.named());
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        match (old.get(name), new.get(name)) {
            (Some(o), None) => {
                let line = format!(
                    "{} is gone (renamed or removed; names are how state and progress are found)",
                    o.label()
                );
                if o.role() == Role::Output && !strict {
                    accepted.push(line);
                } else {
                    breaking.push(line);
                }
            }
            (None, Some(n)) => {
                let line = match n.role() {
                    Role::Output => format!("{} is new", n.label()),
                    Role::Stateful => format!(
                        "{} is new: it has no recorded state (renamed? give it its old name)",
                        n.label()
                    ),
                    _ => format!("{} is new: it has no recorded progress", n.label()),
                };
                if n.role() == Role::Output && !strict {
                    accepted.push(line);
                } else {
                    breaking.push(line);
                }
            }
            (Some(o), Some(n)) => node_diff(
                recorded,
                o,
                current,
                n,
                strict,
                &mut breaking,
                &mut accepted,
            ),
            (None, None) => unreachable!("the name came from one of the maps"),
        }
    }
    (breaking, accepted)
}

fn node_diff(
    recorded: &GraphDesc,
    o: &NodeDesc,
    current: &GraphDesc,
    n: &NodeDesc,
    strict: bool,
    breaking: &mut Vec<String>,
    accepted: &mut Vec<String>,
) {
    let label = o.label();
    if o.kind != n.kind {
        breaking.push(format!("{label}: kind {} → {}", o.kind, n.kind));
        return;
    }
    let type_note = " (type names come from the compiler: if only their spelling changed, \
                     the same code built by another toolchain, restore that toolchain)";
    if o.element != n.element {
        let line = format!(
            "{label}: element type {} → {}{type_note}",
            o.element, n.element
        );
        if o.role() == Role::Output && !strict {
            accepted.push(line);
        } else {
            breaking.push(line);
        }
    }
    if o.input != n.input {
        breaking.push(format!(
            "{label}: reads {} → {} (its recorded progress names what it read there)",
            o.input.as_deref().unwrap_or("?"),
            n.input.as_deref().unwrap_or("?")
        ));
    }
    if o.state != n.state {
        breaking.push(format!(
            "{label}: state type {} → {}{type_note}",
            o.state.as_deref().unwrap_or("none"),
            n.state.as_deref().unwrap_or("none")
        ));
    }
    if o.partitions != n.partitions {
        accepted.push(format!(
            "{label}: partitions {} → {} (the state is repartitioned once)",
            o.partitions.unwrap_or(0),
            n.partitions.unwrap_or(0)
        ));
    }
    if o.every != n.every {
        accepted.push(format!(
            "{label}: checkpoint every {} → {} batches",
            o.every.unwrap_or(0),
            n.every.unwrap_or(0)
        ));
    }
    if o.timeout_nanos != n.timeout_nanos {
        let show = |t: Option<u64>| {
            t.map_or("none".to_string(), |t| {
                format!("{:?}", std::time::Duration::from_nanos(t))
            })
        };
        accepted.push(format!(
            "{label}: timeout {} → {} (batches rebuilt from their plans keep the recorded \
             one; the new one applies from the first new batch)",
            show(o.timeout_nanos),
            show(n.timeout_nanos)
        ));
    }
    let (up_old, up_new) = (recorded.upstream(o), current.upstream(n));
    if up_old != up_new {
        let line = format!("{label}: its input changed from {up_old} to {up_new}");
        if strict || o.role() == Role::Source {
            breaking.push(line);
        } else {
            accepted.push(line);
        }
    }
}
