//! The `engine` test suite. The engine: transformations and actions, partitioners,
//! persistence, scheduling, jobs and their events, PageRank, and cluster mode.
//!
//! One module per concern, each the file of the same name beside this one (the file says
//! what it checks), compiled into one test executable rather than one each: the generic
//! engine code the files share is built once per suite instead of once per file (see
//! `Cargo.toml`). Run one concern with a filter: `cargo test --release --test engine --
//! transformations::`.

mod common;

// The pagerank example's modules, for the files that run it (included once: a file
// included twice would be compiled twice).
#[path = "../examples/pagerank/cli.rs"]
mod cli;
#[path = "../examples/pagerank/graph.rs"]
mod graph;
#[path = "../examples/pagerank/handwritten.rs"]
mod handwritten;
#[path = "../examples/pagerank/job.rs"]
mod job;

mod broadcast_variables;
mod cluster_checkpoints_commit_once_on_shared_storage;
mod cluster_failures_are_errors_not_hangs;
mod cluster_launcher_restarts_after_a_kill;
mod cluster_matches_one_process;
mod custom_partitioners;
mod deep_lineage;
mod dependencies;
mod event_log;
mod job_groups_and_cancellation;
mod job_lineage_events;
mod lineage_tools;
mod numeric_stats;
mod ordered_and_tree_actions;
mod pagerank;
mod pagerank_command_line;
mod pair_ops;
mod panics_never_strand;
mod persistence;
mod pipe_to_commands;
mod repartition_and_ranges;
mod sampling;
mod scheduler;
mod set_ops_match_a_vec_model;
mod shuffles_only_recovery_needs_are_released;
mod sources;
mod transformations;
mod two_contexts;
