//! The `checkpoint_format` test suite. What a checkpoint holds: every record reads back
//! exactly as the lineage computed it, in this build and the next (golden files, layouts,
//! odd serde types, corruption, reopened partitioners).
//!
//! One module per concern, each the file of the same name beside this one (the file says
//! what it checks), compiled into one test executable rather than one each: the generic
//! engine code the files share is built once per suite instead of once per file (see
//! `Cargo.toml`). Run one concern with a filter: `cargo test --release --test
//! checkpoint_format -- checkpoint_reads_back::`.

mod common;

mod checkpoint_corruption;
mod checkpoint_invariant;
mod checkpoint_kinds;
mod checkpoint_layout;
mod checkpoint_reads_back;
mod format_golden;
mod format_properties;
mod object_files_round_trip;
mod plain_number_checkpoints_read_back_exactly;
mod reopened_partitioners;
