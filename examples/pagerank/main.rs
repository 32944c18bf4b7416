//! PageRank, the way Spark's classic example computes it, on flintlock.
//!
//! ```text
//! cargo run --release --example pagerank                      # built-in 100k-node, 1M-edge graph
//! cargo run --release --example pagerank -- --edges FILE      # your edge list: `src dst` per line
//! cargo run --release --example pagerank -- --help
//! RUST_LOG=flintlock=debug cargo run --release --example pagerank   # the engine's spans
//! ```
//!
//! Every `--checkpoint-every` iterations `ranks` is checkpointed, which cuts its lineage
//! (watch the depth column drop) and frees the shuffle outputs of earlier iterations.

mod cli;
mod graph;
mod job;

#[path = "../support/tracing_output.rs"]
mod tracing_output;

fn main() {
    tracing_output::init();
    cli::main(std::env::args_os());
}
