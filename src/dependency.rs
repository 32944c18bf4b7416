//! The edges of the lineage graph (Spark's `Dependency.scala`).
//!
//! A *narrow* dependency ([`DependencyKind::OneToOne`], [`DependencyKind::Range`],
//! [`DependencyKind::Narrow`]) lets a child partition be computed from a few parent partitions
//! inside one task: they pipeline. A [`DependencyKind::Shuffle`] dependency needs every parent
//! partition, so it ends a stage: the parent's partitions are bucketed by the partitioner and
//! kept in the shuffle store, and the child reads its bucket from each.

use std::fmt;
use std::sync::Arc;

use crate::partitioner::Partitioner;
use crate::rdd::node::{Node, RddBase};
use crate::shuffle::ShuffleDepBase;

/// The kind of a [`Dependency`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DependencyKind {
    /// Child partition `i` is parent partition `i` (map, filter, a co-partitioned join side,
    /// a checkpointed RDD's edge to its checkpoint).
    OneToOne,
    /// A contiguous range of child partitions maps onto the parent's (one per parent of a
    /// `union`).
    Range,
    /// Any other narrow mapping: each child partition reads a known, small set of parent
    /// partitions (`coalesce`, `cartesian`). Spark's generic `NarrowDependency`.
    Narrow,
    /// All-to-all through the shuffle store: a stage boundary.
    Shuffle,
}

/// An edge from an RDD to one of its parents, as returned by `Rdd::dependencies()`.
#[derive(Clone)]
pub struct Dependency {
    pub(crate) inner: DepInner,
}

#[derive(Clone)]
pub(crate) enum DepInner {
    OneToOne(Arc<dyn Node>),
    Range {
        parent: Arc<dyn Node>,
        in_start: usize,
        out_start: usize,
        len: usize,
    },
    Narrow {
        parent: Arc<dyn Node>,
        parents_of: Arc<dyn Fn(usize) -> Vec<usize> + Send + Sync>,
    },
    Shuffle(Arc<dyn ShuffleDepBase>),
}

impl Dependency {
    pub(crate) fn one_to_one(parent: Arc<dyn Node>) -> Dependency {
        Dependency {
            inner: DepInner::OneToOne(parent),
        }
    }

    pub(crate) fn range(
        parent: Arc<dyn Node>,
        in_start: usize,
        out_start: usize,
        len: usize,
    ) -> Dependency {
        Dependency {
            inner: DepInner::Range {
                parent,
                in_start,
                out_start,
                len,
            },
        }
    }

    pub(crate) fn narrow(
        parent: Arc<dyn Node>,
        parents_of: impl Fn(usize) -> Vec<usize> + Send + Sync + 'static,
    ) -> Dependency {
        Dependency {
            inner: DepInner::Narrow {
                parent,
                parents_of: Arc::new(parents_of),
            },
        }
    }

    pub(crate) fn shuffle(dep: Arc<dyn ShuffleDepBase>) -> Dependency {
        Dependency {
            inner: DepInner::Shuffle(dep),
        }
    }

    /// The kind of edge.
    pub fn kind(&self) -> DependencyKind {
        match &self.inner {
            DepInner::OneToOne(_) => DependencyKind::OneToOne,
            DepInner::Range { .. } => DependencyKind::Range,
            DepInner::Narrow { .. } => DependencyKind::Narrow,
            DepInner::Shuffle(_) => DependencyKind::Shuffle,
        }
    }

    /// True for a shuffle (wide) dependency.
    pub fn is_shuffle(&self) -> bool {
        matches!(self.inner, DepInner::Shuffle(_))
    }

    /// The id of the parent RDD.
    pub fn parent_id(&self) -> usize {
        self.parent_node().id()
    }

    /// The parent RDD, untyped.
    pub fn parent(&self) -> Arc<dyn RddBase> {
        self.parent_node()
    }

    /// For a shuffle dependency: its shuffle id and partitioner.
    pub fn shuffle_info(&self) -> Option<(usize, Partitioner)> {
        match &self.inner {
            DepInner::Shuffle(s) => Some((s.shuffle_id(), s.partitioner().clone())),
            _ => None,
        }
    }

    /// For a narrow dependency: the parent partitions that child partition `child` reads.
    /// `None` for a shuffle, which reads every parent partition.
    pub fn parent_partitions(&self, child: usize) -> Option<Vec<usize>> {
        match &self.inner {
            DepInner::OneToOne(_) => Some(vec![child]),
            DepInner::Range {
                in_start,
                out_start,
                len,
                ..
            } => Some(if child >= *out_start && child < out_start + len {
                vec![child - out_start + in_start]
            } else {
                Vec::new()
            }),
            DepInner::Narrow { parents_of, .. } => Some(parents_of(child)),
            DepInner::Shuffle(_) => None,
        }
    }

    pub(crate) fn parent_node(&self) -> Arc<dyn Node> {
        match &self.inner {
            DepInner::OneToOne(p) => p.clone(),
            DepInner::Range { parent, .. } | DepInner::Narrow { parent, .. } => parent.clone(),
            DepInner::Shuffle(s) => s.parent(),
        }
    }
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Dependency");
        d.field("kind", &self.kind())
            .field("parent_id", &self.parent_id());
        if let DepInner::Shuffle(s) = &self.inner {
            d.field("shuffle_id", &s.shuffle_id());
        }
        d.finish()
    }
}
