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
//! - **Narrow dependencies across processes**: a task whose narrow dependencies read a
//!   shuffled partition another process owns (a `union`, `coalesce` or `cartesian`
//!   after a shuffle) gets that partition's buckets sent by their owner before the stage
//!   runs (every process derives the same plan from the lineage; a stage without such
//!   reads exchanges nothing more).
//! - **Checkpoints** go to the checkpoint directory, which must be storage every process
//!   shares (one filesystem, or an object store such as S3): process 0 owns the app folder
//!   (its lock, start-up cleanup and removals) and creates each write's folder; every
//!   process writes the parts of the partitions it owns there, as its tasks compute them
//!   (one computation, as in one process); process 0 commits the one manifest naming them
//!   all, and every process then truncates its lineage to it. A failure anywhere fails
//!   every process before the commit and nothing is committed; a process that fails after
//!   it never removes committed parts. [`Checkpointer::latest`] resumes every process from
//!   the step process 0 finds, so a cluster restarted after a failure (`scripts/cluster.sh`)
//!   continues from its newest checkpoint. The app id and the checkpoint settings
//!   (compression, frame limit, fsync, verify) must be the same on every process (a
//!   generated app id: process 0's is used). Removals (a series' `keep`,
//!   `clean_checkpoints`) are decided by process 0 from the RDDs it holds: the program
//!   being the same everywhere, the others hold the same ones, and every read of a
//!   checkpoint is part of a job all processes run. `local_checkpoint()` is refused (its
//!   blocks would stay on the processes that computed them).
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
//! **What SPMD asks of the program**: every process builds the same RDDs with the same
//! closures, from the same input (a file every process reads the same: a shared file
//! system, or the same copy on each machine), and runs the same actions in the same order
//! from one thread. Every exchange carries the stage's key (job, stage, RDD, partition
//! counts, the partitions asked for, the action's result type and per-partition function;
//! `build()`, `set_checkpoint_dir` and `Checkpointer::latest` exchange too, so they must
//! come in the same order on every process as well):
//! processes that took different paths fail with [`Error::Cluster`] instead of mixing
//! their data, and the cluster is then over. Different input data, or different closures
//! inside the same lineage, cannot be told apart.
//!
//! Not yet in cluster mode (each fails with an error that says so, never with wrong data):
//! local checkpoints, streaming, accumulators, `save_as_text_file`, `save_as_object_file`,
//! `count_approx_distinct`, and a job started inside a task (`zip_with_index`, an action in
//! a closure, a listener that runs a job). Also not yet: [`ContextBuilder::memory_limit`] does not bound the
//! buckets a process receives, and a build with `panic = "abort"` aborts every process when
//! one dies (timely's network threads panic on a closed connection).
//!
//! [`ContextBuilder::memory_limit`]: crate::ContextBuilder::memory_limit
//!
//! [`Context::register_spillable`]: crate::Context::register_spillable
//! [`Checkpointer::latest`]: crate::checkpoint::Checkpointer::latest
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
        if usize::from(base_port)
            .checked_add(processes)
            .is_none_or(|end| end > usize::from(u16::MAX) + 1)
        {
            return Err(Error::InvalidArgument(format!(
                "{processes} ports from {base_port} go past 65535"
            )));
        }
        let addresses = (0..processes)
            .map(|i| format!("127.0.0.1:{}", usize::from(base_port) + i))
            .collect();
        ClusterConfig::new(process, addresses)
    }

    /// Takes timely's command-line options out of `args` (the program name first, as
    /// `std::env::args()` gives them): `-n`/`--processes N`, `-p`/`--process I`,
    /// `-h`/`--hostfile FILE` (a `host:port` per line, blank lines skipped; without it
    /// process `i` listens on `localhost:2101+i`, timely's default) and `-w`/`--threads N`
    /// (this process's task threads), as `-n 3`, `-n3`, `--processes 3` or
    /// `--processes=3` (`-h` takes its file as the next argument or `--hostfile=FILE`).
    /// An argument that only starts like one (`-name`, `-hello`) is the program's, and
    /// nothing after `--` is read. Returns the configuration (`None` for one process: `-n
    /// 1`, or no `-n`) and every other argument, in order, for the program's own parsing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an option without its value, a value that is not a
    /// number, `-n 0` or past 65,535 processes, `-w 0`, `-p` without `-n` or not below
    /// it, and an unreadable or short host file.
    pub fn from_args<I>(args: I) -> Result<(Option<ClusterConfig>, Vec<String>)>
    where
        I: IntoIterator<Item = String>,
    {
        const OPTIONS: [(&str, &str); 4] = [
            ("-n", "--processes"),
            ("-p", "--process"),
            ("-h", "--hostfile"),
            ("-w", "--threads"),
        ];
        let mut values: [Option<String>; 4] = Default::default();
        let mut rest = Vec::new();
        let mut args = args.into_iter().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--" {
                rest.push(arg);
                rest.extend(args.by_ref());
                break;
            }
            let found = OPTIONS.iter().enumerate().find_map(|(i, (short, long))| {
                if arg == *short || arg == *long {
                    Some((i, None))
                } else if let Some(v) = arg.strip_prefix(&format!("{long}=")) {
                    Some((i, Some(v.to_string())))
                } else {
                    // `-n3`: a number right after a numeric option's letter.
                    arg.strip_prefix(short)
                        .filter(|v| *short != "-h" && !v.is_empty())
                        .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                        .map(|v| (i, Some(v.to_string())))
                }
            });
            let Some((i, value)) = found else {
                rest.push(arg);
                continue;
            };
            let value = match value {
                Some(v) => v,
                None => args.next().ok_or_else(|| {
                    Error::InvalidArgument(format!("cluster option {arg} needs a value"))
                })?,
            };
            values[i] = Some(value);
        }
        let number = |i: usize| -> Result<Option<usize>> {
            values[i]
                .as_deref()
                .map(|v| {
                    v.parse().map_err(|_| {
                        Error::InvalidArgument(format!("{} {v:?} is not a number", OPTIONS[i].1))
                    })
                })
                .transpose()
        };
        let (processes, process, threads) = (number(0)?, number(1)?, number(3)?);
        let invalid = |m: &str| Err(Error::InvalidArgument(m.into()));
        if threads == Some(0) {
            return invalid("--threads must be at least 1");
        }
        let n = match (processes, process) {
            (Some(0), _) => return invalid("--processes must be at least 1"),
            (Some(n), _) if n > usize::from(u16::MAX) => {
                return invalid("--processes must be at most 65535")
            }
            (None, Some(_)) => return invalid("--process needs --processes"),
            (None, None) => return Ok((None, rest)),
            (Some(n), _) => n,
        };
        let p = process.unwrap_or(0);
        let addresses = match &values[2] {
            Some(file) => read_hostfile(std::path::Path::new(file), n)?,
            None if 2101 + n > usize::from(u16::MAX) + 1 => {
                return invalid("--processes: the default ports 2101 and up go past 65535")
            }
            None => (0..n).map(|i| format!("localhost:{}", 2101 + i)).collect(),
        };
        let mut config = ClusterConfig::new(p, addresses)?;
        config.threads = threads;
        Ok((if n > 1 { Some(config) } else { None }, rest))
    }

    /// Reads the cluster from the environment `scripts/cluster.sh` sets for each process:
    /// `FLINTLOCK_PROCESSES` (N), `FLINTLOCK_PROCESS` (this process's index) and
    /// `FLINTLOCK_HOSTFILE` (a `host:port` per line; without it process `i` listens on
    /// `127.0.0.1:2101+i`). `None` when `FLINTLOCK_PROCESSES` is not set.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the variable that is malformed or missing, or the
    /// host file that cannot be read or has too few lines.
    pub fn from_env() -> Result<Option<ClusterConfig>> {
        let var = |name: &str| std::env::var(name).ok();
        let Some(processes) = var("FLINTLOCK_PROCESSES") else {
            return Ok(None);
        };
        let number = |name: &str, text: Option<String>| -> Result<usize> {
            let text = text.ok_or_else(|| {
                Error::InvalidArgument(format!("{name} is not set (FLINTLOCK_PROCESSES is)"))
            })?;
            text.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("{name}={text:?} is not a process count or index"))
            })
        };
        let n = number("FLINTLOCK_PROCESSES", Some(processes))?;
        let p = number("FLINTLOCK_PROCESS", var("FLINTLOCK_PROCESS"))?;
        let config = match var("FLINTLOCK_HOSTFILE") {
            Some(path) => ClusterConfig::new(p, read_hostfile(std::path::Path::new(&path), n)?)?,
            None => ClusterConfig::local(n, p, 2101)?,
        };
        Ok(Some(config))
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

/// The first `n` addresses of a host file: a `host:port` per line, blank lines skipped.
///
/// # Errors
/// [`Error::InvalidArgument`] when the file cannot be read or has fewer than `n`.
pub fn read_hostfile(path: &std::path::Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidArgument(format!("cannot read the host file {}: {e}", path.display()))
    })?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .map(str::to_string)
        .collect();
    if addresses.len() < n {
        return Err(Error::InvalidArgument(format!(
            "the host file {} has {} addresses for {n} processes",
            path.display(),
            addresses.len()
        )));
    }
    Ok(addresses)
}
