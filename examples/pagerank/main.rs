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
    end_quietly_on_a_closed_pipe();
    tracing_output::init();
    cli::main(std::env::args_os());
}

/// Ends the process quietly when the reader of its output goes away (`pagerank | head`), as
/// command-line tools do: Rust ignores SIGPIPE, and `println!` would panic on the broken
/// pipe instead.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)] // see SAFETY below
    // SAFETY: called first thing in `main`, before any thread exists; restores the default
    // disposition of one signal, which involves no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
