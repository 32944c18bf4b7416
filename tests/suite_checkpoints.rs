//! The `checkpoints` test suite. The checkpoint life cycle: the state machine, one
//! computation, commits under crashes and `kill -9`, cleanup that never deletes what is
//! needed, app folders and their locks, restartable series, and the object-store backend.
//!
//! One module per concern, each the file of the same name beside this one (the file says
//! what it checks), compiled into one test executable rather than one each: the generic
//! engine code the files share is built once per suite instead of once per file (see
//! `Cargo.toml`). Run one concern with a filter: `cargo test --release --test checkpoints
//! -- checkpoint_state::`.

mod common;

// The pagerank example's modules, for the files that run it (included once: a file
// included twice would be compiled twice).
#[path = "../examples/pagerank/cli.rs"]
mod cli;
#[path = "../examples/pagerank/graph.rs"]
mod graph;
#[path = "../examples/pagerank/job.rs"]
mod job;

mod app_lock;
mod checkpoint_cleanup;
mod checkpoint_concurrency;
mod checkpoint_failures;
mod checkpoint_marks;
mod checkpoint_never_deletes;
mod checkpoint_one_computation;
mod checkpoint_reopen;
mod checkpoint_state;
mod crash_simulation;
mod disk_full;
mod kill_nine;
mod local_checkpoint;
mod nested_app_folders;
mod pagerank_kill_resume;
mod restartable_series;
mod s3_checkpoints;
mod s3_request_faults;
mod s3_store;
