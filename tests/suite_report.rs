//! The `report` test suite. The event-log report (`flintlock report`, in a browser too) and
//! the `flintlock` command-line tool.
//!
//! One module per concern, each the file of the same name beside this one (the file says
//! what it checks), compiled into one test executable rather than one each: the generic
//! engine code the files share is built once per suite instead of once per file (see
//! `Cargo.toml`). Run one concern with a filter: `cargo test --release --test report --
//! report_html::`.

mod common;

mod cli;
mod report_hostile_logs;
mod report_html;
mod report_in_browser;
