//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flintlock::{Context, Event};

pub mod backend;
pub mod hooked;
pub mod report;
pub mod simfs;
pub mod stream;

/// A context with two threads and a checkpoint folder inside `dir`.
pub fn ctx_with_dir(dir: &Path) -> Context {
    Context::builder()
        .app_name("test")
        .threads(2)
        .checkpoint_dir(dir)
        .build()
        .expect("context")
}

/// A context with two threads and no checkpoint folder.
pub fn ctx() -> Context {
    Context::builder().threads(2).build().expect("context")
}

/// A shared call counter for closures.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
    /// `f`, counting its calls on this counter (for `map` and friends).
    pub fn counting<T, U>(
        &self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> impl Fn(T) -> U + Send + Sync + 'static {
        let c = self.clone();
        move |x| {
            c.hit();
            f(x)
        }
    }
}

/// Asserts that `err`'s message names `path` (errors say which file or folder failed).
#[track_caller]
pub fn assert_names(err: &impl std::fmt::Display, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(path.to_str().expect("a UTF-8 path")),
        "the error does not name {}: {msg}",
        path.display()
    );
}

/// Records every event of a context.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub fn attach(ctx: &Context) -> Recorder {
        let r = Recorder::default();
        let events = r.0.clone();
        ctx.add_listener(move |e: &Event| events.lock().unwrap().push(e.clone()));
        r
    }
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    /// Takes the recorded events and keeps what `pick` finds in them.
    pub fn take_matching<T>(&self, pick: impl Fn(Event) -> Option<T>) -> Vec<T> {
        self.take().into_iter().filter_map(pick).collect()
    }
    /// Takes the recorded events and keeps the kinds of the stages started, in order.
    pub fn take_stage_kinds(&self) -> Vec<flintlock::StageKind> {
        self.take_matching(|e| match e {
            Event::StageStarted { kind, .. } => Some(kind),
            _ => None,
        })
    }
    pub fn stages_started(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::StageStarted { .. }))
            .count()
    }
}

/// Every file below `dir`, relative, sorted (on either backend: see `backend`).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    backend::files_below(dir)
}

/// Temp files (`*.tmp`) anywhere below `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    files_below(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Sorted copy.
pub fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// The name of a test in the suite's executable, from its path within the caller's file
/// (`child_writes`, `cluster::child`): each file of `tests/` is a module of a suite, named
/// after the file, so the module is the calling file's name.
#[track_caller]
pub fn test_name(test: &str) -> String {
    let caller = std::panic::Location::caller().file();
    let module = Path::new(caller)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a test file's name");
    format!("{module}::{test}")
}

/// Runs `f` while another thread starts child processes (`true`) one after another, and
/// returns what `f` returns once that thread has stopped. Each child holds a copy of every
/// open descriptor of this process from its `fork` to its `exec`: the lock files' too.
#[cfg(unix)]
pub fn while_starting_processes<R>(f: impl FnOnce() -> R) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let starter = s.spawn(|| {
            let mut started = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::process::Command::new("true").status().unwrap();
                started += 1;
            }
            started
        });
        /// Stops the starter when dropped, also when `f` panics (the scope would otherwise
        /// wait for it forever).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let r = {
            let _stop = Stop(&stop);
            f()
        };
        assert!(starter.join().unwrap() > 0, "no child process started");
        r
    })
}

/// A command that runs one test of the current test binary as a child process. Child tests
/// are `#[ignore]`d (they do nothing on their own) and so are run with `--include-ignored`.
/// `test` is the test's path within the caller's file (see [`test_name`]).
#[track_caller]
pub fn child_test(test: &str) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        &test_name(test),
        "--include-ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    c
}

/// The first of `n` consecutive free loopback ports, below the kernel's ephemeral range:
/// a test that checks ports are free and binds them later (a launcher's processes, a server
/// started after its client) cannot lose them meanwhile to the tests running beside it in
/// the suite's process, whose `bind(":0")` and outgoing connections draw from that range.
pub fn free_ports_outside_the_ephemeral_range(n: u16) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let start = 20_000.min(low.saturating_sub(2_000)).max(1_024);
    let span = low.saturating_sub(start).saturating_sub(n).max(1);
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    // A machine whose ports below the ephemeral range are all taken (or that cannot bind
    // 127.0.0.1 at all) fails the test saying so, instead of hanging CI.
    const ATTEMPTS: usize = 10_000;
    for _ in 0..ATTEMPTS {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = start + ((x >> 33) % u64::from(span)) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!(
        "no {n} consecutive free ports on 127.0.0.1 between {start} and {low} after {ATTEMPTS} \
         tries"
    );
}

/// A child process that is killed when the handle drops: a parent test that fails early
/// leaves no child behind.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one test of the current test binary as a child process, with `env` set (the child
/// test checks it and does nothing when it is absent), stdout piped.
#[track_caller]
pub fn spawn_test(test: &str, env: (&str, &Path)) -> ChildGuard {
    ChildGuard(
        child_test(test)
            .env(env.0, env.1)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Reads the child's stdout until a line containing `marker`; true when it was seen.
pub fn wait_for_line(child: &mut std::process::Child, marker: &str) -> bool {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout is piped");
    std::io::BufReader::new(out)
        .lines()
        .any(|l| l.map(|l| l.contains(marker)).unwrap_or(false))
}

/// `n` loopback addresses (`127.0.0.1:port`) with ports that were free a moment ago: for
/// the processes of a test cluster.
pub fn free_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

/// Runs `program` as process `i` of a cluster of `addresses.len()` processes, each on a
/// thread of its own with its own two-thread context (connected over loopback TCP exactly
/// as processes are), `configure` adding to each context's builder; the results by
/// process.
#[cfg(feature = "cluster")]
pub fn run_threads_with<R: Send>(
    addresses: &[String],
    configure: impl Fn(usize, flintlock::ContextBuilder) -> flintlock::ContextBuilder + Sync,
    program: impl Fn(&Context) -> R + Sync,
) -> Vec<R> {
    spawn_processes(addresses, |i, config| {
        let builder = Context::builder().threads(2).cluster(config);
        program(&configure(i, builder).build().unwrap())
    })
}

/// Runs `each(i, process i's cluster config)` on a thread per process of a cluster of
/// `addresses.len()` processes; the results by process.
#[cfg(feature = "cluster")]
pub fn spawn_processes<R: Send>(
    addresses: &[String],
    each: impl Fn(usize, flintlock::ClusterConfig) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..addresses.len())
            .map(|i| {
                let each = &each;
                let config = flintlock::ClusterConfig::new(i, addresses.to_vec()).unwrap();
                s.spawn(move || each(i, config))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// [`run_threads_with`] with the default builder.
#[cfg(feature = "cluster")]
pub fn run_threads<R: Send>(
    addresses: &[String],
    program: impl Fn(&Context) -> R + Sync,
) -> Vec<R> {
    run_threads_with(addresses, |_, b| b, program)
}
