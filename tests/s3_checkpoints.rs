//! Checkpoints on an S3-compatible store (SeaweedFS on loopback, started by `.ci/run`), by
//! the default context: `checkpoint_dir("s3://bucket/prefix")`, the state machine to
//! Checkpointed with one computation, parts published at the attempt's keys and the
//! manifest by a conditional PUT, reading back, reopening with `open_checkpoint("s3://...")`,
//! the checkpointer series, damaged parts and wrong types as clear errors; with the
//! `cluster` feature too, one checkpoint written by the 3 processes of a cluster.
//!
//! They need the `s3` feature and the server: a plain `cargo test` shows one ignored test
//! saying so, and `.ci/run` runs them with `--all-features -- --include-ignored` (see the README).

#[cfg(not(feature = "s3"))]
#[test]
#[ignore = "needs the `s3` feature and an S3 server: .ci/run runs it (see the README)"]
fn needs_the_s3_feature_and_a_server() {}

#[cfg(all(feature = "s3", feature = "cluster"))]
use crate::common;

#[cfg(feature = "s3")]
mod on_s3 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use flintlock::checkpoint::{S3Options, S3Store};
    use flintlock::{CheckpointState, Context, Error};

    /// A fresh `s3://bucket/prefix` for one test, and a store on it to look inside.
    fn location() -> (String, S3Store) {
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
            panic!("AWS_ENDPOINT_URL is not set: this test needs an S3 server (.ci/run starts one)")
        });
        let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
        let prefix = format!(
            "ckpt-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let url = format!("s3://{bucket}/{prefix}");
        let store = S3Store::open(&url, &S3Options::from_env()).unwrap();
        (url, store)
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_checkpoint_on_s3_is_computed_once_published_whole_and_reads_back() {
        let (url, store) = location();
        let log_dir = tempfile::tempdir().unwrap();
        let event_log = log_dir.path().join("events.jsonl");
        let ctx = Context::builder()
            .app_id("s3-app")
            .checkpoint_dir(&url)
            .event_log(&event_log)
            .build()
            .unwrap();
        let events = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let e = events.clone();
        ctx.add_listener(move |ev: &flintlock::Event| e.lock().unwrap().push(format!("{ev:?}")));
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let rdd = ctx.range(0..10_000, 4).map(move |x| {
            c.fetch_add(1, Ordering::Relaxed);
            (x, format!("v{x}"))
        });
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
        assert_eq!(rdd.count().unwrap(), 10_000);
        assert_eq!(rdd.checkpoint_state(), CheckpointState::Checkpointed);
        assert_eq!(calls.load(Ordering::Relaxed), 10_000, "computed once");
        let path = rdd.checkpoint_path().unwrap();
        let text = path.to_string_lossy().into_owned();
        assert!(text.starts_with(&format!("{url}/s3-app/rdd-")), "{text}");
        // Exactly the parts and the manifest, no temp keys.
        let folder = text.strip_prefix(&format!("{url}/")).unwrap().to_string();
        let keys = store.list(&folder).unwrap();
        let names: Vec<&str> = keys.iter().map(|k| k.rsplit('/').next().unwrap()).collect();
        assert_eq!(
            names,
            vec![
                "_manifest.json",
                "part-00000",
                "part-00001",
                "part-00002",
                "part-00003"
            ],
            "{keys:?}"
        );
        // Reading uses the checkpoint, not the lineage.
        let before = calls.load(Ordering::Relaxed);
        let got = rdd.collect().unwrap();
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[1234], (1234, "v1234".to_string()));
        assert_eq!(calls.load(Ordering::Relaxed), before);
        // Another context reopens it by its s3:// path.
        let other = Context::new();
        let reopened = other.open_checkpoint::<(u64, String)>(&path).unwrap();
        assert_eq!(reopened.collect().unwrap(), got);
        // With the wrong type: a clear error.
        match other.open_checkpoint::<(u64, u64)>(&path) {
            Err(Error::TypeMismatch { .. }) => {}
            other => panic!("expected TypeMismatch, got {:?}", other.map(|_| ())),
        }
        // The listener saw the checkpoint's events, and never a credential.
        let events = events.lock().unwrap();
        assert!(
            events.iter().any(|e| e.contains("CheckpointCommitted")),
            "{events:?}"
        );
        // Nor the event log, nor its report.
        drop((rdd, reopened, other, ctx));
        let logged = std::fs::read_to_string(&event_log).unwrap();
        assert!(logged.contains("CheckpointCommitted"), "{logged}");
        let report = log_dir.path().join("report.html");
        flintlock::report::write(&event_log, &report).unwrap();
        let html = std::fs::read_to_string(&report).unwrap();
        for secret in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Ok(v) = std::env::var(secret) {
                assert!(
                    events.iter().all(|e| !e.contains(&v)),
                    "{secret} in an event"
                );
                assert!(!logged.contains(&v), "{secret} in the event log");
                assert!(!html.contains(&v), "{secret} in the report");
            }
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_damaged_part_on_s3_is_an_error_naming_it() {
        let (url, store) = location();
        let ctx = Context::builder().checkpoint_dir(&url).build().unwrap();
        let rdd = ctx.range(0..1000, 2).map(|x| x * 3);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        let path = rdd.checkpoint_path().unwrap();
        let folder = path
            .to_string_lossy()
            .strip_prefix(&format!("{url}/"))
            .unwrap()
            .to_string();
        let part = format!("{folder}/part-00001");
        let mut bytes = store.get(&part).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        store.put(&part, bytes).unwrap();
        let err = Context::new()
            .open_checkpoint::<u64>(&path)
            .and_then(|r| r.collect())
            .unwrap_err();
        assert!(err.to_string().contains("part-00001"), "{err}");
    }

    /// Cluster mode on the object store: the 3 processes of a cluster (threads here, each
    /// its own context and timely instance) write one checkpoint into the shared prefix:
    /// each the parts it owns, process 0 the manifest; a restarted cluster resumes from it
    /// on every process.
    #[cfg(feature = "cluster")]
    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn three_processes_write_one_checkpoint_on_s3_and_resume_from_it() {
        use super::common::{free_addresses, run_threads_with};
        let (url, store) = location();
        let on_s3 = |_, b: flintlock::ContextBuilder| b.app_id("cluster").checkpoint_dir(&url);
        let written = run_threads_with(&free_addresses(3), on_s3, |ctx| {
            let mut cp = ctx.checkpointer::<(u64, u64)>("pairs").every(1).keep(1);
            let rdd = ctx.range(0..30_000, 9).map(|x| (x % 1_000, x * 7));
            cp.update(1, &rdd).unwrap();
            let sum = rdd.values().reduce(|a, b| a + b).unwrap().unwrap();
            (sum, rdd.checkpoint_state(), rdd.checkpoint_path())
        });
        let expected: u64 = (0..30_000u64).map(|x| x * 7).sum();
        for (p, (sum, state, path)) in written.iter().enumerate() {
            assert_eq!(*sum, expected, "process {p}");
            assert_eq!(*state, CheckpointState::Checkpointed, "process {p}");
            assert_eq!(path, &written[0].2, "process {p}");
        }
        let path = written[0].2.clone().unwrap().to_string_lossy().into_owned();
        let folder = path.strip_prefix(&format!("{url}/")).unwrap().to_string();
        let keys = store.list(&folder).unwrap();
        let mut names: Vec<&str> = keys.iter().map(|k| k.rsplit('/').next().unwrap()).collect();
        names.sort_unstable();
        let mut want = vec!["_manifest.json".to_string()];
        want.extend((0..9).map(|p| format!("part-{p:05}")));
        assert_eq!(names, want);
        let resumed = run_threads_with(&free_addresses(3), on_s3, |ctx| {
            let cp = ctx.checkpointer::<(u64, u64)>("pairs");
            let (step, rdd) = cp.latest().unwrap().expect("step 1 is committed");
            (
                step,
                rdd.values().reduce(|a, b| a + b).unwrap().unwrap(),
                rdd.count().unwrap(),
            )
        });
        for (p, outcome) in resumed.into_iter().enumerate() {
            assert_eq!(outcome, (1, expected, 30_000), "process {p}");
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn the_checkpointer_series_resumes_from_s3() {
        let (url, _) = location();
        for run in 0..2 {
            let ctx = Context::builder()
                .app_id("series")
                .checkpoint_dir(&url)
                .build()
                .unwrap();
            let mut series = ctx.checkpointer::<u64>("ranks").every(2).keep(2);
            let (start, mut rdd) = match series.latest().unwrap() {
                Some((step, rdd)) => (step + 1, rdd),
                None => (0, ctx.range(0..100, 2)),
            };
            // Element 0 is 0 plus one per step before `start`.
            assert_eq!(rdd.collect().unwrap()[0], start, "run {run}");
            if run == 1 {
                assert!(start > 0, "the second run resumes from a checkpoint");
            }
            for step in start..start + 7 {
                rdd = rdd.map(|x| x + 1);
                series.update(step, &rdd).unwrap();
            }
            assert_eq!(rdd.collect().unwrap()[0], start + 7);
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_stream_checkpointed_on_s3_is_refused_until_streams_support_it() {
        let (url, _) = location();
        let ctx = Context::new();
        let mut ssc =
            flintlock::streaming::StreamingContext::new(&ctx, std::time::Duration::from_secs(1));
        match ssc.checkpoint(format!("{url}/stream")) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("locks"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_file_sink_on_s3_is_refused_as_its_exactly_once_rests_on_one_writer() {
        use flintlock::streaming::{FileSink, Sink};
        let (url, _) = location();
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
        let storage = flintlock::checkpoint::S3Storage::open(bucket, &S3Options::from_env());
        let sink = FileSink::new(format!("{url}/out")).with_storage(Arc::new(storage.unwrap()));
        match Sink::<String>::last_committed(&sink) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("locks"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_second_owner_of_an_app_folder_on_s3_is_locked_out_until_the_first_is_dropped() {
        let (url, store) = location();
        let open = || {
            Context::builder()
                .app_id("owned")
                .checkpoint_dir(&url)
                .build()
        };
        let first = open().unwrap();
        match open() {
            Err(Error::Locked { path }) => {
                assert!(path.to_string_lossy().ends_with("owned/.lock"), "{path:?}")
            }
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        drop(first);
        let second = open().unwrap();
        let rdd = second.range(0..10, 2);
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 10);
        // The checkpoint holds the folder (and its lock) while an RDD reads it.
        drop(rdd);
        drop(second);
        // Released: no lock object is left behind.
        assert!(store
            .list("owned")
            .unwrap()
            .iter()
            .all(|k| !k.ends_with("/.lock")));
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_generated_app_folder_on_s3_goes_with_its_context_despite_a_dead_takers_marker() {
        let (url, store) = location();
        let ctx = Context::builder()
            .checkpoint_dir(&url)
            .clean_checkpoints(true)
            .build()
            .unwrap();
        let app = ctx.app_id().to_string();
        let rdd = ctx.range(0..10, 2);
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 10);
        drop(rdd);
        flintlock::checkpoint::wait_for_removals();
        // A taker killed at work on an earlier instance of the lock left its marker: it
        // does not keep the folder (a marker may be a live taker's, so it stays).
        let marker = format!("{app}/.lock.takeover-dead-1.token-9");
        store.put(&marker, b"{}".to_vec()).unwrap();
        drop(ctx);
        assert_eq!(store.list(&app).unwrap(), vec![marker]);
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_lock_left_by_a_killed_process_expires_and_a_live_one_does_not_whatever_the_clocks() {
        let (url, store) = location();
        let body = |age_ms: u64, ttl: &str| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            format!(
                r#"{{"owner":"someone-else","pid":1,"refreshed_unix_ms":{}{ttl}}}"#,
                now - age_ms
            )
            .into_bytes()
        };
        let open = |app: &str| Context::builder().app_id(app).checkpoint_dir(&url).build();
        // Refreshed a second ago: a live holder.
        store.put("live/.lock", body(1_000, "")).unwrap();
        assert!(matches!(open("live"), Err(Error::Locked { .. })));
        assert_eq!(
            store.list("live").unwrap(),
            vec!["live/.lock".to_string()],
            "polling a live lock leaves nothing behind"
        );
        // Its time stamp says it was not refreshed for longer than the TTL, but the store
        // says the lock object was written just now: the holder's clock is behind this
        // machine's (or this one's ahead), and the holder is alive.
        let ttl = flintlock::checkpoint::S3_LOCK_TTL.as_millis() as u64;
        store.put("skewed/.lock", body(ttl + 5_000, "")).unwrap();
        assert!(matches!(open("skewed"), Err(Error::Locked { .. })));
        assert!(
            store
                .list("skewed")
                .unwrap()
                .iter()
                .all(|k| !k.contains("takeover")),
            "a taker that removed nothing leaves no marker"
        );
        // Leases of one second: not refreshed for longer than that by the store's clock,
        // whatever their time stamps say (a holder whose clock ran an hour ahead).
        store
            .put("dead/.lock", body(5_000, r#","ttl_ms":1000"#))
            .unwrap();
        let ahead = format!(
            r#"{{"owner":"ahead","pid":1,"refreshed_unix_ms":{},"ttl_ms":1000}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + 3_600_000
        );
        store.put("ahead/.lock", ahead.into_bytes()).unwrap();
        // Seen unrefreshed from here on (its stamp looks fresh by this machine's clock).
        assert!(matches!(open("ahead"), Err(Error::Locked { .. })));
        // Another taker at work on an expired lock (its marker was just written, though
        // its time stamp is old) is not overtaken; a marker whose taker is over (not
        // written for its time to live by the store's clock) is removed on the way.
        let stamp_of = |body: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(body).unwrap()["refreshed_unix_ms"]
                .as_u64()
                .unwrap()
        };
        let racing = body(5_000, r#","ttl_ms":1000"#);
        store.put("racing/.lock", racing.clone()).unwrap();
        let marker = format!("racing/.lock.takeover-someone-else-{}", stamp_of(&racing));
        store
            .put(
                &format!("{marker}.dead-taker"),
                body(5_000, r#","ttl_ms":1000"#),
            )
            .unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        store
            .put(&format!("{marker}.taker-at-work"), body(120_000, ""))
            .unwrap();
        assert!(matches!(open("racing"), Err(Error::Locked { .. })));
        let left = store.list("racing").unwrap();
        assert!(
            left.iter().any(|k| k.ends_with(".taker-at-work"))
                && !left.iter().any(|k| k.ends_with(".dead-taker")),
            "{left:?}"
        );
        drop(open("ahead").expect("a lock not written for its TTL by the store's clock is over"));
        let ctx = open("dead").unwrap();
        let rdd = ctx.range(0..5, 1);
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 5);
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_large_partition_goes_by_multipart_upload_and_reads_back_in_pieces() {
        let (url, store) = location();
        let ctx = Context::builder().checkpoint_dir(&url).build().unwrap();
        // Pseudo-random hex (barely compressible): parts of tens of MiB.
        let row = |i: u64| {
            let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect::<String>()
        };
        let rdd = ctx.range(0..600_000, 2).map(move |i| (i, row(i)));
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 600_000);
        let path = rdd.checkpoint_path().unwrap();
        let folder = path
            .to_string_lossy()
            .strip_prefix(&format!("{url}/"))
            .unwrap()
            .to_string();
        let part = store.len(&format!("{folder}/part-00000")).unwrap();
        assert!(
            part > 16 << 20,
            "a part of {part} bytes: several upload pieces"
        );
        let back = Context::new()
            .open_checkpoint::<(u64, String)>(&path)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(back.len(), 600_000);
        for i in [0u64, 1, 299_999, 300_000, 599_999] {
            assert_eq!(back[i as usize], (i, row(i)));
        }
    }

    /// Fails the k-th storage operation (once, or from the k-th on) for every k of a 3-part
    /// checkpoint on S3: each failed action is an I/O error naming the fault, leaves the
    /// RDD Marked and no key of the attempt behind; the next action succeeds, exactly.
    fn sweep(persistent: bool) -> usize {
        let (url, store) = location();
        let bucket = url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let s3 = flintlock::checkpoint::S3Storage::open(&bucket, &S3Options::from_env()).unwrap();
        let storage = flintlock::checkpoint::FaultyStorage::new(Arc::new(s3));
        let ctx = Context::builder()
            .threads(2)
            .app_id("faults")
            .checkpoint_dir(&url)
            .checkpoint_storage(storage.clone())
            .build()
            .unwrap();
        let rdd = ctx
            .range(0..500, 3)
            .map(|x| (x % 7, x))
            .reduce_by_key(|a, b| a + b);
        let mut expected = rdd.collect().unwrap();
        expected.sort();
        let mut failures = 0;
        for k in 1.. {
            if persistent {
                storage.fail_from(k, std::io::ErrorKind::Other);
            } else {
                storage.fail_any(k, std::io::ErrorKind::Other);
            }
            rdd.checkpoint().unwrap();
            let before = storage.faults_injected();
            let result = rdd.collect();
            storage.clear();
            match result {
                Ok(mut got) if storage.faults_injected() == before => {
                    got.sort();
                    assert_eq!(got, expected);
                    assert!(rdd.is_checkpointed());
                    break;
                }
                Ok(_) => panic!("#{k}: a fault was injected but the action succeeded"),
                Err(err) => {
                    failures += 1;
                    let msg = err.to_string();
                    assert!(matches!(err, Error::Io { .. }), "#{k}: {msg}");
                    assert!(msg.contains("injected fault"), "#{k}: {msg}");
                    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked, "#{k}");
                    let left: Vec<String> = store
                        .list("faults")
                        .unwrap()
                        .into_iter()
                        .filter(|k| !k.ends_with("/.lock") && !k.ends_with("/.flintlock-app"))
                        .collect();
                    assert!(left.is_empty(), "#{k}: keys left: {left:?}");
                }
            }
        }
        failures
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_fault_at_any_single_request_leaves_nothing_and_the_next_action_succeeds() {
        assert!(sweep(false) >= 5);
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_store_failing_from_any_request_on_leaves_nothing_and_recovers() {
        assert!(sweep(true) >= 5);
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn the_cli_lists_verifies_and_shows_checkpoints_on_s3_without_showing_secrets() {
        let (url, _) = location();
        let ctx = Context::builder()
            .app_id("cli")
            .checkpoint_dir(&url)
            .build()
            .unwrap();
        let rdd = ctx.range(0..100, 2).map(|x| x * 2);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        let path = rdd.checkpoint_path().unwrap();
        drop(rdd);
        drop(ctx);
        let run = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_flintlock"))
                .args(args)
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{args:?}: {text}");
            if let Ok(secret) = std::env::var("AWS_SECRET_ACCESS_KEY") {
                assert!(!text.contains(&secret), "{args:?} shows the secret");
            }
            text
        };
        let folder = path.to_string_lossy().into_owned();
        let name = folder.rsplit('/').next().unwrap().to_string();
        let listed = run(&["list", &url]);
        assert!(listed.contains("cli") && listed.contains(&name), "{listed}");
        let verified = run(&["verify", &folder]);
        assert!(verified.contains("100"), "{verified}");
        let shown = run(&["show", &folder]);
        assert!(shown.contains("part-00001"), "{shown}");
    }

    /// A TCP proxy on loopback in front of the server: stopping it is the endpoint going
    /// away (refused connections, open ones cut), starting it again on the same port is the
    /// endpoint coming back.
    struct Proxy {
        port: u16,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Proxy {
        fn start(port: u16, upstream: std::net::SocketAddr) -> Proxy {
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let port = listener.local_addr().unwrap().port();
            listener.set_nonblocking(true).unwrap();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let s = stop.clone();
            let thread = std::thread::spawn(move || {
                let mut open: Vec<std::net::TcpStream> = Vec::new();
                while !s.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let Ok(server) = std::net::TcpStream::connect(upstream) else {
                                continue;
                            };
                            for (mut from, mut to) in [
                                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                                (server.try_clone().unwrap(), client.try_clone().unwrap()),
                            ] {
                                std::thread::spawn(move || {
                                    let _ = std::io::copy(&mut from, &mut to);
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                });
                            }
                            open.push(client);
                            open.push(server);
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
                    }
                }
                for c in open {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
            });
            Proxy {
                port,
                stop,
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> u16 {
            self.stop.store(true, Ordering::Release);
            self.thread.take().unwrap().join().unwrap();
            self.port
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn an_endpoint_that_goes_away_fails_the_action_naming_it_and_the_next_action_succeeds() {
        let (url, _) = location();
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
        let upstream: std::net::SocketAddr = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let proxy = Proxy::start(0, upstream);
        let via = format!("http://127.0.0.1:{}", proxy.port);
        let bucket = url
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let options = S3Options::from_env()
            .endpoint(&via)
            .allow_http(true)
            .retry_timeout(std::time::Duration::from_secs(2));
        let storage = flintlock::checkpoint::S3Storage::open(&bucket, &options).unwrap();
        let ctx = Context::builder()
            .app_id("outage")
            .checkpoint_dir(&url)
            .checkpoint_storage(storage)
            .build()
            .unwrap();
        let first = ctx.range(0..100, 2).map(|x| x + 1);
        first.checkpoint().unwrap();
        assert_eq!(first.count().unwrap(), 100);
        // The endpoint goes away.
        let port = proxy.stop();
        let second = ctx.range(0..100, 2).map(|x| x * 2);
        second.checkpoint().unwrap();
        let err = second.count().unwrap_err();
        assert!(err.to_string().contains(&via), "{err}");
        assert_eq!(second.checkpoint_state(), CheckpointState::Marked);
        // It comes back: the next action succeeds, and the first checkpoint still reads.
        let proxy = Proxy::start(port, upstream);
        assert_eq!(second.count().unwrap(), 100);
        assert!(second.is_checkpointed());
        assert_eq!(first.collect().unwrap().len(), 100);
        drop((first, second, ctx));
        proxy.stop();
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_lock_of_a_dead_process_of_this_machine_is_taken_over_at_once_and_a_live_ones_is_not() {
        let (url, store) = location();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let machine = format!(
            "{} {}",
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap()
                .trim(),
            std::fs::read_link("/proc/self/ns/pid").unwrap().display()
        );
        let started = |pid: u32| -> u64 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 1..];
            after.split_whitespace().nth(19).unwrap().parse().unwrap()
        };
        let body = |owner: &str, pid: u32, started: u64| {
            serde_json::json!({
                "owner": owner, "pid": pid, "refreshed_unix_ms": now,
                "machine": machine, "started": started,
            })
            .to_string()
            .into_bytes()
        };
        let open = |app: &str| Context::builder().app_id(app).checkpoint_dir(&url).build();
        // A child that ran and was reaped: freshly refreshed, but its process is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        store.put("gone/.lock", body("gone", pid, 1)).unwrap();
        open("gone").expect("a dead holder's lock is over at once");
        // This very process, freshly refreshed: alive.
        let me = std::process::id();
        store
            .put("alive/.lock", body("alive", me, started(me)))
            .unwrap();
        assert!(matches!(open("alive"), Err(Error::Locked { .. })));
        // A taker killed between its takeover marker and removing the lock: its marker goes
        // stale like a lock, and the folder is not wedged.
        store.put("wedged/.lock", body("old", pid, 1)).unwrap();
        store
            .put(
                &format!("wedged/.lock.takeover-old-{now}.killed-taker"),
                body("taker", pid, 1),
            )
            .unwrap();
        open("wedged").expect("a dead taker's marker does not wedge the folder");
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_context_with_a_wrong_secret_fails_naming_endpoint_and_bucket_and_never_the_secret() {
        let (url, _store) = location();
        let secret = "wr0ng-S3CRET-that-must-not-leak-7";
        let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap();
        let options = S3Options::from_env().credentials(&key_id, secret);
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
        let storage = flintlock::checkpoint::S3Storage::open(bucket, &options).unwrap();
        let mut shown = vec![format!("{options:?}"), format!("{storage:?}")];
        let err = Context::builder()
            .app_id("denied")
            .checkpoint_dir(&url)
            .checkpoint_storage(storage)
            .build()
            .expect_err("a wrong secret cannot take the app folder's lock");
        let msg = err.to_string();
        shown.extend([msg.clone(), format!("{err:?}")]);
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
        assert!(msg.contains(&endpoint), "no endpoint: {msg}");
        assert!(msg.contains(&format!("s3://{bucket}")), "no bucket: {msg}");
        assert!(
            msg.contains("403")
                || msg.to_lowercase().contains("denied")
                || msg.to_lowercase().contains("signature"),
            "not an authorization error: {msg}"
        );
        for text in &shown {
            assert!(!text.contains(secret), "the secret shows in: {text}");
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn cleanup_removes_an_unmanifested_attempt_only_after_the_grace_period() {
        let (url, store) = location();
        let bucket = url.trim_start_matches("s3://").split('/').next().unwrap();
        let grace = std::time::Duration::from_secs(3);
        let open = || {
            let options = S3Options::from_env().cleanup_grace(grace);
            Context::builder()
                .app_id("app")
                .checkpoint_dir(&url)
                .checkpoint_storage(
                    flintlock::checkpoint::S3Storage::open(bucket, &options).unwrap(),
                )
                .build()
                .unwrap()
        };
        // A committed checkpoint, and an attempt a stalled (or killed) writer left.
        let ctx = open();
        let rdd = ctx.range(0..100, 2);
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        let committed = rdd.checkpoint_path().unwrap();
        drop((rdd, ctx));
        let partial = "app/rdd-9-00000000deadbeef/part-00000";
        store.put(partial, b"half a part".to_vec()).unwrap();
        // Written just now: within the grace period, a start-up leaves it.
        drop(open());
        assert!(store.len(partial).is_ok(), "a fresh attempt was removed");
        // `flintlock gc` (default grace, 15 minutes) leaves it too, and does not report it.
        for dry_run in [true, false] {
            let report =
                flintlock::checkpoint::admin::gc(std::path::Path::new(&url), None, dry_run)
                    .unwrap();
            assert!(
                !report
                    .removed
                    .iter()
                    .any(|r| r.path.to_string_lossy().contains("rdd-9-")),
                "gc (dry run {dry_run}) takes a fresh attempt: {report:?}"
            );
        }
        assert!(store.len(partial).is_ok(), "gc removed a fresh attempt");
        std::thread::sleep(grace + std::time::Duration::from_millis(500));
        drop(open());
        assert!(store.len(partial).is_err(), "an abandoned attempt was kept");
        let back = Context::new()
            .open_checkpoint::<u64>(&committed)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(
            back,
            (0..100).collect::<Vec<_>>(),
            "the committed one is whole"
        );
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn of_many_processes_seeing_a_stale_lock_exactly_one_takes_it_over() {
        let (url, store) = location();
        // Leases of one second, expired by the holder's clock and (after the sleep) by the
        // store's.
        for round in 0..5 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let body = format!(
                r#"{{"owner":"dead-{round}","pid":1,"refreshed_unix_ms":{},"ttl_ms":1000}}"#,
                now - 10_000
            );
            store
                .put(&format!("stale-{round}/.lock"), body.into_bytes())
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
        for round in 0..5 {
            let app = format!("stale-{round}");
            let barrier = Arc::new(std::sync::Barrier::new(6));
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let (url, app, barrier) = (url.clone(), app.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Context::builder().app_id(&app).checkpoint_dir(&url).build()
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let owners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(owners, 1, "round {round}: {owners} contexts own the folder");
            for r in &results {
                if let Err(e) = r {
                    assert!(matches!(e, Error::Locked { .. }), "round {round}: {e}");
                }
            }
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn keys_the_client_would_encode_and_paths_without_a_bucket_are_refused() {
        let (url, _) = location();
        let tilde = format!("{url}/a~b");
        let err = Context::builder()
            .checkpoint_dir(&tilde)
            .build()
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("encodes"), "{err}");
        match S3Store::open(&tilde, &S3Options::from_env()) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("encodes"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        let err = Context::new()
            .open_checkpoint::<u64>("s3:///x")
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("names no bucket"), "{err}");
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn two_spellings_of_one_prefix_are_one_folder() {
        let (url, _) = location();
        let doubled = url.replacen("/ckpt-", "//ckpt-", 1) + "/";
        let first = Context::builder()
            .app_id("spelled")
            .checkpoint_dir(&doubled)
            .build()
            .unwrap();
        assert_eq!(
            first.checkpoint_dir().unwrap().to_string_lossy(),
            url,
            "the root is folded"
        );
        match Context::builder()
            .app_id("spelled")
            .checkpoint_dir(&url)
            .build()
        {
            Err(Error::Locked { .. }) => {}
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
    }
}
