//! Memory that nothing can read any more is freed (issue 17): a dropped RDD's shuffle
//! outputs and cached blocks go, not only out of `memory_stats` but out of the heap.
//!
//! Measured with a counting global allocator (live heap bytes), not the resident set: glibc
//! keeps freed mid-sized blocks in its arenas (its mmap threshold rises after large frees),
//! so the resident set after a drop says more about the allocator than about the engine.
//! The resident set is printed beside it for reference.

// The counting allocator is unsafe to implement; it only forwards to the system's.
#![allow(unsafe_code)]

#[path = "common/heap.rs"]
mod heap;

use std::sync::Mutex;

use flintlock::Context;
use heap::{resident_mb, MB};

/// The tests measure the whole process's heap: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn live_mb() -> isize {
    heap::live() / MB
}

/// 12.5M distinct keys: the map side gives up combining, and the shuffle output holds
/// every (u64, u64) pair: 200 MB.
fn big_shuffle(ctx: &Context) -> flintlock::Rdd<(u64, u64)> {
    ctx.range(0..12_500_000, 4)
        .map(|x| (x, 1u64))
        .reduce_by_key(|a, b| a + b)
}

#[test]
fn a_dropped_rdds_shuffle_output_is_freed() {
    let _serial = SERIAL.lock().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let before = live_mb();
    let counts = big_shuffle(&ctx);
    assert_eq!(counts.count().unwrap(), 12_500_000);
    let held = live_mb();
    assert_eq!(ctx.memory_stats().shuffles, 1);
    assert!(
        held > before + 150,
        "the shuffle output should be live: {before} -> {held} MB"
    );
    drop(counts);
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let after = live_mb();
    eprintln!(
        "heap: {before} MB before, {held} MB held, {after} MB after the drop (resident {} MB)",
        resident_mb()
    );
    assert!(
        after <= before + 2,
        "dropped, but {after} MB still live ({before} MB before)"
    );
}

#[test]
fn a_dropped_cached_rdds_blocks_are_freed() {
    let _serial = SERIAL.lock().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let before = live_mb();
    let cached = ctx.range(0..25_000_000, 4).map(|x| x ^ 0x5555).cache();
    assert_eq!(cached.count().unwrap(), 25_000_000);
    let held = live_mb();
    assert_eq!(ctx.memory_stats().cached_partitions, 4);
    assert!(
        held > before + 150,
        "the blocks should be live: {before} -> {held} MB"
    );
    drop(cached);
    assert_eq!(ctx.memory_stats().cached_partitions, 0);
    let after = live_mb();
    assert!(
        after <= before + 2,
        "dropped, but {after} MB still live ({before} MB before)"
    );
}

#[test]
fn a_cached_rdds_shuffle_output_is_freed_once_every_partition_is_stored() {
    let _serial = SERIAL.lock().unwrap();
    let ctx = Context::builder().threads(2).build().unwrap();
    let before = live_mb();
    // The same 200 MB shuffle, under a small cached result: once the cache holds every
    // partition, only the loss of a block could need the shuffle.
    let counts = big_shuffle(&ctx).filter(|(k, _)| k % 1_000 == 0).cache();
    assert_eq!(counts.count().unwrap(), 12_500);
    assert_eq!(ctx.memory_stats().shuffles, 0);
    let after = live_mb();
    eprintln!(
        "heap: {before} MB before, {after} MB with the cache (resident {} MB)",
        resident_mb()
    );
    assert!(
        after <= before + 2,
        "released, but {after} MB still live ({before} MB before)"
    );
    // And it reads back the same without the cache (the shuffle runs again).
    let cached = counts.collect().unwrap();
    counts.unpersist();
    assert_eq!(counts.collect().unwrap(), cached);
}
