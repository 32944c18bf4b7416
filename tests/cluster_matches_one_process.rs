//! A program run as a cluster of 2, 3 or 4 processes (feature `cluster`) computes exactly
//! what it computes in one process: the core operations (map, filter, flat_map,
//! reduce_by_key, group_by_key, join, left_outer_join, cogroup, distinct, sort_by_key,
//! repartition, cache, and union, coalesce and cartesian of shuffled RDDs, whose tasks read
//! partitions other processes own) and every action whose result crosses processes (count, collect,
//! reduce, fold, aggregate, take, first, count_by_value, take_ordered, top, lookup, stats,
//! histogram, sum, max, min), on random inputs, give the same values *and the same order*
//! on every process as in one process. A task that fails on one process fails the action
//! on all of them, and the cluster goes on. Record types without a codec, and what cluster
//! mode does not support yet, are errors that say so. (Checkpoints: `cluster_checkpoints_*`.)
//!
//! Most tests run the processes as threads of this test (each its own context and timely
//! instance, connected over loopback TCP exactly as processes are); one runs them as real
//! child processes of this test binary.

#[cfg(not(feature = "cluster"))]
#[test]
#[ignore = "needs the `cluster` feature: the README's cargo test --release --all-features runs it"]
fn needs_the_cluster_feature() {}

#[cfg(feature = "cluster")]
use crate::common;
// The pagerank example's modules (the suite includes them once).
#[cfg(feature = "cluster")]
use crate::{graph, job};

#[cfg(feature = "cluster")]
mod cluster {
    use std::path::Path;

    use flintlock::{ClusterConfig, Context, Error, Rdd};

    use super::common;
    use common::{free_addresses, run_threads};

    /// A deterministic pseudo-random sequence (SplitMix64).
    fn numbers(seed: u64, n: usize, below: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                (z ^ (z >> 31)) % below
            })
            .collect()
    }

    /// The program every process runs: the core operations on random pairs, each result
    /// printed in the order the engine returns it.
    pub fn suite(ctx: &Context, seed: u64) -> Vec<String> {
        ctx.register_spillable::<(u64, Vec<u64>)>();
        ctx.register_spillable::<(u64, (u64, u64))>();
        ctx.register_spillable::<(u64, (u64, Option<u64>))>();
        ctx.register_spillable::<(u64, (usize, usize))>();
        ctx.register_spillable::<((u64, u64), (u64, u64))>();
        let mut out = Vec::new();
        let mut show = |name: &str, value: String| out.push(format!("{name}: {value}"));
        let keys = numbers(seed, 2_000, 300);
        let values = numbers(seed ^ 1, 2_000, 1_000);
        let pairs: Vec<(u64, u64)> = keys.into_iter().zip(values).collect();
        let rdd: Rdd<(u64, u64)> = ctx.parallelize(pairs.clone(), 5);
        let other: Rdd<(u64, u64)> = ctx.parallelize(
            numbers(seed ^ 2, 500, 400)
                .into_iter()
                .zip(numbers(seed ^ 3, 500, 50))
                .collect(),
            3,
        );
        let mapped = rdd
            .map(|(k, v)| (k % 97, v * 3))
            .filter(|(_, v)| v % 5 != 0)
            .cache();
        show("count", format!("{:?}", mapped.count()));
        show("collect", format!("{:?}", mapped.collect()));
        show(
            "flat_map",
            format!("{:?}", rdd.flat_map(|(k, v)| vec![k, v]).sum()),
        );
        let sums = mapped.reduce_by_key(|a, b| a + b);
        show("reduce_by_key", format!("{:?}", sums.collect()));
        show("reduce_by_key twice", format!("{:?}", sums.collect()));
        show(
            "group_by_key",
            format!(
                "{:?}",
                rdd.group_by_key()
                    .map_values(|mut vs| {
                        vs.sort_unstable();
                        vs
                    })
                    .collect()
            ),
        );
        show("join", format!("{:?}", rdd.join(&other).collect()));
        show(
            "left_outer_join",
            format!("{:?}", other.left_outer_join(&sums).collect()),
        );
        show(
            "cogroup",
            format!(
                "{:?}",
                rdd.cogroup(&other)
                    .map_values(|(a, b)| (a.len(), b.len()))
                    .collect()
            ),
        );
        show("distinct", format!("{:?}", rdd.keys().distinct().collect()));
        show(
            "sort_by_key",
            format!("{:?}", rdd.sort_by_key(true).collect()),
        );
        show(
            "sort_by_key desc",
            format!("{:?}", sums.sort_by_key(false).take(25)),
        );
        show(
            "repartition",
            format!("{:?}", rdd.repartition(7).glom().map(|p| p.len()).collect()),
        );
        // Narrow dependencies that read shuffled partitions other processes own: the
        // buckets are moved to the process that runs the task.
        let other_sums = other.reduce_by_key(|a, b| a + b);
        show(
            "union of shuffles",
            format!("{:?}", sums.union(&other_sums).collect()),
        );
        let unioned = sums.union(&other_sums).map(|(k, v)| (k, v + 1)).cache();
        show("union cached", format!("{:?}", unioned.count()));
        show("union cached again", format!("{:?}", unioned.collect()));
        show(
            "union then shuffle",
            format!("{:?}", unioned.reduce_by_key(|a, b| a ^ b).collect()),
        );
        show(
            "coalesce after a shuffle",
            format!("{:?}", rdd.sort_by_key(true).coalesce(3).collect()),
        );
        let coalesced = sums.coalesce(3);
        show(
            "zip of coalesced shuffles",
            format!(
                "{:?}",
                coalesced.zip(&coalesced.map_values(|v| v + 1)).collect()
            ),
        );
        show(
            "cartesian of shuffles",
            format!(
                "{:?}",
                sums.filter(|(k, _)| k % 13 == 0)
                    .cartesian(&other_sums.filter(|(k, _)| k % 17 == 0))
                    .collect()
            ),
        );
        show(
            "reduce",
            format!("{:?}", rdd.values().reduce(|a, b| a.max(b))),
        );
        show("fold", format!("{:?}", rdd.values().fold(0, |a, b| a + b)));
        show(
            "aggregate",
            format!(
                "{:?}",
                rdd.aggregate(
                    (0u64, 0u64),
                    |(s, n), (_, v)| (s + v, n + 1),
                    |a, b| (a.0 + b.0, a.1 + b.1)
                )
            ),
        );
        show("take", format!("{:?}", rdd.take(7)));
        show("first", format!("{:?}", other.first()));
        show("count_by_value", {
            let mut v: Vec<_> = rdd.keys().count_by_value().unwrap().into_iter().collect();
            v.sort_unstable();
            format!("{v:?}")
        });
        show("take_ordered", format!("{:?}", rdd.take_ordered(9)));
        show("top", format!("{:?}", rdd.values().top(9)));
        show("lookup", format!("{:?}", rdd.lookup(&17)));
        show(
            "stats",
            format!("{:?}", rdd.values().map(|v| v as f64).stats()),
        );
        show(
            "histogram",
            format!("{:?}", rdd.values().map(|v| v as f64).histogram(6)),
        );
        show("max", format!("{:?}", rdd.max()));
        show("min", format!("{:?}", rdd.min()));
        show("empty", format!("{:?}", ctx.empty::<u64>().collect()));
        out
    }

    #[test]
    fn two_three_and_four_processes_compute_what_one_does() {
        for (processes, seed) in [(2, 1u64), (3, 2), (4, 3), (2, 4)] {
            let expected = suite(&Context::builder().threads(2).build().unwrap(), seed);
            let got = run_threads(&free_addresses(processes), |ctx| suite(ctx, seed));
            for (p, lines) in got.iter().enumerate() {
                assert_eq!(lines.len(), expected.len());
                for (a, b) in lines.iter().zip(&expected) {
                    assert_eq!(a, b, "{processes} processes, seed {seed}, process {p}");
                }
            }
        }
    }

    /// The PageRank example's job (Spark's plan: distinct, group_by_key, a cached and
    /// co-partitioned join, reduce_by_key) on the built-in graph.
    fn pagerank(ctx: &Context, edges: &[(u64, u64)]) -> Vec<String> {
        let config = super::job::Config {
            iterations: 10,
            partitions: 8,
            checkpoint_every: 0,
            materialize_each_iteration: true,
            series: None,
        };
        let ranks = super::job::run(ctx, edges.to_vec(), &config, |_| {}).unwrap();
        // As the example prints them.
        ranks.iter().map(|(n, r)| format!("{n} {r:.6}")).collect()
    }

    #[test]
    fn pagerank_on_2_and_4_processes_prints_the_ranks_of_one_process() {
        let edges = super::graph::generate(10_000, 100_000, 42).unwrap();
        let expected = pagerank(&Context::builder().threads(2).build().unwrap(), &edges);
        assert!(expected.len() > 9_000, "{}", expected.len());
        for processes in [2, 4] {
            let got = run_threads(&free_addresses(processes), |ctx| pagerank(ctx, &edges));
            for (p, ranks) in got.into_iter().enumerate() {
                assert!(
                    ranks == expected,
                    "{processes} processes: process {p} differs"
                );
            }
        }
    }

    #[test]
    fn a_task_failure_on_one_process_fails_the_action_everywhere_and_the_cluster_goes_on() {
        let results = run_threads(&free_addresses(3), |ctx| {
            let rdd = ctx.range(0..600, 6);
            // Partition 4 belongs to process 1 (4 mod 3).
            let failed = rdd
                .map(|x| {
                    assert!(!(400..500).contains(&x), "bad record {x}");
                    x
                })
                .count();
            let after = rdd.map(|x| x * 2).reduce(|a, b| a + b);
            (failed, after)
        });
        for (p, (failed, after)) in results.into_iter().enumerate() {
            let e = failed.expect_err("the action fails on every process");
            let text = e.to_string();
            assert!(text.contains("bad record 400"), "process {p}: {text}");
            if p == 1 {
                assert!(matches!(e, Error::TaskFailed { partition: 4, .. }), "{e:?}");
            } else {
                assert!(
                    matches!(
                        e,
                        Error::Cluster {
                            process: Some(1),
                            ..
                        }
                    ),
                    "{e:?}"
                );
            }
            assert_eq!(after.unwrap(), Some(600 * 599), "process {p}");
        }
    }

    /// A type whose serde forms disagree (its value written doubled, read as it is): a
    /// record of it decodes, as another value. Crossing processes, it must fail the action
    /// everywhere instead of arriving changed, as a spill of it does.
    #[test]
    fn records_that_do_not_read_back_fail_instead_of_arriving_changed() {
        fn doubled<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(v.wrapping_mul(2))
        }
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Lossy {
            note: Option<u8>,
            #[serde(serialize_with = "doubled")]
            value: u64,
        }
        let results = run_threads(&free_addresses(2), |ctx| {
            ctx.register_spillable::<Lossy>();
            ctx.register_spillable::<(u64, Lossy)>();
            let records = |x: u64| Lossy {
                note: None,
                value: x,
            };
            let collected = ctx.range(0..10, 4).map(records).collect();
            let shuffled = ctx
                .range(0..10, 4)
                .map(move |x| (x % 3, records(x)))
                .partition_by(flintlock::Partitioner::hash(2))
                .collect();
            (collected.map(|v| v.len()), shuffled.map(|v| v.len()))
        });
        for (p, (collected, shuffled)) in results.into_iter().enumerate() {
            for e in [collected.unwrap_err(), shuffled.unwrap_err()] {
                assert!(
                    matches!(e, Error::UnspillableRecord { .. } | Error::Cluster { .. }),
                    "process {p}: {e:?}"
                );
            }
        }
    }

    #[test]
    fn records_without_a_codec_are_an_error_that_names_the_type() {
        #[derive(Clone, Debug, PartialEq)]
        struct Opaque(u64);
        let results = run_threads(&free_addresses(2), |ctx| {
            let collected = ctx.range(0..10, 4).map(Opaque).collect().map(|v| v.len());
            let shuffled = ctx
                .range(0..10, 4)
                .map(|x| (x % 3, Opaque(x)))
                .partition_by(flintlock::Partitioner::hash(2))
                .count();
            (collected, shuffled)
        });
        for (collected, shuffled) in results {
            for e in [collected.unwrap_err(), shuffled.unwrap_err()] {
                assert!(e.to_string().contains("Opaque"), "{e}");
                assert!(e.to_string().contains("register_spillable"), "{e}");
            }
        }
    }

    #[test]
    fn what_cluster_mode_does_not_support_yet_is_refused_before_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let results = run_threads(&free_addresses(2), |ctx| {
            let rdd = ctx.range(0..10, 4);
            let saved = rdd.save_as_text_file(dir.path().join(format!("out-{}", ctx.app_id())));
            ctx.set_checkpoint_dir(dir.path()).unwrap();
            let marked = rdd.map(|x| x + 1);
            marked.local_checkpoint().unwrap();
            let checkpointed = marked.count();
            let acc = ctx.long_accumulator("n");
            let counted = rdd.foreach({
                let acc = acc.clone();
                move |_| acc.add(1)
            });
            let after = rdd.count();
            (saved, checkpointed, counted, after)
        });
        for (saved, checkpointed, counted, after) in results {
            for e in [
                saved.unwrap_err(),
                checkpointed.unwrap_err(),
                counted.unwrap_err(),
            ] {
                assert!(matches!(e, Error::Cluster { .. }), "{e:?}");
                assert!(
                    e.to_string().contains("not supported in cluster mode"),
                    "{e}"
                );
            }
            assert_eq!(after.unwrap(), 10);
        }
        // Nothing was written.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("out-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    const CHILD_ENV: &str = "FLINTLOCK_TEST_CLUSTER_CHILD";

    /// Runs only as a child: process `i` of the cluster in `$FLINTLOCK_TEST_CLUSTER_CHILD`
    /// (`<i> <output file> <address>...`), writing the suite's lines to the output file.
    #[test]
    #[ignore = "a child process: real_processes_compute_what_one_does starts it"]
    fn child_runs_the_suite() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return; // not the child
        };
        let mut words = spec.split(' ');
        let i: usize = words.next().unwrap().parse().unwrap();
        let out = words.next().unwrap().to_string();
        let addresses: Vec<String> = words.map(str::to_string).collect();
        let ctx = Context::builder()
            .threads(1)
            .cluster(ClusterConfig::new(i, addresses).unwrap())
            .build()
            .unwrap();
        std::fs::write(out, suite(&ctx, 7).join("\n")).unwrap();
    }

    #[test]
    fn real_processes_compute_what_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let addresses = free_addresses(2);
        let children: Vec<_> = (0..2)
            .map(|i| {
                let out = dir.path().join(format!("process-{i}"));
                let spec = format!("{i} {} {}", out.display(), addresses.join(" "));
                let child = common::child_test("cluster::child_runs_the_suite")
                    .env(CHILD_ENV, spec)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                (common::ChildGuard(child), out)
            })
            .collect();
        let expected = suite(&Context::builder().threads(1).build().unwrap(), 7).join("\n");
        for (mut child, out) in children {
            assert!(child.wait().unwrap().success());
            assert_eq!(read(&out), expected, "{}", out.display());
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }
}
