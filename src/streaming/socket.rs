//! `socket_text_stream`: lines from a TCP server (Spark's `socketTextStream`), written to
//! the streaming folder before the batch that reads them is planned (Spark's receiver
//! write-ahead log), so a replay reads them back from there.
//!
//! A receiver thread connects to the address, reads lines into a bounded buffer (when it
//! is full the thread stops reading, so TCP slows the sender down rather than lines being
//! dropped) and reconnects when the connection closes or fails. Each batch takes every
//! line received so far; with a checkpoint folder it writes them as a checkpoint under
//! `input/<source>/` and only then is the plan, which names that checkpoint, written.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::meta::{ReplayToken, SourcePosition, StreamDir, INPUT};
use super::sources::{token, wrong_kind, wrong_token, SourceOps};
use super::state::write_series;
use super::{BatchId, BatchRun, DStream, StreamingContext};
use crate::checkpoint::AppDir;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::Rdd;

/// How many bytes of received lines a socket source holds before its receiver stops
/// reading (and TCP's flow control makes the sender wait).
pub const SOCKET_BUFFER_BYTES: usize = 64 << 20;

/// How long a blocked read waits before the receiver checks whether to stop.
const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Buffer {
    lines: Vec<String>,
    bytes: usize,
    /// The newest connection error, for the source's status.
    last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    drained: Condvar,
    stop: AtomicBool,
}

/// A batch this process planned: its lines (kept in case the plan is not written and the
/// batch is planned again) and the RDD the batch reads.
struct Held {
    lines: Arc<Vec<String>>,
    rdd: Rdd<String>,
}

pub(crate) struct SocketSource {
    name: String,
    addr: String,
    shared: Arc<Shared>,
    receiver: Mutex<Option<JoinHandle<()>>>,
    /// The source's log folder and the stream folder, with a checkpoint folder.
    log: OnceLock<(Arc<AppDir>, PathBuf)>,
    held: Mutex<BTreeMap<BatchId, Held>>,
    consumed: Mutex<u64>,
}

impl SocketSource {
    /// Starts the receiver thread (once).
    fn start_receiver(&self) -> Result<()> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(Error::InvalidArgument(format!(
                "socket stream `{}` was shut down",
                self.name
            )));
        }
        let mut receiver = self.receiver.lock();
        if receiver.is_none() {
            let (addr, shared) = (self.addr.clone(), self.shared.clone());
            let handle = std::thread::Builder::new()
                .name(format!("flintlock-socket-{}", self.name))
                .spawn(move || receive(&addr, &shared))
                .map_err(|e| Error::io("start the receiver of", Path::new(&self.addr), e))?;
            *receiver = Some(handle);
        }
        Ok(())
    }

    fn rdd(&self, run: &BatchRun<'_>) -> Result<Rdd<String>> {
        if let Some(h) = self.held.lock().get(&run.batch.id) {
            return Ok(h.rdd.clone());
        }
        match token(run, &self.name)? {
            ReplayToken::Lines { log: None, .. } => Ok(run.ctx.empty()),
            ReplayToken::Lines { log: Some(log), .. } => {
                let Some((_, stream_dir)) = self.log.get() else {
                    return Err(Error::Internal(format!(
                        "socket stream `{}`: batch {} names a log but the stream has no \
                         checkpoint folder",
                        self.name, run.batch.id
                    )));
                };
                run.ctx.open_checkpoint::<String>(stream_dir.join(log))
            }
            other => Err(wrong_token(&self.name, other)),
        }
    }
}

impl SourceOps for SocketSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn attach(&self, meta: &StreamDir, ctx: &Context, newest_plan: Option<BatchId>) -> Result<()> {
        let app = Arc::new(AppDir::open(
            &meta.input_dir(),
            &self.name,
            &ctx.inner.config,
        )?);
        // Lines logged for a batch whose plan was never written were not yet the
        // stream's: that log goes (S7: received, unplanned lines are lost in a crash).
        remove_logs(&app, |step| newest_plan.is_none_or(|p| step > p));
        let _ = self.log.set((app, meta.path().to_path_buf()));
        Ok(())
    }

    fn plan(&self, ctx: &Context, batch: BatchId) -> Result<ReplayToken> {
        self.start_receiver()?;
        // Lines of an earlier attempt at this batch whose plan was not written come first.
        let mut lines: Vec<String> = match self.held.lock().remove(&batch) {
            Some(h) => Arc::unwrap_or_clone(h.lines),
            None => Vec::new(),
        };
        {
            let mut b = self.shared.buffer.lock();
            lines.append(&mut b.lines);
            b.bytes = 0;
        }
        self.shared.drained.notify_all();
        let count = lines.len() as u64;
        if lines.is_empty() {
            return Ok(ReplayToken::Lines {
                log: None,
                lines: 0,
            });
        }
        let lines = Arc::new(lines);
        let parts = ctx.threads().clamp(1, lines.len().div_ceil(1024));
        let rdd = ctx.parallelize((*lines).clone(), parts);
        let log = match self.log.get() {
            Some((app, _)) => {
                let held = Held {
                    lines: lines.clone(),
                    rdd: rdd.clone(),
                };
                // Held before the write: a failed write leaves the lines to the retry.
                self.held.lock().insert(batch, held);
                let path = write_series(&rdd, app, &self.name, batch)?;
                let folder = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(format!("{INPUT}/{}/{folder}", self.name))
            }
            None => {
                self.held.lock().insert(batch, Held { lines, rdd });
                None
            }
        };
        Ok(ReplayToken::Lines { log, lines: count })
    }

    fn advance(&self, token: &ReplayToken) {
        if let ReplayToken::Lines { lines, .. } = token {
            *self.consumed.lock() += lines;
            // Batches commit in order: the oldest held one is this token's.
            self.held.lock().pop_first();
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::Lines {
            consumed: *self.consumed.lock(),
        }
    }

    fn restore(&self, position: Option<&SourcePosition>) -> Result<()> {
        *self.consumed.lock() = match position {
            None => 0,
            Some(SourcePosition::Lines { consumed }) => *consumed,
            Some(other) => return Err(wrong_kind(&self.name, other)),
        };
        self.held.lock().clear();
        Ok(())
    }

    fn retain(&self, low_water: BatchId) {
        if let Some((app, _)) = self.log.get() {
            remove_logs(app, |step| step < low_water);
        }
    }

    fn start(&self) -> Result<()> {
        self.start_receiver()
    }

    fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.drained.notify_all();
        if let Some(handle) = self.receiver.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SocketSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes the committed logs whose batch `doomed` picks (a folder an RDD of this process
/// still reads goes when its last reader does).
fn remove_logs(app: &Arc<AppDir>, doomed: impl Fn(BatchId) -> bool) {
    let storage = app.storage.clone();
    let Ok(found) = crate::checkpoint::scan(storage.as_ref(), app.dir()) else {
        return;
    };
    for (dir, manifest) in found {
        let step = manifest.ok().and_then(|m| m.series).map(|s| s.step);
        if step.is_some_and(&doomed) {
            let _ = crate::checkpoint::delete_when_unread(&dir, storage.clone());
        }
    }
}

/// The receiver thread: connects, reads lines into the buffer, reconnects, until stopped.
fn receive(addr: &str, shared: &Shared) {
    let mut backoff = POLL;
    while !shared.stop.load(Ordering::Acquire) {
        match connect(addr) {
            Ok(stream) => {
                backoff = POLL;
                if let Err(e) = read_lines(stream, shared) {
                    shared.buffer.lock().last_error = Some(e.to_string());
                }
            }
            Err(e) => {
                shared.buffer.lock().last_error = Some(e.to_string());
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        sleep_unless_stopped(shared, backoff);
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the address resolves to nothing",
        )
    }))
}

fn sleep_unless_stopped(shared: &Shared, d: Duration) {
    let mut b = shared.buffer.lock();
    if !shared.stop.load(Ordering::Acquire) {
        shared.drained.wait_for(&mut b, d);
    }
}

/// Reads one connection's lines until it ends (`Ok`), fails, or the source stops. Each
/// line goes to the buffer as soon as it is complete; a line longer than the buffer's
/// bound is cut at the bound (its parts become lines), so memory stays bounded.
fn read_lines(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(POLL))?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::new();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let room = (SOCKET_BUFFER_BYTES - line.len()) as u64;
        let result = (&mut reader).take(room).read_until(b'\n', &mut line);
        let ended = matches!(result, Ok(0));
        let complete = line.last() == Some(&b'\n') || line.len() >= SOCKET_BUFFER_BYTES;
        if complete || (ended && !line.is_empty()) {
            publish(shared, std::mem::take(&mut line));
        }
        match result {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if !line.is_empty() {
                    publish(shared, std::mem::take(&mut line));
                }
                return Err(e);
            }
        }
    }
}

/// Moves a received line into the buffer, first waiting while the buffer is full (the
/// receiver then reads nothing, and TCP makes the sender wait).
fn publish(shared: &Shared, line: Vec<u8>) {
    let mut b = shared.buffer.lock();
    while b.bytes >= SOCKET_BUFFER_BYTES && !shared.stop.load(Ordering::Acquire) {
        shared.drained.wait_for(&mut b, POLL);
    }
    b.bytes += line.len();
    b.lines.push(text(line));
}

/// A received line as text: without its `\n` or `\r\n`, invalid UTF-8 replaced by U+FFFD
/// (as Spark's receiver decodes).
fn text(mut bytes: Vec<u8>) -> String {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

impl StreamingContext {
    /// A stream of the lines a TCP server at `addr` (`"host:port"`) sends (Spark's
    /// `socketTextStream`). A receiver thread connects when the stream starts, reconnects
    /// whenever the connection ends or fails (retrying every second at most while the
    /// server is down), and holds at most [`SOCKET_BUFFER_BYTES`] of unread lines (then it
    /// stops reading and TCP makes the server wait). Each batch reads every line received
    /// before it was planned. Lines end at `\n` (a `\r` before it is dropped; a line longer
    /// than [`SOCKET_BUFFER_BYTES`] is cut into lines of that length); invalid UTF-8 is
    /// replaced by U+FFFD.
    ///
    /// **What a crash loses.** With a checkpoint folder, a batch's lines are written there
    /// (`input/<name>/`, in the checkpoint format) before its plan, so a planned batch
    /// replays exactly its lines after a restart. Lines received but not yet in a planned
    /// batch live only in memory (and in the server's and kernel's socket buffers): a crash
    /// loses them, as a TCP socket cannot be rewound. That is at most one batch interval
    /// of input plus the buffer. Without a checkpoint folder, a crash loses every line of
    /// the batches not yet committed too. A server that must not lose lines needs
    /// acknowledgements, which a plain socket does not have: use files
    /// ([`StreamingContext::text_file_stream`]) for those.
    ///
    /// The address is part of the recorded graph: a restart reading another is refused.
    #[track_caller]
    pub fn socket_text_stream(&mut self, name: &str, addr: &str) -> DStream<String> {
        let source = Arc::new(SocketSource {
            name: name.to_string(),
            addr: addr.to_string(),
            shared: Arc::default(),
            receiver: Mutex::new(None),
            log: OnceLock::new(),
            held: Mutex::new(BTreeMap::new()),
            consumed: Mutex::new(0),
        });
        let s = source.clone();
        self.add_source(
            name,
            "socket_text_stream",
            Some(addr.to_string()),
            source,
            move |run| s.rdd(run),
        )
    }
}
