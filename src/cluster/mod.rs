//! Running one program as N processes: stages on timely-dataflow, SPMD (feature `cluster`).
//!
//! Every process runs the same binary with the same arguments but its own process index,
//! builds the same RDDs and runs the same actions in the same order (SPMD: single program,
//! multiple data), so closures are never shipped between processes, only records. A
//! context built with [`ContextBuilder::cluster`](crate::ContextBuilder::cluster) then
//! divides every stage's partitions among the processes: **partition `p` belongs to
//! process `p mod N`**, which runs its task on its own rayon pool.
//!
//! - **Narrow stages** run where their partitions are: a process computes only its own.
//! - **Shuffles**: each process buckets its map partitions' records by reduce partition
//!   and sends every bucket, encoded, to the process that owns its reduce partition,
//!   through timely's exchange; one exchange per map stage, whose completion is the
//!   stage barrier.
//! - **Action results** are gathered from every process and handed to every process's
//!   driver, so every driver loop sees the same value and takes the same branch.
//! - **`cache()`** keeps a partition's block on the process that computed it.
//! - **Failures are agreed**: a stage that fails on one process fails on all (there with
//!   [`Error::Cluster`] naming the process); a process that dies, returns early or takes
//!   another path fails every other process's next exchange with an error naming it,
//!   instead of a hang. The cluster cannot continue after that: timely is fail-stop, and
//!   the processes are restarted together (see `scripts/cluster.sh`).
//!
//! Records that cross processes need a codec, as spilled records do: primitive types,
//! `String`, and pairs of them have one built in; [`Context::register_spillable`] adds any
//! `Serialize + DeserializeOwned` type. A stage whose records have none fails with an error
//! that names the type.
//!
//! Not yet in cluster mode (each fails with an error that says so, never with wrong data):
//! checkpoints, streaming, accumulators, and a narrow dependency that reads a shuffled
//! partition owned by another process (a `union`, `coalesce`, `zip` or `cartesian` right
//! after a shuffle).
//!
//! [`Context::register_spillable`]: crate::Context::register_spillable
//! [`Error::Cluster`]: crate::Error::Cluster

mod transport;

use std::time::Duration;

use crate::error::{Error, Result};

pub(crate) use transport::Transport;

/// Where this process stands in a cluster: its index and every process's address.
///
/// ```no_run
/// # fn main() -> flintlock::Result<()> {
/// // Process 1 of 3 on one machine, listening on 127.0.0.1:2101:
/// let cluster = flintlock::ClusterConfig::local(3, 1, 2100)?;
/// let ctx = flintlock::Context::builder().cluster(cluster).build()?;
/// let evens = ctx.range(0..1000, 6).filter(|x| x % 2 == 0).count()?;
/// assert_eq!(evens, 500); // on every process
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub(crate) process: usize,
    pub(crate) addresses: Vec<String>,
    pub(crate) threads: Option<usize>,
    pub(crate) connect_timeout: Duration,
    pub(crate) epoch_timeout: Option<Duration>,
}

impl ClusterConfig {
    /// Process `process` of a cluster whose processes listen on `addresses` (`host:port`,
    /// one per process, in process order; this process listens on its own).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty list or an index past its end.
    pub fn new(process: usize, addresses: Vec<String>) -> Result<ClusterConfig> {
        if addresses.is_empty() {
            return Err(Error::InvalidArgument(
                "a cluster needs at least one process address".into(),
            ));
        }
        if process >= addresses.len() {
            return Err(Error::InvalidArgument(format!(
                "process index {process} is not below the {} processes",
                addresses.len()
            )));
        }
        Ok(ClusterConfig {
            process,
            addresses,
            threads: None,
            connect_timeout: Duration::from_secs(60),
            epoch_timeout: None,
        })
    }

    /// Process `process` of `processes` on this machine, process `i` listening on
    /// `127.0.0.1:<base_port + i>`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no processes, an index past them, or ports past 65535.
    pub fn local(processes: usize, process: usize, base_port: u16) -> Result<ClusterConfig> {
        if usize::from(base_port) + processes > usize::from(u16::MAX) + 1 {
            return Err(Error::InvalidArgument(format!(
                "{processes} ports from {base_port} go past 65535"
            )));
        }
        let addresses = (0..processes)
            .map(|i| format!("127.0.0.1:{}", usize::from(base_port) + i))
            .collect();
        ClusterConfig::new(process, addresses)
    }

    /// Reads timely's command-line options from `args` (the program name first, as
    /// `std::env::args()` gives them): `-n`/`--processes N`, `-p`/`--process I`,
    /// `-h`/`--hostfile FILE` (a `host:port` per line; without it process `i` listens on
    /// `localhost:2101+i`, timely's default) and `-w`/`--threads N` (this process's task
    /// threads). Returns the configuration, `None` for a single process (`-n 1` or no
    /// options), and the arguments that are not timely's, for the program's own parsing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] with timely's message for malformed options, an
    /// unreadable host file, or a process index past the process count.
    pub fn from_args<I>(args: I) -> Result<(Option<ClusterConfig>, Vec<String>)>
    where
        I: IntoIterator<Item = String>,
    {
        let (config, free) = timely::CommunicationConfig::from_args(args.into_iter().skip(1))
            .map_err(|e| Error::InvalidArgument(format!("cluster options: {e}")))?;
        use timely::CommunicationConfig as C;
        let config = match config {
            C::Cluster {
                threads,
                process,
                addresses,
                ..
            } => {
                let mut c = ClusterConfig::new(process, addresses)?;
                c.threads = Some(threads);
                Some(c)
            }
            C::Process(_) | C::ProcessBinary(_) | C::Thread => None,
        };
        Ok((config, free))
    }

    /// How long starting the cluster waits for every process to connect (default 60 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClusterConfig {
        self.connect_timeout = timeout;
        self
    }

    /// Fails an exchange (the end of a stage) that has not completed after `timeout`: a
    /// stopped or hung process is otherwise waited for forever (a dead one is detected at
    /// once). Off by default, since a stage may legitimately take hours; set it above the
    /// longest stage.
    pub fn epoch_timeout(mut self, timeout: Duration) -> ClusterConfig {
        self.epoch_timeout = Some(timeout);
        self
    }

    /// This process's index.
    pub fn process(&self) -> usize {
        self.process
    }

    /// How many processes the cluster has.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }

    /// The task threads `-w` asked for, if any.
    pub(crate) fn threads(&self) -> Option<usize> {
        self.threads
    }
}
