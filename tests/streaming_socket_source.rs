//! `socket_text_stream` reads the lines a loopback TCP server (started by each test) sends:
//! each line once, in order; a planned batch's lines are logged before its plan, so a
//! restart replays exactly them; the receiver waits for a server that is not up and
//! reconnects; retention keeps only the logs recovery reads.

use crate::common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flintlock::streaming::{ManualClock, StreamingContext, Until};
use flintlock::{Context, Error, Result};

/// A loopback server: accepts connections and sends lines on the newest one.
struct Server {
    addr: String,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    fn start() -> Server {
        Server::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Server {
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                match s {
                    Ok(s) => c.lock().unwrap().push(s),
                    Err(_) => return,
                }
            }
        });
        Server { addr, conns }
    }

    /// Waits for the `n`-th connection.
    fn wait_for_connections(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.conns.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "no connection {n} from the receiver"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes `bytes` on the newest connection.
    fn send(&self, bytes: &[u8]) {
        self.wait_for_connections(1);
        let mut conns = self.conns.lock().unwrap();
        conns.last_mut().unwrap().write_all(bytes).unwrap();
    }

    fn send_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.send(text.as_bytes());
    }

    /// Closes every connection (the receiver reconnects).
    fn hang_up(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn numbered(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("line {i:06}")).collect()
}

/// Each batch's lines, as the stream's output saw them.
type Seen = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

fn stream(ctx: &Context, addr: &str, seen: &Seen, fail_first_nonempty: bool) -> StreamingContext {
    let mut ssc = StreamingContext::new(ctx, Duration::from_millis(10)).clock(ManualClock::auto());
    let out = seen.clone();
    let failed = AtomicBool::new(!fail_first_nonempty);
    ssc.socket_text_stream("sock", addr)
        .foreach_rdd("collect", move |rdd, batch| {
            let lines = rdd.collect()?;
            if !lines.is_empty() && !failed.swap(true, Ordering::SeqCst) {
                out.lock().unwrap().push((u64::MAX, lines));
                return Err(Error::InvalidArgument("the output fails once".into()));
            }
            out.lock().unwrap().push((batch.id, lines));
            Ok(())
        });
    ssc
}

/// Runs batches until the output holds `n` lines in all (or fails the test after 20 s).
fn run_until_lines(ssc: &mut StreamingContext, seen: &Seen, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while all_lines(seen).len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} lines arrived",
            all_lines(seen).len()
        );
        ssc.run(Until::Batches(1)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn all_lines(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(b, _)| *b != u64::MAX)
        .flat_map(|(_, l)| l.clone())
        .collect()
}

#[test]
fn every_line_arrives_once_in_order_across_batches() {
    let server = Server::start();
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.checkpoint(dir.path()).unwrap();
    ssc.run(Until::Batches(1)).unwrap(); // starts the receiver
    let sent = numbered(0..20_000);
    for chunk in sent.chunks(997) {
        server.send_lines(chunk);
    }
    run_until_lines(&mut ssc, &seen, sent.len());
    assert_eq!(all_lines(&seen), sent);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .count()
            >= 1,
        "batches hold the lines"
    );
}

#[test]
fn a_planned_batch_replays_exactly_its_logged_lines_after_a_restart() {
    let server = Server::start();
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let seen: Seen = Arc::default();
    let (mut ssc, _) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| Ok(stream(c, &server.addr, &seen, true)))
            .unwrap();
    ssc.run(Until::Batches(1)).unwrap();
    server.send_lines(&numbered(0..500));
    // Batches run until one holding lines is planned; its output fails once.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        assert!(Instant::now() < deadline, "no lines arrived");
        if let Err(e) = ssc.run(Until::Batches(1)) {
            break e;
        }
    };
    assert!(err.to_string().contains("fails once"), "{err}");
    let failed_batch: Vec<String> = seen.lock().unwrap().last().unwrap().1.clone();
    let pending = ssc.last_committed().map_or(0, |c| c + 1);
    drop(ssc); // a crash after the plan: the lines held only in memory are gone
    seen.lock().unwrap().clear();
    let (mut ssc, recovery) =
        StreamingContext::get_or_create(&ctx, &ckpt, |c| Ok(stream(c, &server.addr, &seen, false)))
            .unwrap();
    assert_eq!(recovery.rerun, Some(pending));
    ssc.run(Until::Batches(1)).unwrap();
    assert_eq!(
        seen.lock().unwrap()[0],
        (pending, failed_batch.clone()),
        "the re-run batch reads its logged lines"
    );
    // The new receiver's connection gets the next lines.
    server.wait_for_connections(2);
    let more = numbered(1000..1100);
    server.send_lines(&more);
    run_until_lines(&mut ssc, &seen, failed_batch.len() + more.len());
    let got = all_lines(&seen);
    assert_eq!(got[failed_batch.len()..], more[..]);
}

#[test]
fn without_a_checkpoint_folder_lines_stream_from_memory() {
    let server = Server::start();
    let ctx = common::ctx();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.run(Until::Batches(1)).unwrap();
    let sent = numbered(0..3000);
    server.send_lines(&sent);
    run_until_lines(&mut ssc, &seen, sent.len());
    assert_eq!(all_lines(&seen), sent);
}

#[test]
fn the_receiver_waits_for_a_server_that_is_not_up_and_reconnects_after_a_hang_up() {
    // A free port with nothing listening yet (outside the range the other tests of the
    // suite draw theirs from, so none of them takes it before the server binds it).
    let addr = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        common::free_ports_outside_the_ephemeral_range(1),
    ));
    let ctx = common::ctx();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &addr.to_string(), &seen, false);
    ssc.run(Until::Batches(5)).unwrap();
    assert!(
        all_lines(&seen).is_empty(),
        "empty batches while the server is down"
    );
    let server = Server::on(TcpListener::bind(addr).unwrap());
    let first = numbered(0..100);
    server.send_lines(&first);
    run_until_lines(&mut ssc, &seen, 100);
    server.hang_up();
    server.wait_for_connections(1); // the receiver is back
    let second = numbered(100..200);
    server.send_lines(&second);
    run_until_lines(&mut ssc, &seen, 200);
    assert_eq!(all_lines(&seen), numbered(0..200));
}

#[test]
fn lines_end_at_newlines_and_invalid_utf8_is_replaced() {
    let server = Server::start();
    let ctx = common::ctx();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.run(Until::Batches(1)).unwrap();
    server.send(b"a\r\nb\n\n\xff\xfe c\nno newline at the end");
    server.hang_up(); // the last line ends with the connection
    run_until_lines(&mut ssc, &seen, 5);
    assert_eq!(
        all_lines(&seen),
        vec!["a", "b", "", "\u{FFFD}\u{FFFD} c", "no newline at the end"]
    );
}

fn log_folders(ckpt: &Path) -> usize {
    std::fs::read_dir(ckpt.join("input/sock"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("rdd-"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn retention_keeps_only_the_logs_recovery_reads_and_empty_batches_log_nothing() {
    let server = Server::start();
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.checkpoint(dir.path()).unwrap();
    ssc.run(Until::Batches(3)).unwrap();
    assert_eq!(log_folders(dir.path()), 0, "empty batches log nothing");
    for i in 0..30 {
        server.send_lines(&numbered(i * 10..i * 10 + 10));
        run_until_lines(&mut ssc, &seen, (i as usize + 1) * 10);
    }
    // Without stateful operators recovery reads only the newest plan's input.
    assert!(
        log_folders(dir.path()) <= 1,
        "{} logs kept",
        log_folders(dir.path())
    );
    assert_eq!(all_lines(&seen), numbered(0..300));
}

#[test]
fn a_restart_reading_another_address_is_refused() {
    let (a, b) = (Server::start(), Server::start());
    let ctx = common::ctx();
    let dir = tempfile::tempdir().unwrap();
    let seen: Seen = Arc::default();
    let build = |addr: String| {
        let seen = seen.clone();
        move |c: &Context| -> Result<StreamingContext> { Ok(stream(c, &addr, &seen, false)) }
    };
    let (mut s, _) =
        StreamingContext::get_or_create(&ctx, dir.path(), build(a.addr.clone())).unwrap();
    s.run(Until::Batches(2)).unwrap();
    drop(s);
    match StreamingContext::get_or_create(&ctx, dir.path(), build(b.addr.clone())) {
        Err(Error::GraphChanged { .. }) => {}
        Err(e) => panic!("expected GraphChanged, got {e}"),
        Ok(_) => panic!("a restart reading another server was accepted"),
    }
}

#[test]
fn lines_arrive_while_the_connection_stays_busy() {
    let server = Server::start();
    let ctx = common::ctx();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.run(Until::Batches(1)).unwrap();
    server.wait_for_connections(1);
    let mut conn = server.conns.lock().unwrap()[0].try_clone().unwrap();
    let sending = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, n) = (sending.clone(), sent.clone());
    // A line every 10 ms: the connection is never idle for long.
    let sender = std::thread::spawn(move || {
        for i in 0..3000 {
            if !s.load(Ordering::Acquire) {
                return;
            }
            conn.write_all(format!("t{i}\n").as_bytes()).unwrap();
            n.fetch_add(1, Ordering::AcqRel);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    // Lines arrive batch by batch while the sender goes on, not held back until it
    // pauses or a large number has piled up.
    run_until_lines(&mut ssc, &seen, 10);
    let sent_then = sent.load(Ordering::Acquire);
    sending.store(false, Ordering::Release);
    sender.join().unwrap();
    assert!(
        sent_then < 500,
        "10 lines arrived only after {sent_then} were sent"
    );
    assert_eq!(
        all_lines(&seen)[..10],
        (0..10).map(|i| format!("t{i}")).collect::<Vec<_>>()[..]
    );
}

#[test]
fn a_full_buffer_makes_the_server_wait_and_loses_nothing() {
    let server = Server::start();
    let ctx = common::ctx();
    let seen: Seen = Arc::default();
    let mut ssc = stream(&ctx, &server.addr, &seen, false);
    ssc.run(Until::Batches(1)).unwrap();
    server.wait_for_connections(1);
    let mut conn = server.conns.lock().unwrap()[0].try_clone().unwrap();
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = written.clone();
    const LINE: usize = 1 << 20;
    const COUNT: usize = 200; // 200 MiB in all
    let sender = std::thread::spawn(move || {
        for i in 0..COUNT {
            let mut line = vec![b'a' + (i % 26) as u8; LINE - 1];
            line.push(b'\n');
            conn.write_all(&line).unwrap();
            w.fetch_add(LINE, Ordering::AcqRel);
        }
    });
    // No batch runs: the receiver fills its buffer and stops reading.
    std::thread::sleep(Duration::from_secs(2));
    let before = written.load(Ordering::Acquire);
    assert!(
        before < flintlock::streaming::SOCKET_BUFFER_BYTES + (32 << 20),
        "the server wrote {} MiB while nothing read",
        before >> 20
    );
    // Batches drain it; every line arrives whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < COUNT {
        assert!(Instant::now() < deadline, "{got} of {COUNT} lines");
        ssc.run(Until::Batches(1)).unwrap();
        for (_, lines) in seen.lock().unwrap().drain(..) {
            for l in lines {
                assert_eq!(l.len(), LINE - 1);
                assert!(
                    l.bytes().all(|b| b == b'a' + (got % 26) as u8),
                    "line {got}"
                );
                got += 1;
            }
        }
    }
    sender.join().unwrap();
}
