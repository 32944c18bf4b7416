//! `ContextBuilder::memory_limit`: shuffles larger than the limit run to completion on disk,
//! give exactly the records an unlimited context gives, and say why when they cannot.
//!
//! The heap is measured with a counting global allocator (live bytes and their peak); the
//! resident set is printed beside it (glibc's arenas make it an allocator figure).

// The counting allocator is unsafe to implement; it only forwards to the system's.
#![allow(unsafe_code)]

#[path = "common/heap.rs"]
mod heap;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flintlock::{Context, Error, Partitioner};
use heap::{resident_mb, MB};
use proptest::prelude::*;

/// The heap is the whole process's: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn limited(limit: u64, dir: &Path) -> Context {
    Context::builder()
        .threads(2)
        .memory_limit(limit)
        .spill_dir(dir)
        .build()
        .unwrap()
}

fn spill_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for folder in std::fs::read_dir(dir).unwrap() {
        let folder = folder.unwrap().path();
        if folder.is_dir() {
            for f in std::fs::read_dir(&folder).unwrap() {
                out.push(f.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

/// The by-key operations' results on `pairs`, in a comparable form.
fn results(ctx: &Context, pairs: &[(u64, u64)]) -> Vec<String> {
    let rdd = ctx.parallelize(pairs.to_vec(), 3);
    let sorted = |mut v: Vec<(u64, u64)>| {
        v.sort();
        format!("{v:?}")
    };
    let grouped: BTreeMap<u64, Vec<u64>> = rdd
        .group_by_key_with(Partitioner::hash(4))
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, mut vs)| {
            vs.sort();
            (k, vs)
        })
        .collect();
    let other = ctx.parallelize(pairs.iter().map(|&(k, v)| (k % 7, v)).collect(), 2);
    let mut joined = rdd
        .join_with(&other, Partitioner::hash(5))
        .collect()
        .unwrap();
    joined.sort();
    vec![
        sorted(
            rdd.reduce_by_key(|a, b| a.wrapping_add(b))
                .collect()
                .unwrap(),
        ),
        format!("{grouped:?}"),
        sorted(rdd.partition_by(Partitioner::hash(6)).collect().unwrap()),
        sorted(rdd.distinct().collect().unwrap()),
        format!("{:?}", rdd.sort_by_key(true).keys().collect().unwrap()),
        format!("{joined:?}"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever spills, the records are the ones an unlimited context gives.
    #[test]
    fn spilled_shuffles_give_the_same_records(
        pairs in prop::collection::vec((0u64..200, any::<u64>()), 0..3000),
        limit in prop::sample::select(vec![1u64, 512, 4096, 64 << 10]),
    ) {
        let _serial = serial();
        let dir = tempfile::tempdir().unwrap();
        let plain = Context::builder().threads(2).build().unwrap();
        let ctx = limited(limit, dir.path());
        prop_assert_eq!(results(&ctx, &pairs), results(&plain, &pairs));
        // The comparison above ran spilled shuffles: with a small limit and enough pairs, a
        // shuffle kept alive has files on disk (every RDD above is dropped by now).
        if limit <= 4096 && pairs.len() > 1000 {
            let kept = ctx.parallelize(pairs.clone(), 3).partition_by(Partitioner::hash(6));
            prop_assert_eq!(kept.count().unwrap(), pairs.len() as u64);
            prop_assert!(ctx.memory_stats().spilled_bytes > 0);
            prop_assert!(!spill_files(dir.path()).is_empty());
        }
    }
}

#[test]
fn a_shuffle_four_times_the_limit_runs_under_the_limit() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let limit: u64 = 32 << 20;
    let ctx = limited(limit, dir.path());
    // 8M (u64, u64) pairs, keys all distinct: 128 MB of shuffle records (4x the limit); the
    // map side gives up combining, and 64 reduce partitions keep each reduce table small.
    let n = 8_000_000u64;
    let before = heap::live();
    heap::reset_peak();
    let counts = ctx
        .range(0..n, 4)
        .map(|x| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1u64))
        .reduce_by_key_with(Partitioner::hash(64), |a, b| a + b);
    assert_eq!(counts.count().unwrap(), n);
    let peak = heap::peak() - before;
    let stats = ctx.memory_stats();
    eprintln!(
        "limit {} MB: heap peak {} MB above the start, {} MB spilled in {} files, \
         resident {} MB",
        limit >> 20,
        peak / MB,
        stats.spilled_bytes >> 20,
        stats.spill_files,
        resident_mb()
    );
    assert!(
        stats.spilled_bytes > 64 << 20,
        "most of the shuffle should be on disk: {stats:?}"
    );
    assert!(
        peak <= limit as isize,
        "the heap peaked {} MB above the start, over the {} MB limit",
        peak / MB,
        limit >> 20
    );
    // Spilled outputs are reused by the next action, and give the same answer.
    let total = counts.values().fold(0, |a, b| a + b).unwrap();
    assert_eq!(total, n);
    drop(counts);
    let stats = ctx.memory_stats();
    assert_eq!((stats.spill_files, stats.spilled_bytes), (0, 0));
    assert!(
        spill_files(dir.path()).is_empty(),
        "a dropped shuffle's files are removed"
    );
}

#[test]
fn a_combining_map_side_spills_its_table() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1 << 20, dir.path());
    // Every key twice in each of the two map partitions: combining pays, and one map
    // task's table (100,000 keys) outgrows the task's share of 256 KB.
    let sums = ctx
        .range(0..400_000, 2)
        .map(|x| (x % 100_000, x))
        .reduce_by_key_with(Partitioner::hash(8), |a, b| a + b);
    let got: BTreeMap<u64, u64> = sums.collect().unwrap().into_iter().collect();
    assert!(ctx.memory_stats().spilled_bytes > 0);
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().all(|(&k, &v)| v == 4 * k + 600_000));
}

#[test]
fn a_damaged_spill_file_fails_the_job_and_the_shuffle_runs_again() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    let counts = ctx
        .range(0..100_000, 2)
        .map(|x| (x % 1000, 1u64))
        .reduce_by_key(|a, b| a + b);
    assert_eq!(counts.count().unwrap(), 1000);
    let files = spill_files(dir.path());
    assert!(!files.is_empty());
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(f, bytes).unwrap();
    }
    match counts.collect() {
        Err(Error::SpillDamaged { path, reason }) => {
            assert!(files.contains(&path), "{path:?} names a damaged file");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected SpillDamaged, got {other:?}"),
    }
    // The damaged outputs were dropped: the next action runs the map stage again.
    let got = counts.collect().unwrap();
    assert_eq!(got.len(), 1000);
    assert!(got.iter().all(|&(_, c)| c == 100));
}

#[test]
fn records_without_a_codec_stay_in_memory_until_registered() {
    #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Visit {
        page: String,
        ms: u32,
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    let visits = ctx.range(0..5_000, 2).map(|i| {
        (
            i % 10,
            Visit {
                page: format!("/p/{i}"),
                ms: i as u32,
            },
        )
    });
    let grouped = visits.group_by_key();
    assert_eq!(grouped.count().unwrap(), 10);
    let stats = ctx.memory_stats();
    assert_eq!(stats.spilled_bytes, 0);
    assert!(stats.unspillable_outputs >= 2, "{stats:?}");
    drop(grouped);

    ctx.register_spillable::<(u64, Visit)>();
    let grouped = visits.group_by_key();
    let mut got = grouped.collect().unwrap();
    got.sort_by_key(|g| g.0);
    assert!(ctx.memory_stats().spilled_bytes > 0);
    assert_eq!(got.len(), 10);
    for (k, vs) in got {
        assert_eq!(vs.len(), 500);
        assert!(vs
            .iter()
            .all(|v| u64::from(v.ms) % 10 == k && v.page == format!("/p/{}", v.ms)));
    }
}

#[test]
fn a_type_postcard_cannot_read_back_is_refused_when_it_would_spill() {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Sparse {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        n: u64,
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    ctx.register_spillable::<(u64, Sparse)>();
    let err = ctx
        .range(0..1000, 2)
        .map(|n| (n % 3, Sparse { note: None, n }))
        .group_by_key()
        .count()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::UnspillableRecord { .. } | Error::TaskFailed { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Sparse"), "{err}");
    assert!(
        spill_files(dir.path()).is_empty(),
        "a failed spill leaves no file"
    );
}

#[test]
fn an_unusable_spill_dir_is_an_error_naming_it() {
    let _serial = serial();
    let missing = std::env::temp_dir().join("flintlock-no-such-dir/deeper");
    let ctx = Context::builder()
        .memory_limit(1)
        .spill_dir(&missing)
        .build()
        .unwrap();
    let err = ctx
        .range(0..10_000, 2)
        .map(|x| (x, x))
        .partition_by(Partitioner::hash(3))
        .count()
        .unwrap_err();
    assert!(err.to_string().contains("flintlock-no-such-dir"), "{err}");
}

#[test]
fn a_zero_limit_is_refused() {
    let err = Context::builder().memory_limit(0).build().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn without_a_limit_nothing_spills() {
    let _serial = serial();
    let ctx = Context::builder().threads(2).build().unwrap();
    let n = ctx
        .range(0..200_000, 2)
        .map(|x| (x, x))
        .partition_by(Partitioner::hash(4))
        .count()
        .unwrap();
    assert_eq!(n, 200_000);
    let stats = ctx.memory_stats();
    assert_eq!(stats.memory_limit, None);
    assert_eq!((stats.spilled_bytes, stats.spill_files), (0, 0));
}

#[test]
fn a_cut_or_deleted_spill_file_is_damage_and_the_shuffle_runs_again() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    let counts = ctx
        .range(0..100_000, 2)
        .map(|x| (x % 1000, 1u64))
        .reduce_by_key(|a, b| a + b);
    assert_eq!(counts.count().unwrap(), 1000);
    for cut in [true, false] {
        for f in spill_files(dir.path()) {
            if cut {
                let len = std::fs::metadata(&f).unwrap().len();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            } else {
                std::fs::remove_file(&f).unwrap();
            }
        }
        let err = counts.collect().unwrap_err();
        assert!(matches!(err, Error::SpillDamaged { .. }), "{err:?}");
        assert_eq!(counts.count().unwrap(), 1000, "the shuffle ran again");
    }
}

#[test]
fn growing_combiners_are_measured_again_and_spill() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(4 << 20, dir.path());
    ctx.register_spillable::<(u64, Vec<u64>)>();
    // 64 keys whose Vec combiners grow to 31,250 values each: one element when first
    // sampled, 250 KB each by the end.
    let grouped = ctx
        .range(0..2_000_000, 2)
        .map(|x| (x % 64, x))
        .aggregate_by_key_with(
            Partitioner::hash(8),
            Vec::new(),
            |mut a: Vec<u64>, v| {
                a.push(v);
                a
            },
            |mut a, mut b| {
                a.append(&mut b);
                a
            },
        );
    let got = grouped.collect().unwrap();
    assert!(
        ctx.memory_stats().spilled_bytes > 0,
        "{:?}",
        ctx.memory_stats()
    );
    assert_eq!(got.len(), 64);
    for (k, vs) in got {
        assert_eq!(vs.len(), 31_250);
        assert!(vs.iter().all(|v| v % 64 == k));
    }
}

#[test]
fn a_type_that_does_not_read_back_is_unreadable_not_damage() {
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Loose {
        N(u64),
        S(String),
    }
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    ctx.register_spillable::<(u64, Loose)>();
    let err = ctx
        .range(0..1000, 2)
        .map(|n| {
            (
                n % 3,
                if n % 2 == 0 {
                    Loose::N(n)
                } else {
                    Loose::S(n.to_string())
                },
            )
        })
        .partition_by(Partitioner::hash(2))
        .count()
        .unwrap_err();
    assert!(matches!(err, Error::UnspillableRecord { .. }), "{err:?}");
}

#[test]
fn a_removed_spill_folder_is_made_again() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    let run = || {
        ctx.range(0..10_000, 2)
            .map(|x| (x, x))
            .partition_by(Partitioner::hash(3))
            .count()
            .unwrap()
    };
    assert_eq!(run(), 10_000);
    for folder in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::remove_dir_all(folder.unwrap().path()).unwrap();
    }
    assert_eq!(run(), 10_000);
}

#[test]
fn a_field_left_out_when_spilling_is_refused_not_misread() {
    fn is_zero(x: &u8) -> bool {
        *x == 0
    }
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct TupleSkip(#[serde(skip_serializing_if = "is_zero")] u8, String);
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    ctx.register_spillable::<(u64, TupleSkip)>();
    let err = ctx
        .range(0..2000, 2)
        .map(|i| (i % 10, TupleSkip(0, "\u{1}x".into())))
        .partition_by(Partitioner::hash(3))
        .collect()
        .unwrap_err();
    assert!(matches!(err, Error::UnspillableRecord { .. }), "{err:?}");
    assert!(err.to_string().contains("TupleSkip"), "{err}");
}

#[test]
fn every_reader_of_a_damaged_shuffle_sees_the_damage_never_missing_outputs() {
    let _serial = serial();
    for trial in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::builder()
            .threads(2)
            .memory_limit(1)
            .spill_dir(dir.path())
            .task_max_failures(3)
            .build()
            .unwrap();
        let counts = ctx
            .range(0..100_000, 4)
            .map(|x| (x % 1000, 1u64))
            .reduce_by_key_with(Partitioner::hash(8), |a, b| a + b);
        assert_eq!(counts.count().unwrap(), 1000);
        for f in spill_files(dir.path()) {
            let mut bytes = std::fs::read(&f).unwrap();
            let at = bytes.len() / 3;
            bytes[at] ^= 0x10;
            std::fs::write(&f, bytes).unwrap();
        }
        // Four jobs at once over the damaged outputs, each with retries.
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| counts.collect())).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap().err())
                .map(|e| format!("{e:?}"))
                .collect()
        });
        for e in &errors {
            assert!(e.starts_with("SpillDamaged"), "trial {trial}: {e}");
        }
        let got = counts.collect().unwrap();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().all(|&(_, c)| c == 100));
    }
}

#[test]
fn a_tiny_limit_with_many_partitions_keeps_a_small_index() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1, dir.path());
    // 1M pairs (16 MB as records) into 1000 reduce partitions: runs of a few records each
    // would hold more index than records.
    let before = heap::live();
    let shuffled = ctx
        .range(0..1_000_000, 2)
        .map(|x| (x.wrapping_mul(0x9E37_79B9_7F4A_7C15), x))
        .partition_by(Partitioner::hash(1000));
    assert_eq!(shuffled.count().unwrap(), 1_000_000);
    let held = heap::live() - before;
    eprintln!("held while the spilled shuffle lives: {} KB", held >> 10);
    assert!(
        held < 4 * MB,
        "the spilled shuffle holds {} MB of the heap",
        held / MB
    );
}

/// An iterative job's step: each iteration shuffles `ranks` and caches the result.
/// Iterations that keep every iteration's shuffle reachable: the caller holds each
/// `reduce_by_key` result (without such handles, outputs that only a cache's recovery
/// could read are released even without a limit; `shuffles_only_recovery_needs_are_released`).
fn iterate(ctx: &Context, iterations: usize, nodes: u64, mut at: impl FnMut(usize)) -> f64 {
    let mut reduced = Vec::with_capacity(iterations);
    let mut ranks = ctx
        .range(0..nodes, 4)
        .map(|i| (i, 1.0f64))
        .partition_by(Partitioner::hash(4))
        .cache();
    for i in 1..=iterations {
        let sums = ranks
            .map(move |(k, v)| ((k.wrapping_mul(31) + 7) % nodes, v * 0.85))
            .reduce_by_key_with(Partitioner::hash(4), |a, b| a + b);
        reduced.push(sums.clone());
        let next = sums.map_values(|v| v + 0.15).cache();
        next.count().unwrap();
        ranks.unpersist();
        ranks = next;
        at(i);
    }
    ranks.values().fold(0.0, |a, b| a + b).unwrap()
}

#[test]
fn an_iterative_job_under_a_limit_keeps_its_memory_flat() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Each iteration's shuffle holds 100,000 (u64, f64) pairs (1.6 MB), reachable from a
    // handle the caller keeps: without a limit, 200 iterations keep 200 of them.
    let ctx = limited(16 << 20, dir.path());
    let plain = Context::builder().threads(2).build().unwrap();
    let before = heap::live();
    let (mut at10, mut at200, mut stats) = (0, 0, ctx.memory_stats());
    let limited_sum = iterate(&ctx, 200, 100_000, |i| match i {
        10 => at10 = heap::live() - before,
        200 => {
            at200 = heap::live() - before;
            stats = ctx.memory_stats();
        }
        _ => {}
    });
    eprintln!(
        "heap above the start: {} MB at iteration 10, {} MB at 200; {} MB spilled in {} files",
        at10 / MB,
        at200 / MB,
        stats.spilled_bytes >> 20,
        stats.spill_files
    );
    assert!(
        at200 < 3 * at10,
        "200 iterations hold {} MB, 10 held {} MB",
        at200 / MB,
        at10 / MB
    );
    assert!(stats.budget_used <= 8 << 20, "{stats:?}");
    assert!(
        stats.spill_files > 100,
        "older shuffles went to disk: {stats:?}"
    );
    // The same ranks as without a limit.
    let before = heap::live();
    let mut plain_at200 = 0;
    let plain_sum = iterate(&plain, 200, 100_000, |i| {
        if i == 200 {
            plain_at200 = heap::live() - before;
        }
    });
    eprintln!("without a limit: {} MB at iteration 200", plain_at200 / MB);
    assert!(plain_at200 > 10 * at200, "the limit is what kept it flat");
    assert!(
        (limited_sum - plain_sum).abs() < 1e-6 * plain_sum,
        "{limited_sum} vs {plain_sum}"
    );
}

#[test]
fn the_oldest_kept_shuffle_goes_to_disk_to_make_room_for_a_new_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 4 MB limit: 2 MB for kept outputs; each shuffle below keeps ~1.3 MB.
    let ctx = limited(4 << 20, dir.path());
    let shuffle = |salt: u64| {
        ctx.range(0..80_000, 2)
            .map(move |x| (x ^ salt, x))
            .partition_by(Partitioner::hash(4))
    };
    let first = shuffle(1);
    assert_eq!(first.count().unwrap(), 80_000);
    assert_eq!(ctx.memory_stats().spill_files, 0, "the first fits");
    let second = shuffle(2);
    assert_eq!(second.count().unwrap(), 80_000);
    let stats = ctx.memory_stats();
    assert!(stats.spill_files > 0, "the first went to disk: {stats:?}");
    // Both still read back whole.
    let mut a = first.keys().collect().unwrap();
    a.sort_unstable();
    assert_eq!(
        a,
        (0..80_000)
            .map(|x| x ^ 1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(second.count().unwrap(), 80_000);
}

#[test]
fn many_small_shuffles_under_a_roomy_limit_leave_nothing_behind() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctx = limited(1 << 30, dir.path());
    let job = || {
        ctx.range(0..64, 8)
            .map(|x| (x % 7, x))
            .reduce_by_key_with(Partitioner::hash(4), |a, b| a + b)
            .count()
            .unwrap()
    };
    job();
    let before = heap::live();
    for _ in 0..4000 {
        assert_eq!(job(), 7);
    }
    let grown = heap::live() - before;
    assert!(
        grown < MB / 2,
        "4000 dropped shuffles left {} KB on the heap",
        grown >> 10
    );
}
