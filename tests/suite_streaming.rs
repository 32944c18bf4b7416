//! The `streaming` test suite. Streaming: operators, windows, state, metadata checkpoints,
//! recovery after crashes and kills, damaged metadata, sources.
//!
//! One module per concern, each the file of the same name beside this one (the file says
//! what it checks), compiled into one test executable rather than one each: the generic
//! engine code the files share is built once per suite instead of once per file (see
//! `Cargo.toml`). Run one concern with a filter: `cargo test --release --test streaming --
//! streaming_operations::`.

mod common;

mod streaming_crash_points;
mod streaming_damaged_metadata;
mod streaming_graph_changes;
mod streaming_kill_nine;
mod streaming_map_with_state;
mod streaming_operations;
mod streaming_recovery;
mod streaming_socket_kill_nine;
mod streaming_socket_source;
mod streaming_spark_parity;
mod streaming_state_queries;
mod streaming_storage_faults;
mod streaming_text_files;
mod streaming_windows;
