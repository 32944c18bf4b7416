//! to_debug_string (Spark's shape), to_dot, lineage_depth.

use crate::common;

use common::ctx;

/// Lines with the `at <file>:<line>` call sites cut off.
fn shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match (l.find(" at "), l.rfind(" [")) {
            (Some(a), Some(b)) => format!("{}{}", &l[..a], &l[b..]),
            _ => l.to_string(),
        })
        .collect()
}

#[test]
fn debug_string_has_sparks_shape_with_indentation_at_shuffles() {
    let ctx = ctx();
    let words = ctx.parallelize(vec!["a b", "b"], 2);
    let counts = words
        .flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())
        .map(|w| (w, 1))
        .reduce_by_key(|a, b| a + b);
    let text = counts.to_debug_string();
    assert_eq!(
        shape(&text),
        vec![
            "(2) ShuffledRdd[3] []",
            " +-(2) MapPartitionsRdd[2] []",
            "    |  MapPartitionsRdd[1] []",
            "    |  ParallelCollectionRdd[0] []",
        ]
    );
    assert!(
        text.contains("reduce_by_key at tests/lineage_tools.rs:"),
        "{text}"
    );
}

#[test]
fn debug_string_shows_two_shuffled_parents_and_storage() {
    let ctx = ctx();
    let a = ctx.parallelize(vec![(1, 2)], 2).cache();
    let b = ctx.parallelize(vec![(1, 3)], 2);
    let j = a.join(&b).set_name("joined");
    assert_eq!(
        shape(&j.to_debug_string()),
        vec![
            "(2) joined CoGroupedRdd[2] []",
            " +-(2) ParallelCollectionRdd[0] [Memory Deserialized 1x Replicated; CachedPartitions: 0]",
            " +-(2) ParallelCollectionRdd[1] []",
        ]
    );
}

#[test]
fn a_shared_parent_is_printed_once_in_full() {
    let ctx = ctx();
    let base = ctx.range(0..4, 1).map(|x| x);
    let u = base.union(&base);
    let text = u.to_debug_string();
    assert_eq!(text.matches("RangeRdd").count(), 1, "{text}");
    assert!(text.contains("(shown above)"), "{text}");
}

#[test]
fn dot_draws_every_node_and_dashes_shuffle_edges() {
    let ctx = ctx();
    let r = ctx
        .range(0..4, 2)
        .map(|x| (x, x))
        .reduce_by_key(|a, b| a + b);
    let dot = r.to_dot();
    assert!(dot.starts_with("digraph lineage {"));
    assert_eq!(dot.matches("[label=").count(), 3);
    assert!(dot.contains("n2 -> n1 [style=dashed"), "{dot}");
    assert!(dot.contains("n1 -> n0;"), "{dot}");
}

#[test]
fn lineage_depth_counts_the_longest_path() {
    let ctx = ctx();
    let a = ctx.range(0..4, 1);
    assert_eq!(a.lineage_depth(), 0);
    let b = a.map(|x| x).map(|x| x);
    let c = a.union(&b);
    assert_eq!(c.lineage_depth(), 3);
}
