//! The hand-written rayon PageRank (no engine) on the same built-in graph as
//! `examples/pagerank`: the reference for peak-memory and speed comparisons.
//!
//! ```text
//! /usr/bin/time -v cargo run --release --example pagerank_rayon -- [nodes edges iterations partitions]
//! ```

#[path = "pagerank/graph.rs"]
mod graph;
#[path = "pagerank/handwritten.rs"]
mod handwritten;

use std::time::Instant;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(100_000);
    let edge_count = args.get(1).copied().unwrap_or(1_000_000);
    let iterations = args.get(2).copied().unwrap_or(10) as usize;
    let partitions = args
        .get(3)
        .copied()
        .unwrap_or(2 * rayon::current_num_threads() as u64) as usize;
    let edges = match graph::generate(nodes, edge_count, 42) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    let ranks = handwritten::rayon_hash(&edges, iterations, partitions);
    let best = ranks.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    println!(
        "{} ranked nodes in {:.2} s; top {:?}",
        ranks.len(),
        start.elapsed().as_secs_f64(),
        best
    );
}
