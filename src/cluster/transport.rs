//! The cluster's one collective operation, on timely-dataflow: every process hands in one
//! payload per process and gets back one payload from each (an all-to-all exchange; an
//! all-gather when the payloads are equal).
//!
//! One long-lived dataflow per process, one timely worker per process (on its own thread,
//! `timely:work-0`), one epoch per exchange. Records are `(target, source, bytes)`; timely's
//! `exchange` routes them by target, and a collecting operator files them by epoch; the
//! worker replies once the probe says the epoch is complete everywhere (timely's frontier is
//! the barrier). The driver (the thread that runs the job) talks to the worker over
//! channels and unparks it after each request.
//!
//! What timely does not do, and this module does:
//! - **Connections** are made here, not by timely's `create_sockets`, which waits forever
//!   for a missing peer and prints its progress on standard output (a program's data). Each
//!   side sends a handshake (magic, protocol, process count, its index, a hash of the
//!   address list), so a process of another cluster or another configuration is refused,
//!   and a peer that never comes is an error after [`ClusterConfig::connect_timeout`].
//! - **Every process sends exactly one record to every process in every epoch**, even an
//!   empty one: a process whose worker returned (its program ended, or took another path)
//!   releases its input, and timely then completes later epochs *without its records and
//!   without an error*. A missing record is that case, reported by name.
//! - **A dead peer** (killed, crashed) makes timely's network threads panic ("socket
//!   closed"); the panic is recorded here (a chained panic hook, for `timely:` threads only)
//!   and the exchange fails naming the process on the other end of the closed socket.
//!   After any failure the transport is broken for good: timely cannot re-form a cluster
//!   around a missing process, and the launcher restarts all of them.
//! - **A hung peer** (stopped, or stuck) is invisible to timely; an epoch that takes longer
//!   than [`ClusterConfig::epoch_timeout`] (off by default: a stage may legitimately take
//!   hours) fails.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Exchange, Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use super::ClusterConfig;
use crate::error::{Error, Result};

/// A record of the exchange: target process, source process, payload.
type Record = (usize, usize, Vec<u8>);

/// Received records by epoch, filed by the collecting operator.
type Filed = Rc<RefCell<BTreeMap<u64, Vec<Record>>>>;

/// The handshake's magic bytes.
const MAGIC: [u8; 8] = *b"FLKCLSTR";
/// The handshake protocol (bump when the exchange's records change).
const PROTOCOL: u32 = 1;
/// Bytes of a handshake: magic, protocol, processes, index, address hash.
const HANDSHAKE: usize = 8 + 4 + 8 + 8 + 8;

/// Panics of timely's threads, as `(thread name, message)`: how a dead peer is named.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

/// Chains a panic hook that records the panics of timely's threads (and does not print
/// them: the exchange's error carries them) and hands every other panic to the hook that
/// was installed before.
fn record_timely_panics() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("timely:") {
                let message = crate::scheduler::panic_message(info.payload());
                PANICS.lock().push((name.to_string(), message));
            } else {
                previous(info);
            }
        }));
    });
}

/// The cluster's exchange: see the module docs.
pub(crate) struct Transport {
    process: usize,
    processes: usize,
    epoch_timeout: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    epoch: u64,
    /// Requests to the worker: one payload per target process. `None` once shut down.
    requests: Option<Sender<Vec<Vec<u8>>>>,
    replies: Receiver<Vec<Record>>,
    worker: std::thread::Thread,
    guards: Option<WorkerGuards<()>>,
    /// Where `PANICS` stood when this transport started: later entries are its own.
    panics_from: usize,
    /// A handle on each peer's connection (the same sockets timely reads), to notice one
    /// that closed whatever timely's threads did about it (a program's own panic hook can
    /// hide their panics from `PANICS`).
    watched: Vec<Option<TcpStream>>,
    /// Per process, one past the newest exchange whose record from it arrived here.
    arrived: Arc<Mutex<Vec<u64>>>,
    /// Set by the first failure: the cluster cannot be used again.
    broken: Option<String>,
}

impl Transport {
    /// Connects to every process of `config` and starts the worker. Returns once every
    /// connection is made, or fails after the connect timeout naming the missing processes.
    pub(crate) fn start(config: &ClusterConfig) -> Result<Transport> {
        record_timely_panics();
        let panics_from = PANICS.lock().len();
        let me = config.process;
        let processes = config.addresses.len();
        let sockets = connect(config)?;
        // Clones kept to notice a peer's closed connection (see `peer_closed`).
        let watched = sockets
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.try_clone().ok()))
            .collect();
        let hooks = Hooks::default();
        let process_allocators =
            ProcessBuilder::new_typed_vector(1, hooks.refill.clone(), hooks.spill.clone());
        let (builders, comms) =
            initialize_networking_from_sockets(process_allocators, sockets, me, 1, hooks)
                .map_err(|e| cluster_error(None, format!("starting timely's network: {e}")))?;
        let builders: Vec<AllocatorBuilder> =
            builders.into_iter().map(AllocatorBuilder::Tcp).collect();
        let arrived = Arc::new(Mutex::new(vec![0u64; processes]));
        let seen = arrived.clone();
        let (request_tx, request_rx) = crossbeam_channel::unbounded::<Vec<Vec<u8>>>();
        let (reply_tx, reply_rx) = crossbeam_channel::unbounded::<Vec<Record>>();
        let guards = timely::execute::execute_from(
            builders,
            Box::new(comms),
            timely::WorkerConfig::default(),
            move |worker| serve(worker, &request_rx, &reply_tx, &seen),
        )
        .map_err(|e| cluster_error(None, format!("starting the timely worker: {e}")))?;
        let worker = guards.guards()[0].thread().clone();
        Ok(Transport {
            process: me,
            processes,
            epoch_timeout: config.epoch_timeout,
            state: Mutex::new(State {
                epoch: 0,
                requests: Some(request_tx),
                replies: reply_rx,
                worker,
                guards: Some(guards),
                panics_from,
                watched,
                arrived,
                broken: None,
            }),
        })
    }

    /// This process's index.
    pub(crate) fn process(&self) -> usize {
        self.process
    }

    /// How many processes the cluster has.
    pub(crate) fn processes(&self) -> usize {
        self.processes
    }

    /// Sends `outgoing[p]` to process `p` (every process, this one included) and returns
    /// what each process sent this one, by source. Every process of the cluster must call
    /// this the same number of times, in the same order; a process that does not (it
    /// died, returned, or took another path) fails the call everywhere, naming it.
    pub(crate) fn exchange(&self, outgoing: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        if outgoing.len() != self.processes {
            return Err(Error::Internal(format!(
                "{} payloads for {} processes",
                outgoing.len(),
                self.processes
            )));
        }
        let mut state = self.state.lock();
        if let Some(why) = &state.broken {
            return Err(cluster_error(
                None,
                format!("the cluster failed earlier and cannot be used again: {why}"),
            ));
        }
        let epoch = state.epoch;
        let result = state
            .round(outgoing, self.epoch_timeout)
            .and_then(|records| check_sources(records, self.processes, self.process, epoch));
        match result {
            Ok(payloads) => {
                state.epoch += 1;
                Ok(payloads)
            }
            Err(e) => {
                state.break_for(e.to_string());
                Err(e)
            }
        }
    }

    /// Ends the cluster for this process (see [`State::break_for`]).
    pub(crate) fn fail(&self, why: &str) {
        self.state.lock().break_for(why.to_string());
    }
}

impl State {
    /// Marks the transport broken for good, and stops the worker: a peer still waiting for
    /// this process's next records is told at once that it left, instead of waiting on a
    /// process that will not send again.
    fn break_for(&mut self, why: String) {
        if self.broken.is_none() {
            self.broken = Some(why);
        }
        self.requests = None;
        self.worker.unpark();
    }

    /// Hands the request to the worker and waits for its reply.
    fn round(&mut self, outgoing: Vec<Vec<u8>>, timeout: Option<Duration>) -> Result<Vec<Record>> {
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|requests| requests.send(outgoing).is_ok());
        self.worker.unpark();
        let start = Instant::now();
        loop {
            if !sent {
                return Err(self.worker_failed(self.epoch));
            }
            match self.replies.recv_timeout(Duration::from_millis(100)) {
                Ok(records) => return Ok(records),
                Err(RecvTimeoutError::Disconnected) => return Err(self.worker_failed(self.epoch)),
                Err(RecvTimeoutError::Timeout) => {
                    // A network thread that panicked (a peer's socket closed) does not
                    // always wake the worker: the driver looks for itself.
                    if self.network_failed() {
                        return Err(self.worker_failed(self.epoch));
                    }
                    if let Some(limit) = timeout.filter(|t| start.elapsed() > *t) {
                        let arrived = self.arrived.lock();
                        let waiting: Vec<usize> = (0..arrived.len())
                            .filter(|&p| arrived[p] <= self.epoch)
                            .collect();
                        return Err(cluster_error(
                            waiting.first().copied(),
                            format!(
                                "exchange {} did not complete within {limit:?}: nothing yet from \
                                 process{} {waiting:?}, hung, stopped, or slower than the epoch \
                                 timeout allows",
                                self.epoch,
                                if waiting.len() == 1 { "" } else { "es" }
                            ),
                        ));
                    }
                }
            }
        }
    }

    /// Whether one of timely's network threads panicked since this transport started.
    fn network_failed(&self) -> bool {
        if !self.closed_peers().is_empty() {
            return true;
        }
        // Where sockets cannot be watched, timely's panics are the sign (of this process's
        // transports: with two clusters in one process, either's).
        !cfg!(target_os = "linux")
            && PANICS
                .lock()
                .get(self.panics_from..)
                .is_some_and(|mine| mine.iter().any(|(t, _)| t.starts_with("timely:recv-")))
    }

    /// The peers whose connections are closed, in process order.
    fn closed_peers(&self) -> Vec<usize> {
        (0..self.watched.len())
            .filter(|&p| self.watched[p].as_ref().is_some_and(peer_closed))
            .collect()
    }

    /// The error of a worker that stopped answering: names the processes whose sockets
    /// closed, from the panics of timely's network threads.
    fn worker_failed(&self, epoch: u64) -> Error {
        // The network threads' panics race the worker's: give them a moment to land.
        std::thread::sleep(Duration::from_millis(50));
        let closed = self.closed_peers();
        let panics = PANICS.lock();
        let mine = &panics[self.panics_from.min(panics.len())..];
        // A panic of timely's network threads names the peer at the other end; with two
        // clusters in one process it may be the other cluster's, so on Linux only the
        // peers whose sockets here are closed count.
        let watched = cfg!(target_os = "linux");
        let peer_of = |thread: &str| -> Option<usize> {
            let p = thread.strip_prefix("timely:recv-")?.parse().ok()?;
            (!watched || closed.contains(&p)).then_some(p)
        };
        // In the order their sockets closed, as far as the panics tell: the first is the
        // one that died, the others may have closed after noticing it.
        let mut dead: Vec<usize> = Vec::new();
        for p in mine
            .iter()
            .filter_map(|(thread, _)| peer_of(thread))
            .chain(closed.iter().copied())
        {
            if !dead.contains(&p) {
                dead.push(p);
            }
        }
        let detail = mine
            .iter()
            .find(|(thread, _)| peer_of(thread).is_some())
            .map(|(thread, message)| format!(" ({thread}: {message})"))
            .unwrap_or_default();
        match dead.as_slice() {
            [] => cluster_error(
                None,
                format!("the timely worker stopped during exchange {epoch}{detail}"),
            ),
            [p, later @ ..] => cluster_error(
                Some(*p),
                format!(
                    "process {p} closed its connection during exchange {epoch}: it died or \
                     was killed{detail}{}",
                    if later.is_empty() {
                        String::new()
                    } else {
                        format!("; then processes {later:?} closed theirs")
                    }
                ),
            ),
        }
    }
}

impl Drop for Transport {
    /// Stops the worker. A healthy cluster's threads are joined (for a while: a peer still
    /// working keeps the connections open); a broken one's are left to the process's end,
    /// since joining them would re-raise their panics or wait for a peer that is gone.
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.requests = None;
        state.worker.unpark();
        let Some(guards) = state.guards.take() else {
            return;
        };
        if state.broken.is_some() {
            std::mem::forget(guards);
            return;
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let joined = std::thread::Builder::new()
            .name("flintlock-cluster-join".into())
            .spawn(move || {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guards.join()));
                let _ = done_tx.send(());
            });
        if joined.is_ok() {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// The worker's loop: one epoch per request, until the driver hangs up.
fn serve(
    worker: &mut timely::worker::Worker,
    requests: &Receiver<Vec<Vec<u8>>>,
    replies: &Sender<Vec<Record>>,
    arrived: &Arc<Mutex<Vec<u64>>>,
) {
    let me = worker.index();
    let filed: Filed = Rc::default();
    let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Record>>> =
        InputHandle::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let routed = scope
            .input_from(&mut input)
            .container::<Vec<Record>>()
            .exchange(|(target, _, _)| *target as u64);
        let filed = filed.clone();
        let arrived = arrived.clone();
        routed
            .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
                Pipeline,
                "FileByEpoch",
                move |_, _| {
                    move |input, _output| {
                        input.for_each(|time, data| {
                            // Never `None` for a totally ordered time; if it were, the records would
                            // be missing from their epoch, which `check_sources` reports.
                            let epoch = time.least().copied().unwrap_or(u64::MAX);
                            let mut seen = arrived.lock();
                            for (_, source, _) in data.iter() {
                                if let Some(s) = seen.get_mut(*source) {
                                    *s = (*s).max(epoch.saturating_add(1));
                                }
                            }
                            drop(seen);
                            filed.borrow_mut().entry(epoch).or_default().append(data);
                        });
                    }
                },
            )
            .probe_with(&probe);
    });
    loop {
        let outgoing = match requests.try_recv() {
            Ok(outgoing) => outgoing,
            Err(TryRecvError::Empty) => {
                // Keeps the network and progress moving while idle; the driver unparks the
                // thread after each request.
                worker.step_or_park(Some(Duration::from_millis(100)));
                continue;
            }
            Err(TryRecvError::Disconnected) => return,
        };
        let epoch = *input.time();
        for (target, bytes) in outgoing.into_iter().enumerate() {
            input.send((target, me, bytes));
        }
        input.advance_to(epoch + 1);
        while probe.less_than(&(epoch + 1)) {
            worker.step_or_park(None);
        }
        let records = filed.borrow_mut().remove(&epoch).unwrap_or_default();
        if replies.send(records).is_err() {
            return;
        }
    }
}

/// The payloads of one epoch by source, after checking that every process sent exactly one
/// record to this one.
fn check_sources(
    records: Vec<Record>,
    processes: usize,
    me: usize,
    epoch: u64,
) -> Result<Vec<Vec<u8>>> {
    let mut by_source: Vec<Option<Vec<u8>>> = vec![None; processes];
    for (target, source, bytes) in records {
        if target != me || source >= processes || by_source[source].is_some() {
            return Err(cluster_error(
                Some(source),
                format!(
                    "exchange {epoch}: an unexpected record (from process {source} to process \
                     {target}) reached process {me}"
                ),
            ));
        }
        by_source[source] = Some(bytes);
    }
    let missing: Vec<usize> = (0..processes).filter(|&p| by_source[p].is_none()).collect();
    if let Some(&first) = missing.first() {
        return Err(cluster_error(
            Some(first),
            format!(
                "exchange {epoch}: process{} {missing:?} left the cluster: {} program ended, \
                 or took another path, without this exchange (every process must run the \
                 same jobs in the same order)",
                if missing.len() > 1 { "es" } else { "" },
                if missing.len() > 1 { "their" } else { "its" },
            ),
        ));
    }
    Ok(by_source
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// A hash of the address list: processes configured with different lists refuse each other.
fn addresses_hash(addresses: &[String]) -> u64 {
    crate::checkpoint::format::type_fingerprint(&addresses.join("\n"))
}

fn handshake(config: &ClusterConfig) -> [u8; HANDSHAKE] {
    let mut out = [0u8; HANDSHAKE];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&PROTOCOL.to_le_bytes());
    out[12..20].copy_from_slice(&(config.addresses.len() as u64).to_le_bytes());
    out[20..28].copy_from_slice(&(config.process as u64).to_le_bytes());
    out[28..36].copy_from_slice(&addresses_hash(&config.addresses).to_le_bytes());
    out
}

/// Reads the peer's handshake and returns its process index, or says why it is refused.
fn read_handshake(
    stream: &mut TcpStream,
    config: &ClusterConfig,
) -> std::result::Result<usize, String> {
    let mut buf = [0u8; HANDSHAKE];
    stream
        .read_exact(&mut buf)
        .map_err(|e| format!("no handshake: {e}"))?;
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[r]);
        u64::from_le_bytes(b)
    };
    if buf[0..8] != MAGIC {
        return Err("not a flintlock cluster process".into());
    }
    let protocol = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if protocol != PROTOCOL {
        return Err(format!(
            "cluster protocol {protocol}, this build speaks {PROTOCOL} (another flintlock version)"
        ));
    }
    let (processes, index, hash) = (word(12..20), word(20..28), word(28..36));
    if processes != config.addresses.len() as u64 || hash != addresses_hash(&config.addresses) {
        return Err(format!(
            "configured for {processes} processes with another address list"
        ));
    }
    usize::try_from(index)
        .ok()
        .filter(|&i| i < config.addresses.len() && i != config.process)
        .ok_or_else(|| format!("claims process index {index}"))
}

fn cluster_error(process: Option<usize>, message: String) -> Error {
    Error::Cluster { process, message }
}

/// Makes one connection to every other process: this process connects to the ones before
/// it and accepts the ones after it (as timely does), each side checking the other's
/// handshake, all within the connect timeout.
fn connect(config: &ClusterConfig) -> Result<Vec<Option<TcpStream>>> {
    let me = config.process;
    let n = config.addresses.len();
    let deadline = Instant::now() + config.connect_timeout;
    let hello = handshake(config);
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut refused: Vec<String> = Vec::new();
    let listener = if me + 1 < n {
        let listener = TcpListener::bind(&config.addresses[me]).map_err(|e| {
            cluster_error(
                Some(me),
                format!(
                    "process {me} cannot listen on {}: {e}",
                    config.addresses[me]
                ),
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| cluster_error(Some(me), format!("listening socket: {e}")))?;
        Some(listener)
    } else {
        None
    };
    let resolved: Vec<Option<SocketAddr>> = config
        .addresses
        .iter()
        .map(|a| a.to_socket_addrs().ok().and_then(|mut it| it.next()))
        .collect();
    loop {
        for p in 0..me {
            if sockets[p].is_some() {
                continue;
            }
            let Some(addr) = resolved[p] else {
                return Err(cluster_error(
                    Some(p),
                    format!(
                        "process {p}'s address {:?} does not resolve",
                        config.addresses[p]
                    ),
                ));
            };
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                let greeted = stream
                    .set_read_timeout(Some(handshake_wait(deadline)))
                    .and_then(|()| stream.write_all(&hello))
                    .map_err(|e| e.to_string())
                    .and_then(|()| read_handshake(&mut stream, config));
                match greeted {
                    Ok(index) if index == p => sockets[p] = Some(configured(stream, p)?),
                    Ok(index) => {
                        return Err(cluster_error(
                            Some(p),
                            format!(
                                "{} answered as process {index}, expected process {p}",
                                config.addresses[p]
                            ),
                        ))
                    }
                    Err(why) => {
                        return Err(cluster_error(
                            Some(p),
                            format!("{} refused: {why}", config.addresses[p]),
                        ))
                    }
                }
            }
        }
        if let Some(listener) = &listener {
            while let Ok((mut stream, _)) = listener.accept() {
                let greeted = stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(handshake_wait(deadline))))
                    .map_err(|e| e.to_string())
                    .and_then(|()| read_handshake(&mut stream, config));
                match greeted {
                    Ok(index) if index > me && sockets[index].is_none() => {
                        stream
                            .write_all(&hello)
                            .map_err(|e| cluster_error(Some(index), format!("handshake: {e}")))?;
                        sockets[index] = Some(configured(stream, index)?);
                    }
                    // A stray connection (another program, a stale process of an earlier
                    // run, a peer configured otherwise): refused, and the wait goes on for
                    // the real peer; the timeout's error says what was refused.
                    Ok(index) => refused.push(format!(
                        "a second connection claiming process {index} was refused"
                    )),
                    Err(why) => refused.push(format!(
                        "a connection from {} was refused: {why}",
                        stream
                            .peer_addr()
                            .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string())
                    )),
                }
            }
        }
        let missing: Vec<usize> = (0..n)
            .filter(|&p| p != me && sockets[p].is_none())
            .collect();
        if missing.is_empty() {
            return Ok(sockets);
        }
        if Instant::now() > deadline {
            let who: Vec<String> = missing
                .iter()
                .map(|&p| format!("{p} ({})", config.addresses[p]))
                .collect();
            return Err(cluster_error(
                Some(missing[0]),
                format!(
                    "process {me} could not connect to process{} {} within {:?}{}",
                    if missing.len() > 1 { "es" } else { "" },
                    who.join(", "),
                    config.connect_timeout,
                    if refused.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", refused.join("; "))
                    }
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the peer at the other end of `stream` closed the connection (or it broke),
/// without taking any bytes from timely's reader: a non-blocking peek, which sees the end of
/// the stream (or an error) for as long as the socket is closed.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one syscall, see SAFETY below
fn peer_closed(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    // SAFETY: `recv` on a socket descriptor `stream` owns, into a 1-byte buffer that lives
    // through the call; MSG_PEEK leaves the bytes for timely's reader, and MSG_DONTWAIT
    // makes this one call non-blocking without changing the socket's (shared) mode.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => !matches!(
            std::io::Error::last_os_error().kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}

/// Elsewhere, a closed connection is noticed through timely's threads' panics only.
#[cfg(not(target_os = "linux"))]
fn peer_closed(_: &TcpStream) -> bool {
    false
}

/// How long a handshake may take: 2 s, or what is left before `deadline` (at least 10 ms).
fn handshake_wait(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(10), Duration::from_secs(2))
}

/// A connected socket as timely wants it: blocking, no delay, no timeouts.
fn configured(stream: TcpStream, peer: usize) -> Result<TcpStream> {
    stream
        .set_read_timeout(None)
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| cluster_error(Some(peer), format!("configuring the connection: {e}")))?;
    Ok(stream)
}
