//! Checkpoints in cluster mode (feature `cluster`): the processes of a cluster write one
//! checkpoint together into the shared checkpoint directory — each the parts of the
//! partitions it owns, process 0 the one manifest — computing every record once, and every
//! process's lineage is truncated to it. It reads back exactly what one process computes,
//! also from a one-process context. A failure anywhere fails every process and commits
//! nothing; the next action writes it again. A series resumes on every process from the
//! step process 0 finds, also when process 0 skips a damaged newest checkpoint. Processes
//! that disagree (one marks, another does not; storage that is not shared; other
//! checkpoint settings) fail instead of committing half a checkpoint, an app folder another
//! run holds fails every process when the context is built, and a failed write leaves no
//! attempt folder behind.
//!
//! The processes run as threads of this test, each with its own context and timely
//! instance, connected over loopback TCP exactly as processes are. Real processes killed
//! at random instants and resumed: `cluster_launcher_restarts_after_a_kill.rs`.

#[cfg(not(feature = "cluster"))]
#[test]
#[ignore = "needs the `cluster` feature: the README's cargo test --release --all-features runs it"]
fn needs_the_cluster_feature() {}

#[cfg(feature = "cluster")]
use crate::common;

#[cfg(feature = "cluster")]
mod cluster {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use flintlock::{CheckpointState, Context, Error, Partitioner, Rdd};

    use super::common::{
        self, free_addresses, run_threads, run_threads_with, spawn_processes, Counter,
    };

    /// The committed checkpoint folders (with a manifest) below `root`, as paths.
    fn manifests(root: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = common::files_below(root)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n == flintlock::checkpoint::MANIFEST)
            })
            .map(|p| root.join(p.parent().unwrap()))
            .collect();
        found.sort();
        found
    }

    fn pairs(x: u64) -> (u64, u64) {
        (x % 101, x.wrapping_mul(0x9E37_79B9) % 1_000)
    }

    /// The program: a mapped range checkpointed by `count` (every record computed once,
    /// counted on `computed`), then a shuffled RDD of it checkpointed by `collect`, and a
    /// third by `take` (which leaves partitions for the completion stage).
    fn program(ctx: &Context, computed: &Counter) -> (Vec<(u64, u64)>, Vec<String>) {
        let marked: Rdd<(u64, u64)> = ctx.range(0..20_000, 7).map(computed.counting(pairs));
        marked.checkpoint().unwrap();
        assert_eq!(marked.count().unwrap(), 20_000);
        let sums = marked
            .reduce_by_key(|a, b| a + b)
            .partition_by(Partitioner::hash(5));
        sums.checkpoint().unwrap();
        let mut collected = sums.collect().unwrap();
        let firsts = marked.map(|(k, v)| (v, k));
        firsts.checkpoint().unwrap();
        assert_eq!(firsts.take(3).unwrap().len(), 3);
        // Read back from the checkpoints: no record is computed again.
        collected.extend(marked.collect().unwrap());
        collected.extend(firsts.collect().unwrap());
        let states = [&marked, &firsts]
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} depth {}",
                    r.checkpoint_state(),
                    r.checkpoint_path(),
                    r.lineage_depth()
                )
            })
            .chain([format!(
                "{} {:?} depth {}",
                sums.checkpoint_state(),
                sums.checkpoint_path(),
                sums.lineage_depth()
            )])
            .collect();
        (collected, states)
    }

    #[test]
    fn a_checkpoint_on_2_3_and_4_processes_is_one_commit_that_reads_back_what_one_process_computed()
    {
        let one = tempfile::tempdir().unwrap();
        let single = Counter::default();
        let (expected, _) = program(&common::ctx_with_dir(one.path()), &single);
        for processes in [2, 3, 4] {
            let dir = tempfile::tempdir().unwrap();
            let computed = Counter::default();
            let got = run_threads(&free_addresses(processes), |ctx| {
                ctx.set_checkpoint_dir(dir.path()).unwrap();
                program(ctx, &computed)
            });
            // One computation: each record of `marked` once, across all processes, as in one
            // process (the `take` job recomputes what it stopped early in, in both).
            assert_eq!(computed.get(), single.get(), "{processes} processes");
            let committed = manifests(dir.path());
            assert_eq!(committed.len(), 3, "{processes} processes: {committed:?}");
            for (p, (values, states)) in got.iter().enumerate() {
                assert!(values == &expected, "{processes} processes: process {p}");
                for state in states {
                    assert!(
                        state.starts_with("Checkpointed Some(") && state.ends_with("depth 1"),
                        "{processes} processes, process {p}: {state}"
                    );
                }
                assert_eq!(
                    states, &got[0].1,
                    "every process reads the same checkpoints"
                );
            }
            assert!(
                common::temp_files(dir.path()).is_empty(),
                "{:?}",
                common::temp_files(dir.path())
            );
            // Each checkpoint reads back whole in one process (another app, other RDD ids).
            let reader = common::ctx();
            let mut reread = Vec::new();
            for path in &committed {
                // Two hold `(u64, u64)` records, the third (`firsts`) too.
                let rdd = reader.open_checkpoint::<(u64, u64)>(path).unwrap();
                reread.extend(reader_sorted(&rdd));
            }
            let mut all = expected.clone();
            all.sort_unstable();
            reread.sort_unstable();
            assert_eq!(reread, all, "{processes} processes");
        }
    }

    fn reader_sorted(rdd: &Rdd<(u64, u64)>) -> Vec<(u64, u64)> {
        let mut v = rdd.collect().unwrap();
        v.sort_unstable();
        v
    }

    #[test]
    fn a_task_failure_while_checkpointing_fails_every_process_commits_nothing_and_the_next_action_retries(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let fail_once = Arc::new(AtomicBool::new(true));
        let results = run_threads(&free_addresses(3), |ctx| {
            ctx.set_checkpoint_dir(dir.path()).unwrap();
            let fail = fail_once.clone();
            // Partition 4 of 6 (process 1's) fails once.
            let marked = ctx.range(0..600, 6).map(move |x| {
                if x == 450 && fail.swap(false, Ordering::SeqCst) {
                    panic!("injected failure at {x}");
                }
                x * 2
            });
            marked.checkpoint().unwrap();
            let failed = marked.count();
            let state_after_failure = marked.checkpoint_state();
            let manifests_after_failure = manifests(dir.path()).len();
            let retried = marked.count();
            let sum = marked.reduce(|a, b| a + b);
            (
                failed,
                state_after_failure,
                manifests_after_failure,
                retried,
                marked.checkpoint_state(),
                sum,
            )
        });
        for (p, (failed, state, manifests_then, retried, after, sum)) in
            results.into_iter().enumerate()
        {
            let e = failed.expect_err("the first action fails on every process");
            assert!(e.to_string().contains("injected failure at 450"), "{e}");
            assert_eq!(state, CheckpointState::Marked, "process {p}");
            assert_eq!(manifests_then, 0, "process {p}: nothing committed");
            assert_eq!(retried.unwrap(), 600, "process {p}");
            assert_eq!(after, CheckpointState::Checkpointed, "process {p}");
            assert_eq!(sum.unwrap(), Some(599 * 600), "process {p}");
        }
        assert_eq!(manifests(dir.path()).len(), 1);
    }

    /// A series written by one cluster: steps 2 and 4 (every 2, keep 1).
    fn write_series(dir: &Path, addresses: &[String]) -> Vec<Vec<u64>> {
        run_threads_with(
            addresses,
            |_, b| b.app_id("series").checkpoint_dir(dir),
            |ctx| {
                let mut cp = ctx
                    .checkpointer::<u64>("values")
                    .every(2)
                    .keep(1)
                    .meta("seed", 7);
                assert!(cp.latest().unwrap().is_none());
                let mut values = ctx.range(0..1_000, 4);
                for step in 1..=5 {
                    values = values.map(|x| x * 3 % 1_009);
                    cp.update(step, &values).unwrap();
                    values.count().unwrap();
                }
                values.collect().unwrap()
            },
        )
    }

    #[test]
    fn a_series_resumes_on_every_process_from_the_step_process_0_finds() {
        let tmp = tempfile::tempdir().unwrap();
        // A folder name that is not UTF-8 (Linux allows any bytes): process 0 sends the
        // path it found to the others exactly.
        #[cfg(target_os = "linux")]
        let dir = tmp
            .path()
            .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"ranks-\xff"));
        #[cfg(not(target_os = "linux"))]
        let dir = tmp.path().join("ranks");
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.as_path();
        let written = write_series(dir, &free_addresses(3));
        // keep(1): process 0 removed step 2 once step 4 committed.
        assert_eq!(manifests(dir).len(), 1);
        let resumed = run_threads_with(
            &free_addresses(3),
            |_, b| b.app_id("series").checkpoint_dir(dir),
            |ctx| {
                let cp = ctx.checkpointer::<u64>("values").meta("seed", 7);
                let (step, rdd) = cp.latest().unwrap().expect("step 4 is committed");
                (step, rdd.map(|x| x * 3 % 1_009).collect().unwrap())
            },
        );
        for (p, (step, values)) in resumed.into_iter().enumerate() {
            assert_eq!(step, 4, "process {p}");
            assert_eq!(values, written[p], "process {p}: step 5 again");
        }
        // Another computation's meta: refused on every process, nothing removed.
        let refused = run_threads_with(
            &free_addresses(2),
            |_, b| b.app_id("series").checkpoint_dir(dir),
            |ctx| {
                let cp = ctx.checkpointer::<u64>("values").meta("seed", 8);
                cp.latest().map(|found| found.map(|(step, _)| step))
            },
        );
        for (p, outcome) in refused.into_iter().enumerate() {
            let e = outcome.expect_err("another computation's checkpoint");
            assert!(e.to_string().contains("seed"), "process {p}: {e}");
        }
        assert_eq!(manifests(dir).len(), 1);
    }

    /// Process 0 skips a damaged newest checkpoint (opening it, and an RDD for it, first);
    /// every process still resumes from the same step with the same RDD ids, so the jobs
    /// that follow agree.
    #[test]
    fn a_damaged_newest_checkpoint_is_skipped_alike_on_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let step = |x: u64| x * 3 % 1_009;
        run_threads_with(
            &free_addresses(3),
            |_, b| b.app_id("damaged").checkpoint_dir(dir.path()),
            |ctx| {
                let mut cp = ctx.checkpointer::<u64>("values").every(2).keep(2);
                let mut values = ctx.range(0..1_000, 4);
                for s in 1..=4 {
                    values = values.map(step);
                    cp.update(s, &values).unwrap();
                    values.count().unwrap();
                }
            },
        );
        let committed = {
            let ctx = Context::builder()
                .app_id("damaged")
                .checkpoint_dir(dir.path())
                .build()
                .unwrap();
            ctx.checkpointer::<u64>("values").committed().unwrap()
        };
        assert_eq!(committed.iter().map(|c| c.step).collect::<Vec<_>>(), [4, 2]);
        let part = committed[0].path.join("part-00002");
        let bytes = std::fs::read(&part).unwrap();
        std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
        let expected: Vec<(u64, u64)> = {
            let mut v: Vec<(u64, u64)> = (0..1_000u64)
                .map(|x| (step(step(x)) % 10, step(step(step(x)))))
                .collect();
            v.sort_unstable();
            let mut sums: Vec<(u64, u64)> = Vec::new();
            for (k, x) in v {
                match sums.last_mut() {
                    Some((last, total)) if *last == k => *total += x,
                    _ => sums.push((k, x)),
                }
            }
            sums
        };
        let resumed = run_threads_with(
            &free_addresses(3),
            |_, b| b.app_id("damaged").checkpoint_dir(dir.path()),
            |ctx| {
                let cp = ctx.checkpointer::<u64>("values");
                let (s, values) = cp.latest().unwrap().expect("step 2 is intact");
                let mut sums = values
                    .map(move |x| (x % 10, step(x)))
                    .reduce_by_key(|a, b| a + b)
                    .collect()
                    .unwrap();
                sums.sort_unstable();
                (s, sums)
            },
        );
        for (p, (s, sums)) in resumed.into_iter().enumerate() {
            assert_eq!(s, 2, "process {p}");
            assert_eq!(sums, expected, "process {p}");
        }
    }

    #[test]
    fn processes_that_do_not_mark_the_same_rdds_fail_instead_of_writing_half_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let results = run_threads(&free_addresses(2), |ctx| {
            ctx.set_checkpoint_dir(dir.path()).unwrap();
            let rdd = ctx.range(0..100, 4).map(|x| x + 1);
            if ctx.process() == 0 {
                rdd.checkpoint().unwrap();
            }
            (rdd.count(), rdd.checkpoint_state())
        });
        for (p, (counted, state)) in results.into_iter().enumerate() {
            let e = counted.expect_err("the processes diverged");
            assert!(matches!(e, Error::Cluster { .. }), "process {p}: {e:?}");
            assert_ne!(state, CheckpointState::Checkpointed, "process {p}");
        }
        assert!(manifests(dir.path()).is_empty());
        assert!(
            common::files_below(dir.path())
                .iter()
                .all(|f| !f.to_string_lossy().contains("part-")),
            "{:?}",
            common::files_below(dir.path())
        );
    }

    #[test]
    fn a_checkpoint_directory_the_processes_do_not_share_is_an_error_that_says_so() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let results = run_threads(&free_addresses(2), |ctx| {
            ctx.set_checkpoint_dir(dirs[ctx.process()].path()).unwrap();
            let rdd = ctx.range(0..100, 4).map(|x| x + 1);
            rdd.checkpoint().unwrap();
            let counted = rdd.count();
            // The cluster goes on: the lineage is intact.
            (counted, rdd.checkpoint_state(), ctx.range(0..10, 3).count())
        });
        for (p, (counted, state, after)) in results.into_iter().enumerate() {
            let e = counted.expect_err("process 1 cannot see process 0's folder");
            assert!(
                e.to_string().contains("storage every process shares"),
                "process {p}: {e}"
            );
            assert_eq!(state, CheckpointState::Marked, "process {p}");
            assert_eq!(after.unwrap(), 10, "process {p}");
        }
        for dir in &dirs {
            assert!(manifests(dir.path()).is_empty());
        }
    }

    #[test]
    fn an_app_folder_another_run_holds_fails_every_process_at_build() {
        let dir = tempfile::tempdir().unwrap();
        let _holder = Context::builder()
            .app_id("taken")
            .checkpoint_dir(dir.path())
            .build()
            .unwrap();
        let built = spawn_processes(&free_addresses(2), |_, config| {
            Context::builder()
                .threads(1)
                .app_id("taken")
                .checkpoint_dir(dir.path())
                .cluster(config)
                .build()
        });
        for (p, outcome) in built.into_iter().enumerate() {
            let Err(e) = outcome else {
                panic!("process {p}: the folder is locked, yet the context was built");
            };
            if p == 0 {
                assert!(matches!(e, Error::Locked { .. }), "{e:?}");
            } else {
                assert!(
                    matches!(
                        e,
                        Error::Cluster {
                            process: Some(0),
                            ..
                        }
                    ),
                    "{e:?}"
                );
                assert!(e.to_string().contains("lock"), "{e}");
            }
        }
    }

    /// A part write that fails on one process: every process fails, and process 0 (which
    /// committed nothing) removes the whole attempt folder, the parts the others finished
    /// included; the retry commits.
    #[test]
    fn a_failed_write_on_one_process_leaves_no_attempt_folder_behind() {
        use flintlock::checkpoint::{FaultyStorage, LocalFs, StorageOp};
        let dir = tempfile::tempdir().unwrap();
        let storages: Vec<Arc<FaultyStorage>> = (0..3)
            .map(|_| FaultyStorage::new(Arc::new(LocalFs)))
            .collect();
        let results = run_threads_with(
            &free_addresses(3),
            |i, b| {
                b.app_id("faulty")
                    .checkpoint_dir(dir.path())
                    .checkpoint_storage(storages[i].clone())
            },
            |ctx| {
                if ctx.process() == 1 {
                    // Its second part's rename: its first part is complete by then.
                    storages[1].fail_nth(StorageOp::Rename, 2, std::io::ErrorKind::Other);
                }
                let marked = ctx.range(0..600, 6).map(|x| x * 2);
                marked.checkpoint().unwrap();
                let failed = marked.count();
                let folders_after_failure = attempt_folders(dir.path());
                (
                    failed,
                    folders_after_failure,
                    marked.count(),
                    marked.checkpoint_state(),
                )
            },
        );
        for (p, (failed, folders, retried, state)) in results.into_iter().enumerate() {
            assert!(failed.is_err(), "process {p}");
            // Process 0's abort may run after another process looked.
            if p == 0 {
                assert!(folders.is_empty(), "process 0 left {folders:?}");
            }
            assert_eq!(retried.unwrap(), 600, "process {p}");
            assert_eq!(state, CheckpointState::Checkpointed, "process {p}");
        }
        let left = attempt_folders(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(manifests(dir.path()), left);
    }

    /// The `rdd-*` folders of every app folder below `root`.
    fn attempt_folders(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for app in std::fs::read_dir(root).unwrap().flatten() {
            if let Ok(entries) = std::fs::read_dir(app.path()) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("rdd-") {
                        found.push(e.path());
                    }
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn processes_with_other_checkpoint_settings_fail_when_the_folder_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let built = spawn_processes(&free_addresses(2), |i, config| {
            let builder = Context::builder()
                .threads(1)
                .app_id("settings")
                .checkpoint_dir(dir.path())
                .cluster(config);
            match i {
                1 => builder.checkpoint_compression(flintlock::checkpoint::Compression::Lz4),
                _ => builder,
            }
            .build()
        });
        for (p, outcome) in built.into_iter().enumerate() {
            let Err(e) = outcome else {
                panic!("process {p}: other settings, yet the context was built");
            };
            assert!(
                matches!(
                    e,
                    Error::Cluster {
                        process: Some(1),
                        ..
                    }
                ),
                "process {p}: {e:?}"
            );
            assert!(e.to_string().contains("Lz4"), "process {p}: {e}");
        }
    }
}
