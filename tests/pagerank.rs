//! The PageRank example: its built-in graph is the reference generator's, its ranks are
//! Spark's to the last printed digit, and it agrees with a sequential PageRank.

// The pagerank example's modules (the suite includes them once).
use crate::{graph, job};

use flintlock::{Context, Error};
use sha2::{Digest, Sha256};

fn ctx(dir: &std::path::Path) -> Context {
    Context::builder()
        .threads(2)
        .checkpoint_dir(dir)
        .build()
        .unwrap()
}

#[test]
fn the_built_in_graph_is_byte_identical_to_the_reference_generator() {
    let edges = graph::generate(10_000, 100_000, 42).unwrap();
    let digest = Sha256::digest(graph::to_text(&edges).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "919913354ebf23c7b54359eefe5f2cefbd07ffdbb8e893e35682940d07799ecc"
    );
}

#[test]
fn pagerank_reproduces_sparks_ranks_to_the_last_printed_digit() {
    let dir = tempfile::tempdir().unwrap();
    let edges = graph::generate(10_000, 100_000, 42).unwrap();
    let config = job::Config {
        iterations: 10,
        partitions: 4,
        checkpoint_every: 5,
        materialize_each_iteration: true,
        series: None,
    };
    let ranks = job::run(&ctx(dir.path()), edges, &config, |_| {}).unwrap();
    let ours: String = ranks.iter().map(|(n, r)| format!("{n} {r:.6}\n")).collect();
    let spark =
        std::fs::read_to_string("tests/data/spark_pagerank_10k_100k_s42_iters10.txt").unwrap();
    assert_eq!(ranks.len(), 9_199);
    for (i, (a, b)) in ours.lines().zip(spark.lines()).enumerate() {
        assert_eq!(a, b, "line {}", i + 1);
    }
    assert_eq!(ours.lines().count(), spark.lines().count());
}

#[test]
fn pagerank_matches_a_sequential_pagerank_with_and_without_checkpoints_eager_or_lazy() {
    let dir = tempfile::tempdir().unwrap();
    let edges = graph::generate(2_000, 12_000, 7).unwrap();
    let want = job::sequential(&edges, 12);
    let cases = [
        (3, 0, true),
        (4, 3, true),
        (1, 1, true),
        (3, 0, false),
        (4, 5, false),
    ];
    for (partitions, every, eager) in cases {
        let config = job::Config {
            iterations: 12,
            partitions,
            checkpoint_every: every,
            materialize_each_iteration: eager,
            series: None,
        };
        let mut depths = Vec::new();
        let got = job::run(&ctx(dir.path()), edges.clone(), &config, |it| {
            depths.push((it.lineage_depth, it.checkpointed))
        })
        .unwrap();
        assert_eq!(got.len(), want.len());
        for ((n1, r1), (n2, r2)) in got.iter().zip(&want) {
            assert_eq!(n1, n2);
            assert!((r1 - r2).abs() < 1e-9, "node {n1}: {r1} vs {r2}");
        }
        if every > 0 {
            assert!(
                depths.iter().filter(|d| d.1).all(|d| d.0 == 1),
                "a checkpoint cuts the lineage: {depths:?}"
            );
        } else {
            assert!(
                depths.windows(2).all(|w| w[1].0 > w[0].0),
                "lineage grows every round: {depths:?}"
            );
        }
    }
}

#[test]
fn a_malformed_edge_line_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.txt");
    std::fs::write(&path, "# comment\n1 2\n\n2\t3\n3 x\n").unwrap();
    let err = job::read_edges(&path).unwrap_err();
    assert!(matches!(err, Error::Parse { line: 5, .. }), "{err}");
    assert!(err.to_string().contains("edges.txt:5"), "{err}");
    std::fs::write(&path, "# comment\n1 2\n\n2\t3\n").unwrap();
    assert_eq!(job::read_edges(&path).unwrap(), vec![(1, 2), (2, 3)]);
    std::fs::write(&path, "1 2 3\n").unwrap();
    assert!(matches!(
        job::read_edges(&path).unwrap_err(),
        Error::Parse { line: 1, .. }
    ));
}

use crate::handwritten;

#[test]
fn the_hand_written_benchmark_references_compute_the_same_ranks() {
    let edges = graph::generate(3_000, 20_000, 3).unwrap();
    let want = job::sequential(&edges, 10);
    for got in [
        handwritten::rayon_hash(&edges, 10, 4),
        handwritten::csr(&edges, 10),
    ] {
        assert_eq!(got.len(), want.len());
        for ((n1, r1), (n2, r2)) in got.iter().zip(&want) {
            assert_eq!(n1, n2);
            assert!((r1 - r2).abs() < 1e-9, "node {n1}: {r1} vs {r2}");
        }
    }
}
