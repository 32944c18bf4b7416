//! The examples' `tracing` output (included by path; not an example of its own).

use std::io::IsTerminal;

/// Sends flintlock's tracing output to stderr, selected by `RUST_LOG` (warnings only
/// without it): `RUST_LOG=flintlock=debug` shows every job, stage and task span and the
/// checkpoint phases inside them. Does nothing when a subscriber is installed already.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
