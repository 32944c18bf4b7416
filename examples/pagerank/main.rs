//! PageRank, the way Spark's classic example computes it, on flintlock.
//!
//! ```text
//! cargo run --release --example pagerank                      # built-in 100k-node, 1M-edge graph
//! cargo run --release --example pagerank -- --edges FILE      # your edge list: `src dst` per line
//! cargo run --release --example pagerank -- --help
//! ```
//!
//! Every `--checkpoint-every` iterations `ranks` is checkpointed, which cuts its lineage
//! (watch the depth column drop) and frees the shuffle outputs of earlier iterations.

mod cli;
mod graph;
mod job;

use clap::Parser;

fn main() {
    if let Err(e) = cli::run(cli::Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
