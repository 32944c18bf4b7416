//! The streaming checkpoint folder (S2–S4, S16): its marker file, graph files, the batch
//! log of plans and commits, the state folders, the lock, and retention.
//!
//! ```text
//! <dir>/STREAM                         marker: format, version, creating build, time zero
//! <dir>/.lock                          one owner per folder
//! <dir>/graph/<fingerprint>.json       the operator graph the plans name
//! <dir>/log/<batch:020>.plan           written BEFORE the batch runs
//! <dir>/log/<batch:020>.commit         written AFTER its state checkpoints and sinks
//! <dir>/state/<operator>/rdd-*/        state checkpoints (the RDD checkpoint format)
//! ```
//!
//! Every file is written under a temp name, fsynced, renamed without replacing and made
//! durable by a folder fsync; each is checksummed JSON (`{"plan":{...},"crc32c":"..."}`)
//! with a format name and version, so a damaged, foreign or newer file is a precise error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::graph::{GraphDesc, GRAPH_FORMAT};
use super::BatchId;
use crate::checkpoint::format::{seal_json, unseal_json};
use crate::checkpoint::{Storage, StorageLock};
use crate::error::{Error, Result};

/// The version of the streaming metadata files this build writes (and the newest it reads).
pub const STREAM_FORMAT_VERSION: u32 = 1;

const STREAM_FILE: &str = "STREAM";
const STREAM_FORMAT: &str = "flintlock-stream";
const PLAN_FORMAT: &str = "flintlock-stream-plan";
const COMMIT_FORMAT: &str = "flintlock-stream-commit";
const LOCK_FILE: &str = ".lock";
pub(crate) const LOG: &str = "log";
const GRAPHS: &str = "graph";
/// The folder of the state checkpoints, one sub-folder per stateful operator.
pub(crate) const STATE: &str = "state";
/// The folder of the logged input of sources that cannot replay (sockets), one sub-folder
/// per source.
pub(crate) const INPUT: &str = "input";

/// Whether `app` is a stream's operator state folder (`<stream>/state/<op>`) or a source's
/// input log (`<stream>/input/<source>`): app folders whose series steps the stream's
/// commits retain (S16), which `flintlock gc --keep` must leave to it. `app` must be
/// resolved (absolute, links followed): `state/counts`, given from the stream's folder, has
/// no grandparent to look in.
pub(crate) fn is_stream_owned(storage: &dyn Storage, app: &Path) -> bool {
    let Some(parent) = app.parent() else {
        return false;
    };
    let in_stream_subfolder = parent.file_name().is_some_and(|n| n == STATE || n == INPUT);
    // A folder that cannot be listed for any reason but its absence may be a stream's:
    // the caller then leaves the steps alone.
    in_stream_subfolder
        && parent
            .parent()
            .is_some_and(|stream| match storage.list(stream) {
                Ok(names) => names.iter().any(|n| n == STREAM_FILE),
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            })
}

/// The marker file: what the folder is, who made it, and the stream's time zero.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StreamFile {
    format: String,
    version: u32,
    created_by: String,
    /// Batch `b` is at `zero + b × interval` (nanoseconds of the stream's clock).
    zero_nanos: u64,
}

/// What a source reads in one batch, recorded in the plan so a replay reads the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum ReplayToken {
    /// RDDs `from..to` of a queue (at most one per batch).
    Queue { from: u64, to: u64 },
    /// New files of a folder, in name order.
    Files { files: Vec<FileEntry> },
    /// Lines received from a socket: `log` is the checkpoint folder (relative to the
    /// stream folder) they were written to before the plan (none when there were none).
    Lines { log: Option<String>, lines: u64 },
}

/// A file a folder source read: replays read its first `len` bytes and check them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub(crate) name: String,
    pub(crate) len: u64,
    pub(crate) crc32c: u32,
}

/// Where a source is after a committed batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum SourcePosition {
    /// The next queue index to read.
    Queue { next: u64 },
    /// Every file name consumed so far.
    Files { seen: BTreeSet<String> },
    /// Lines consumed so far (a socket cannot rewind: this only counts).
    Lines { consumed: u64 },
}

/// The semantic configuration a plan runs under (threads, compression and the like may
/// change between runs; these may not, or only as `graph::diff` allows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SemanticConfig {
    pub(crate) interval_nanos: u64,
    /// Per stateful operator: (state partitions, checkpoint interval in batches).
    pub(crate) states: BTreeMap<String, (usize, u32)>,
}

/// Written before batch `batch` runs: everything needed to run it again identically (S4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) batch: BatchId,
    /// The batch committed before this one was planned (`None` for the stream's first):
    /// ids skipped after downtime are never planned, so recovery follows this chain
    /// instead of counting ids, and a missing plan is told from a skipped id.
    pub(crate) prev: Option<BatchId>,
    pub(crate) time_nanos: u64,
    /// The fingerprint of the graph the batch was planned under (`graph/<it>.json`).
    pub(crate) graph: String,
    pub(crate) config: SemanticConfig,
    pub(crate) sources: BTreeMap<String, ReplayToken>,
}

/// A stateful operator's committed state checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateRef {
    /// The batch whose state it holds.
    pub(crate) batch: BatchId,
    /// Its folder, relative to the stream folder.
    pub(crate) path: String,
    pub(crate) write_id: u64,
}

/// Written after batch `batch`'s state checkpoints and outputs succeeded: the batch is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Commit {
    pub(crate) format: String,
    pub(crate) version: u32,
    pub(crate) batch: BatchId,
    pub(crate) time_nanos: u64,
    pub(crate) graph: String,
    /// Per stateful operator, its newest committed state checkpoint (none before the first).
    pub(crate) states: BTreeMap<String, StateRef>,
    /// Per source, its position after this batch.
    pub(crate) sources: BTreeMap<String, SourcePosition>,
    /// The oldest batch whose plan recovery from this commit reads.
    pub(crate) low_water: BatchId,
}

impl Plan {
    pub(crate) fn new(
        batch: BatchId,
        prev: Option<BatchId>,
        time: Duration,
        graph: String,
        config: SemanticConfig,
        sources: BTreeMap<String, ReplayToken>,
    ) -> Plan {
        Plan {
            format: PLAN_FORMAT.to_string(),
            version: STREAM_FORMAT_VERSION,
            batch,
            prev,
            time_nanos: time.as_nanos() as u64,
            graph,
            config,
            sources,
        }
    }
}

impl Commit {
    /// The commit of `plan`'s batch, run under graph `graph`. `states` holds each
    /// checkpointed operator's newest state checkpoint (none before its first);
    /// `low_water` is the oldest batch whose plan recovery from this commit replays.
    pub(crate) fn new(
        plan: &Plan,
        graph: &str,
        states: BTreeMap<String, StateRef>,
        sources: BTreeMap<String, SourcePosition>,
        low_water: BatchId,
    ) -> Commit {
        Commit {
            format: COMMIT_FORMAT.to_string(),
            version: STREAM_FORMAT_VERSION,
            batch: plan.batch,
            time_nanos: plan.time_nanos,
            graph: graph.to_string(),
            states,
            sources,
            low_water,
        }
    }
}

/// A locked streaming checkpoint folder.
pub(crate) struct StreamDir {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    fsync: bool,
    /// The stream's time zero; `None` until a new folder is initialised.
    zero: Option<Duration>,
    /// `None` for a read-only view ([`StreamDir::open_read_only`]).
    _lock: Option<Box<dyn StorageLock>>,
}

impl std::fmt::Debug for StreamDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for StreamDir {
    fn drop(&mut self) {
        // The removals this stream's retention started finish while its lock is held: none
        // runs in a folder the next stream has taken.
        if self._lock.is_some() {
            crate::checkpoint::wait_for_removals_below(&self.dir);
        }
    }
}

fn log_name(batch: BatchId, ext: &str) -> String {
    format!("{batch:020}.{ext}")
}

impl StreamDir {
    /// A read-only view of an existing streaming folder, without its lock (a running stream
    /// may hold it): for offline queries, which only read committed files.
    pub(crate) fn open_read_only(dir: &Path, storage: Arc<dyn Storage>) -> Result<StreamDir> {
        let dir = crate::checkpoint::resolve_root(dir)?;
        // What this process's retention let go is not read half removed.
        crate::checkpoint::wait_for_removals_below(&dir);
        let marker = dir.join(STREAM_FILE);
        let names = storage.list(&dir).map_err(|e| Error::io("list", &dir, e))?;
        if !names.iter().any(|n| n == STREAM_FILE) {
            return Err(Error::InvalidArgument(format!(
                "{} is not a flintlock streaming folder (it has no {STREAM_FILE} file)",
                dir.display()
            )));
        }
        let file: StreamFile = read_sealed(storage.as_ref(), &marker, "stream", STREAM_FORMAT)?;
        Ok(StreamDir {
            dir,
            storage,
            fsync: false,
            zero: Some(Duration::from_nanos(file.zero_nanos)),
            _lock: None,
        })
    }

    /// Opens (creating when missing) and locks a streaming folder, and verifies its marker
    /// file when it has one. A folder without one must be empty (but for what an
    /// interrupted start left): the stream never writes into another tool's folder.
    pub(crate) fn open(dir: &Path, storage: Arc<dyn Storage>, fsync: bool) -> Result<StreamDir> {
        let dir = crate::checkpoint::resolve_root(dir)?;
        crate::checkpoint::wait_for_removals_below(&dir);
        // One running stream per folder rests on its lock.
        require_locks(storage.as_ref(), &dir, "a streaming checkpoint folder")?;
        storage
            .create_dir_all(&dir)
            .map_err(|e| Error::io("create folder", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = storage
            .try_lock(&lock_path)
            .map_err(|e| Error::io("lock", &lock_path, e))?
            .ok_or(Error::Locked {
                path: lock_path.clone(),
            })?;
        let names = storage.list(&dir).map_err(|e| Error::io("list", &dir, e))?;
        let marker = dir.join(STREAM_FILE);
        let zero = if names.iter().any(|n| n == STREAM_FILE) {
            let file: StreamFile = read_sealed(storage.as_ref(), &marker, "stream", STREAM_FORMAT)?;
            if !names.iter().any(|n| n == LOG) {
                let graphs = storage.list(&dir.join(GRAPHS)).unwrap_or_default();
                if !graphs.is_empty() || state_checkpoints_exist(storage.as_ref(), &dir) {
                    return Err(Error::corrupt(
                        dir.join(LOG),
                        "the stream's log folder is missing, but it has run (its graph or \
                         state checkpoints are here): its progress is lost, so it is not \
                         restarted as a new stream",
                    ));
                }
            }
            Some(Duration::from_nanos(file.zero_nanos))
        } else {
            if names
                .iter()
                .any(|n| [LOG, GRAPHS, STATE].contains(&n.as_str()))
            {
                return Err(Error::corrupt(
                    &marker,
                    "the stream's marker file is missing, but the folder holds a stream's \
                     log, graph or state: restore the marker, or move the folder away to \
                     start a new stream (its sinks then need new folders too)",
                ));
            }
            let foreign: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| *n != LOCK_FILE && !n.ends_with(".tmp"))
                .collect();
            if !foreign.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{} is not a flintlock streaming folder (it has no {STREAM_FILE} file but \
                     holds {}): give the stream an empty or new folder",
                    dir.display(),
                    foreign
                        .iter()
                        .take(3)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            None
        };
        Ok(StreamDir {
            dir,
            storage,
            fsync,
            zero,
            _lock: Some(lock),
        })
    }

    /// Prepares the folder for running: a new one gets its marker file with time zero
    /// `zero` (written first, so a folder with anything else in it is a stream's) and its
    /// sub-folders; leftovers of interrupted writes are removed. Returns the stream's zero.
    pub(crate) fn init(&mut self, zero: Duration) -> Result<Duration> {
        if self.zero.is_none() {
            let file = StreamFile {
                format: STREAM_FORMAT.to_string(),
                version: STREAM_FORMAT_VERSION,
                created_by: format!("flintlock {}", env!("CARGO_PKG_VERSION")),
                zero_nanos: zero.as_nanos() as u64,
            };
            self.remove_temps(&self.dir.clone());
            self.write_new(&self.dir, STREAM_FILE, &seal("stream", &file)?)?;
            self.zero = Some(zero);
        }
        for sub in [LOG, GRAPHS, STATE] {
            let p = self.dir.join(sub);
            self.storage
                .create_dir_all(&p)
                .map_err(|e| Error::io("create folder", &p, e))?;
            self.remove_temps(&p);
        }
        self.remove_temps(&self.dir.clone());
        Ok(self.zero.expect("set above"))
    }

    /// Removes the temp files interrupted writes left (we hold the lock: none is live).
    fn remove_temps(&self, dir: &Path) {
        if let Ok(names) = self.storage.list(dir) {
            for n in names.iter().filter(|n| n.ends_with(".tmp")) {
                let _ = self.storage.remove_file(&dir.join(n));
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes the log folder's entries durable (when fsync is on): for a plan an earlier,
    /// failed attempt renamed in without its folder fsync.
    pub(crate) fn sync_log(&self) -> Result<()> {
        if self.fsync {
            let log = self.dir.join(LOG);
            self.storage
                .sync_dir(&log)
                .map_err(|e| Error::io("fsync folder", &log, e))?;
        }
        Ok(())
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// Whether the folder held no stream when opened.
    pub(crate) fn is_fresh(&self) -> bool {
        self.zero.is_none()
    }

    /// Writes `name` in `dir` by the crate's protocol: temp file, fsync, rename without
    /// replacing, folder fsync. An existing `name` is an error (`AlreadyExists`).
    fn write_new(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        static TEMP: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let target = dir.join(name);
        let result = (|| {
            let mut f = self
                .storage
                .create_new(&temp)
                .map_err(|e| Error::io("create", &temp, e))?;
            f.write_all(bytes)
                .and_then(|_| f.flush())
                .map_err(|e| Error::io("write", &temp, e))?;
            // Crash guard: the bytes are durable before the name can appear.
            if self.fsync {
                f.sync().map_err(|e| Error::io("fsync", &temp, e))?;
            }
            drop(f);
            // The commit point of this file; never replaces an existing one.
            self.storage
                .rename_no_replace(&temp, &target)
                .map_err(|e| Error::io("rename", &target, e))
        })();
        if result.is_err() {
            let _ = self.storage.remove_file(&temp);
        }
        result?;
        // Crash guard: the new name is durable before anything relies on it.
        if self.fsync {
            self.storage
                .sync_dir(dir)
                .map_err(|e| Error::io("fsync folder", dir, e))?;
        }
        Ok(())
    }

    /// Records `graph` under its fingerprint (once: an existing file is the same graph).
    pub(crate) fn write_graph(&self, graph: &GraphDesc) -> Result<String> {
        let fp = graph.fingerprint();
        let dir = self.dir.join(GRAPHS);
        let name = format!("{fp}.json");
        let names = self
            .storage
            .list(&dir)
            .map_err(|e| Error::io("list", &dir, e))?;
        if names.contains(&name) {
            if self.read_graph(&fp)? == *graph {
                return Ok(fp);
            }
            return Err(Error::corrupt(
                dir.join(&name),
                "a different graph has the same fingerprint",
            ));
        }
        self.write_new(&dir, &name, &seal("graph", graph)?)?;
        Ok(fp)
    }

    pub(crate) fn read_graph(&self, fingerprint: &str) -> Result<GraphDesc> {
        let path = self.dir.join(GRAPHS).join(format!("{fingerprint}.json"));
        let g: GraphDesc = read_sealed(self.storage.as_ref(), &path, "graph", GRAPH_FORMAT)?;
        if g.fingerprint() != fingerprint {
            return Err(Error::corrupt(
                &path,
                "the graph does not match its file name's fingerprint",
            ));
        }
        Ok(g)
    }

    pub(crate) fn write_plan(&self, plan: &Plan) -> Result<()> {
        self.write_new(
            &self.dir.join(LOG),
            &log_name(plan.batch, "plan"),
            &seal("plan", plan)?,
        )
    }

    pub(crate) fn write_commit(&self, commit: &Commit) -> Result<()> {
        self.write_new(
            &self.dir.join(LOG),
            &log_name(commit.batch, "commit"),
            &seal("commit", commit)?,
        )
    }

    pub(crate) fn read_plan(&self, batch: BatchId) -> Result<Plan> {
        let path = self.dir.join(LOG).join(log_name(batch, "plan"));
        let plan: Plan = read_sealed(self.storage.as_ref(), &path, "plan", PLAN_FORMAT)?;
        if plan.batch != batch {
            return Err(Error::corrupt(
                &path,
                format!("holds the plan of batch {}", plan.batch),
            ));
        }
        Ok(plan)
    }

    pub(crate) fn read_commit(&self, batch: BatchId) -> Result<Commit> {
        let path = self.dir.join(LOG).join(log_name(batch, "commit"));
        let c: Commit = read_sealed(self.storage.as_ref(), &path, "commit", COMMIT_FORMAT)?;
        if c.batch != batch {
            return Err(Error::corrupt(
                &path,
                format!("holds the commit of batch {}", c.batch),
            ));
        }
        Ok(c)
    }

    /// The batch ids of the plans and of the commits in the log, ascending.
    pub(crate) fn log(&self) -> Result<(Vec<BatchId>, Vec<BatchId>)> {
        let dir = self.dir.join(LOG);
        let names = match self.storage.list(&dir) {
            Ok(names) => names,
            // A start interrupted before it made the folder (`open` refused a stream that
            // has run without one).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let (mut plans, mut commits) = (Vec::new(), Vec::new());
        for n in names {
            let Some((stem, ext)) = n.split_once('.') else {
                continue;
            };
            let Ok(batch) = stem.parse::<BatchId>() else {
                continue;
            };
            match ext {
                "plan" => plans.push(batch),
                "commit" => commits.push(batch),
                _ => {}
            }
        }
        plans.sort_unstable();
        commits.sort_unstable();
        Ok((plans, commits))
    }

    /// The folder of stateful operator `op`'s state checkpoints.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    /// The folder of the sources' logged input.
    pub(crate) fn input_dir(&self) -> PathBuf {
        self.dir.join(INPUT)
    }

    /// Retention after commit `c` is durable (S16, STREAMING.md §3.4): keeps each operator's
    /// state checkpoint that `c` names, the plans from `c.low_water` on, commit `c` and the
    /// `retain` newest older commits, and the graph files those name. Everything else goes,
    /// oldest first (state folders go by `retain_state`). Best effort: a failed removal is retried after the next commit.
    pub(crate) fn retain(&self, c: &Commit, retain: usize) -> Result<()> {
        let (plans, commits) = self.log()?;
        let log = self.dir.join(LOG);
        let kept_commits: BTreeSet<BatchId> = commits
            .iter()
            .rev()
            .filter(|&&b| b <= c.batch)
            .take(retain + 1)
            .copied()
            .collect();
        for b in commits
            .iter()
            .filter(|b| !kept_commits.contains(b) && **b < c.batch)
        {
            let _ = self.storage.remove_file(&log.join(log_name(*b, "commit")));
        }
        for &b in plans.iter().filter(|&&b| b < c.low_water) {
            let _ = self.storage.remove_file(&log.join(log_name(b, "plan")));
        }
        // Graph files other than the commit's: only after a graph change. Those a kept
        // plan or commit names stay (reading them only then keeps a batch's cost flat).
        let gdir = self.dir.join(GRAPHS);
        let others: Vec<String> = self
            .storage
            .list(&gdir)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.strip_suffix(".json").is_some_and(|fp| fp != c.graph))
            .collect();
        if !others.is_empty() {
            let mut named: BTreeSet<String> = BTreeSet::new();
            for &b in plans.iter().filter(|&&b| b >= c.low_water) {
                if let Ok(p) = self.read_plan(b) {
                    named.insert(p.graph);
                }
            }
            for &b in &kept_commits {
                if let Ok(k) = self.read_commit(b) {
                    named.insert(k.graph);
                }
            }
            for n in others {
                if !named.contains(n.trim_end_matches(".json")) {
                    let _ = self.storage.remove_file(&gdir.join(&n));
                }
            }
        }
        if self.fsync {
            let _ = self.storage.sync_dir(&log);
        }
        Ok(())
    }

    /// Removes every state checkpoint of operator `op` except `keep` (relative path): run
    /// after a commit naming `keep` is durable. A folder an RDD of this process still reads
    /// goes when its last reader does.
    pub(crate) fn retain_state(&self, op: &str, keep: Option<&StateRef>) {
        let dir = self.state_dir().join(op);
        let Ok(names) = self.storage.list(&dir) else {
            return;
        };
        for n in names
            .iter()
            .filter(|n| crate::checkpoint::is_attempt_name(n))
        {
            let rel = format!("{STATE}/{op}/{n}");
            if keep.is_some_and(|k| k.path == rel) {
                continue;
            }
            let _ = crate::checkpoint::delete_when_unread(&dir.join(n), self.storage.clone());
        }
    }
}

/// Whether any stateful operator's state checkpoint folder exists under `dir/state`.
pub(crate) fn state_checkpoints_exist(storage: &dyn Storage, dir: &Path) -> bool {
    let state = dir.join(STATE);
    storage.list(&state).unwrap_or_default().iter().any(|op| {
        storage
            .list(&state.join(op))
            .unwrap_or_default()
            .iter()
            .any(|n| crate::checkpoint::is_attempt_name(n))
    })
}

fn seal<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(value)
        .map_err(|e| Error::Internal(format!("cannot encode the stream {key}: {e}")))?;
    Ok(seal_json(key, &body))
}

/// Reads and verifies a sealed metadata file: its checksum, then its version (so a newer
/// file says "upgrade" rather than "does not parse"), then its format name and schema.
fn read_sealed<T: DeserializeOwned>(
    storage: &dyn Storage,
    path: &Path,
    key: &str,
    format: &str,
) -> Result<T> {
    let mut bytes = Vec::new();
    storage
        .open(path)
        .and_then(|mut r| r.read_to_end(&mut bytes))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::corrupt(
                path,
                format!("the {key} file is missing, though the stream's metadata refers to it"),
            ),
            _ => Error::io("read", path, e),
        })?;
    let body = unseal_json(key, &bytes, path)?;
    #[derive(Deserialize)]
    struct Probe {
        format: String,
        version: u32,
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Error::corrupt(path, format!("{key} is not valid JSON: {e}")))?;
    if probe.format != format {
        return Err(Error::corrupt(
            path,
            format!("format is {:?}, expected {format:?}", probe.format),
        ));
    }
    if probe.version > STREAM_FORMAT_VERSION || probe.version == 0 {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: probe.version,
            max: STREAM_FORMAT_VERSION,
        });
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::corrupt(path, format!("{key} does not parse: {e}")))
}

/// Refuses `storage` for `dir` when its locks are leases (an object store), and an
/// `s3://` path on any storage (on the local filesystem it would be a folder named `s3:`):
/// `what` (a stream's checkpoint folder, a sink's output folder) rests on one writer at a
/// time, and a lease lost by a stalled writer would let a second one in while the first
/// still writes.
pub(crate) fn require_locks(storage: &dyn Storage, dir: &Path, what: &str) -> Result<()> {
    if storage.has_locks(dir) && !dir.to_string_lossy().starts_with("s3:") {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{}: {what} needs storage with locks (a local filesystem); object stores are not \
         supported here yet",
        dir.display()
    )))
}
