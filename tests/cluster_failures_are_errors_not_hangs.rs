//! When a process of a cluster (feature `cluster`) dies, leaves, hangs, never starts, or
//! runs other jobs than the rest, every other process gets an error that names it, and no
//! process hangs or computes with part of the data:
//! - one of 3 real processes killed with SIGKILL at a random instant, in 5 trials: the two
//!   others exit with an error naming it within seconds;
//! - a process whose program ends early: the others' next action fails naming it;
//! - processes that run different jobs, the same job over other partition counts, or
//!   another action on the same RDD: all fail instead of exchanging each other's data; a
//!   job started inside a task is refused before it can split the cluster;
//! - timely's command-line options are read as timely reads them, and bad ones are errors;
//! - a process that never starts: `build` fails after the connect timeout, naming it; a
//!   stray connection to a process's port (another program, a stale process) is refused
//!   without spoiling the start;
//! - a process that stops answering: the epoch timeout fails the others' action.

#[cfg(not(feature = "cluster"))]
#[test]
#[ignore = "needs the `cluster` feature: the README's cargo test --release --all-features runs it"]
fn needs_the_cluster_feature() {}

#[cfg(feature = "cluster")]
use crate::common;

#[cfg(feature = "cluster")]
mod cluster {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    use flintlock::{ClusterConfig, Context, Error};

    use super::common;
    use common::free_addresses;

    fn context(config: ClusterConfig) -> Context {
        Context::builder()
            .threads(1)
            .cluster(config)
            .build()
            .unwrap()
    }

    /// Runs `program(process index, context)` on a thread per process.
    fn run_threads<R: Send>(
        addresses: &[String],
        configure: impl Fn(ClusterConfig) -> ClusterConfig + Sync,
        program: impl Fn(usize, Context) -> R + Sync,
    ) -> Vec<R> {
        common::spawn_processes(addresses, |i, config| {
            program(i, context(configure(config)))
        })
    }

    fn cluster_error(e: &Error) -> (Option<usize>, String) {
        match e {
            Error::Cluster { process, message } => (*process, message.clone()),
            other => panic!("expected a cluster error, got {other:?}"),
        }
    }

    const CHILD_ENV: &str = "FLINTLOCK_TEST_CLUSTER_FAILURE_CHILD";

    /// Runs only as a child: process `i` of `$FLINTLOCK_TEST_CLUSTER_FAILURE_CHILD`
    /// (`<i> <address>...`) runs shuffling jobs until one fails, then prints the error.
    #[test]
    #[ignore = "a child process: a_killed_process_fails_the_others_naming_it starts it"]
    fn child_runs_jobs_until_one_fails() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return; // not the child
        };
        let mut words = spec.split(' ');
        let i: usize = words.next().unwrap().parse().unwrap();
        let addresses: Vec<String> = words.map(str::to_string).collect();
        let ctx = context(ClusterConfig::new(i, addresses).unwrap());
        println!("STARTED");
        for job in 0u64.. {
            let result = ctx
                .range(0..20_000, 6)
                .map(move |x| (x % 101, x ^ job))
                .reduce_by_key(|a, b| a.wrapping_add(b))
                .count();
            match result {
                Ok(n) => assert_eq!(n, 101),
                Err(e) => {
                    println!("FAILED {e}");
                    std::process::exit(3);
                }
            }
        }
    }

    #[test]
    fn a_killed_process_fails_the_others_naming_it() {
        let mut seed = 0x5eed_u64;
        for trial in 0..5 {
            let addresses = free_addresses(3);
            let mut children: Vec<_> = (0..3)
                .map(|i| {
                    let spec = format!("{i} {}", addresses.join(" "));
                    common::ChildGuard(
                        common::child_test("cluster::child_runs_jobs_until_one_fails")
                            .env(CHILD_ENV, spec)
                            .stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::null())
                            .spawn()
                            .unwrap(),
                    )
                })
                .collect();
            let mut outputs: Vec<_> = children
                .iter_mut()
                .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
                .collect();
            for (i, lines) in outputs.iter_mut().enumerate() {
                // After the test harness's own lines.
                let started = lines.map_while(Result::ok).any(|l| l.ends_with("STARTED"));
                assert!(started, "trial {trial}: process {i} started");
            }
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let victim = (seed >> 40) as usize % 3;
            std::thread::sleep(Duration::from_millis(20 + (seed >> 20) % 400));
            children[victim].kill().unwrap();
            children[victim].wait().unwrap();
            let start = Instant::now();
            for (i, lines) in outputs.iter_mut().enumerate() {
                if i == victim {
                    continue;
                }
                let status = children[i].wait().unwrap();
                let said: Vec<String> = lines.map_while(Result::ok).collect();
                assert_eq!(
                    status.code(),
                    Some(3),
                    "trial {trial}: process {i}: {said:?}"
                );
                let failed = said.iter().find(|l| l.contains("FAILED cluster")).unwrap();
                assert!(
                    failed.contains(&format!("process {victim}")),
                    "trial {trial}: process {i} names process {victim}: {failed}"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "trial {trial}: the survivors took {:?} to stop",
                start.elapsed()
            );
        }
    }

    #[test]
    fn a_process_whose_program_ends_early_fails_the_others_next_action() {
        let results = run_threads(
            &free_addresses(3),
            |c| c,
            |i, ctx| {
                let first = ctx.range(0..100, 6).count();
                if i == 1 {
                    drop(ctx);
                    return (first, None);
                }
                let second = ctx.range(0..100, 6).map(|x| x + 1).count();
                (first, Some(second))
            },
        );
        for (i, (first, second)) in results.into_iter().enumerate() {
            assert_eq!(first.unwrap(), 100, "process {i}");
            if i == 1 {
                continue;
            }
            let e = second.unwrap().unwrap_err();
            let (process, message) = cluster_error(&e);
            assert_eq!(process, Some(1), "process {i}: {message}");
            assert!(message.contains("left the cluster"), "{message}");
        }
    }

    #[test]
    fn processes_that_run_different_jobs_fail_instead_of_mixing_data() {
        let results = run_threads(
            &free_addresses(2),
            |c| c,
            |i, ctx| {
                let a = ctx.range(0..100, 4);
                let b = ctx.range(0..100, 4).map(|x| x * 2);
                let diverged = if i == 0 { a.count() } else { b.count() };
                let again = a.count();
                (diverged, again)
            },
        );
        for (i, (diverged, again)) in results.into_iter().enumerate() {
            let (_, message) = cluster_error(&diverged.unwrap_err());
            assert!(
                message.contains("took different paths"),
                "process {i}: {message}"
            );
            // The cluster cannot be trusted after that: it stays failed.
            let (_, message) = cluster_error(&again.unwrap_err());
            assert!(message.contains("failed earlier"), "process {i}: {message}");
        }
    }

    #[test]
    fn other_partition_counts_or_actions_fail_instead_of_mixing_data() {
        type Program = fn(usize, &Context) -> flintlock::Result<String>;
        let programs: [Program; 6] = [
            // Partitioners of the same partition count that place keys otherwise.
            |i, ctx| {
                let p = if i == 0 {
                    flintlock::Partitioner::hash(4)
                } else {
                    flintlock::Partitioner::range(vec![2u64, 5, 7], true)
                };
                ctx.range(0..1000, 4)
                    .map(|x| (x % 10, 1u64))
                    .reduce_by_key_with(p, |a, b| a + b)
                    .collect()
                    .map(|v| format!("{v:?}"))
            },
            |i, ctx| {
                ctx.range(0..20, 4)
                    .map(|x| ((x * 7) % 20, x))
                    .sort_by_key(i == 0)
                    .keys()
                    .collect()
                    .map(|v| format!("{v:?}"))
            },
            // A partition count that follows the machine (its threads, its cores).
            |i, ctx| ctx.range(0..1000, 4 + i).count().map(|n| n.to_string()),
            |i, ctx| {
                ctx.range(0..1000, 4)
                    .map(|x| (x % 7, x))
                    .reduce_by_key_with(flintlock::Partitioner::hash(3 + i), |a, b| a + b)
                    .count()
                    .map(|n| n.to_string())
            },
            // Another action on the same RDD.
            |i, ctx| {
                let rdd = ctx.range(0..100, 4);
                if i == 0 {
                    rdd.count().map(|n| n.to_string())
                } else {
                    rdd.map(|x| x as f64).sum().map(|s| s.to_string())
                }
            },
            |i, ctx| {
                let rdd = ctx.range(0..100, 4);
                let m = if i == 0 { rdd.min() } else { rdd.max() };
                m.map(|m| format!("{m:?}"))
            },
        ];
        for (k, program) in programs.iter().enumerate() {
            let results = run_threads(&free_addresses(2), |c| c, |i, ctx| program(i, &ctx));
            for (i, r) in results.into_iter().enumerate() {
                let e = r.expect_err(&format!("program {k}, process {i}: an error"));
                assert!(matches!(e, Error::Cluster { .. }), "program {k}: {e:?}");
            }
        }
    }

    /// Refused on the processes whose tasks start it, whatever the partition count: one
    /// that runs no task of the stage (2 partitions on 3 processes) and one that runs two
    /// (4 partitions) must still agree about the jobs that follow.
    #[test]
    fn a_job_inside_a_task_is_refused_and_the_cluster_goes_on() {
        let results = run_threads(
            &free_addresses(3),
            |c| c,
            |_, ctx| {
                let zipped = ctx.range(0..100, 3).zip_with_index().count();
                let fewer = ctx.range(0..100, 2).zip_with_index().count();
                let more = ctx.range(0..100, 4).zip_with_index().count();
                let inner = ctx.clone();
                let nested = ctx
                    .range(0..10, 2)
                    .map(move |x| x + inner.range(0..5, 1).count().unwrap())
                    .count();
                (zipped, fewer, more, nested, ctx.range(0..10, 3).count())
            },
        );
        for (zipped, fewer, more, nested, after) in results {
            for e in [
                zipped.unwrap_err(),
                fewer.unwrap_err(),
                more.unwrap_err(),
                nested.unwrap_err(),
            ] {
                let text = e.to_string();
                assert!(text.contains("inside a task"), "{text}");
            }
            assert_eq!(after.unwrap(), 10);
        }
    }

    #[test]
    fn timely_options_are_read_as_timely_reads_them() {
        let args = |s: &str| -> Vec<String> {
            std::iter::once("prog")
                .chain(s.split(' '))
                .map(str::to_string)
                .collect()
        };
        let (c, rest) =
            ClusterConfig::from_args(args("--iterations 5 -n 3 -p2 --threads=2 -v")).unwrap();
        let c = c.unwrap();
        assert_eq!((c.processes(), c.process()), (3, 2));
        assert_eq!(rest, ["--iterations", "5", "-v"]);
        let (c, rest) = ClusterConfig::from_args(args("-n 1 x")).unwrap();
        assert!(c.is_none());
        assert_eq!(rest, ["x"]);
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "a:1\n\n b:2 \n").unwrap();
        let spec = format!("-n 2 -p 1 -h {}", hosts.display());
        let (c, _) = ClusterConfig::from_args(args(&spec)).unwrap();
        assert_eq!(c.unwrap().processes(), 2);
        // Arguments that only start like timely's are the program's; `--` ends the options.
        let (c, rest) =
            ClusterConfig::from_args(args("input.txt -name x -hello -pretty -- -n 2")).unwrap();
        assert!(c.is_none());
        assert_eq!(
            rest,
            [
                "input.txt",
                "-name",
                "x",
                "-hello",
                "-pretty",
                "--",
                "-n",
                "2"
            ]
        );
        for bad in [
            "-n 0",
            "-p 1",
            "-n 2 -p 2",
            "-n 1 -p 5",
            "-n x",
            "-n",
            "-n 3 -h /nonexistent",
            "-n 1 -h /nonexistent",
            "-n 2 -w 0",
            "-n 18446744073709551615",
            "-n 70000",
        ] {
            let e = ClusterConfig::from_args(args(bad)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e:?}");
        }
        assert!(ClusterConfig::local(usize::MAX, 0, 1).is_err());
        assert!(ClusterConfig::local(2, 0, 65_535).is_err());
    }

    #[test]
    fn a_process_that_never_starts_fails_the_start_naming_it() {
        let addresses = free_addresses(3);
        // A stray connection to process 0's port first: refused, not mistaken for a peer.
        let stray_to = addresses[0].clone();
        let stray = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(mut s) = std::net::TcpStream::connect(&stray_to) {
                    use std::io::Write;
                    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        });
        // Processes 0 and 1 start; process 2 never does.
        let started: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let addresses = addresses.clone();
                    s.spawn(move || {
                        let config = ClusterConfig::new(i, addresses)
                            .unwrap()
                            .connect_timeout(Duration::from_secs(2));
                        let start = Instant::now();
                        let built = Context::builder().threads(1).cluster(config).build();
                        (built.map(drop), start.elapsed())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(stray.join().unwrap(), "the stray connection was made");
        for (i, (built, took)) in started.into_iter().enumerate() {
            let (process, message) = cluster_error(&built.unwrap_err());
            assert_eq!(process, Some(2), "process {i}: {message}");
            assert!(message.contains(&addresses[2]), "{message}");
            assert!(took < Duration::from_secs(10), "{took:?}");
        }
    }

    #[test]
    fn a_process_that_stops_answering_fails_the_others_after_the_epoch_timeout() {
        let results = run_threads(
            &free_addresses(2),
            |c| c.epoch_timeout(Duration::from_millis(500)),
            |i, ctx| {
                if i == 1 {
                    std::thread::sleep(Duration::from_secs(2));
                }
                let start = Instant::now();
                let first = ctx.range(0..100, 4).count();
                let second = ctx.range(0..100, 4).count();
                (first, second, start.elapsed())
            },
        );
        let (first, _, took) = &results[0];
        let (_, message) = cluster_error(first.as_ref().unwrap_err());
        assert!(message.contains("did not complete within"), "{message}");
        assert!(*took < Duration::from_secs(2), "{took:?}");
        // The late process finds the other gone at its next exchange, at the latest.
        let (first, second, _) = &results[1];
        let failed = first.as_ref().err().or(second.as_ref().err()).unwrap();
        let (process, _) = cluster_error(failed);
        assert_eq!(process, Some(0));
    }
}
