//! `map_with_state` gives, batch by batch, exactly what a plain model of its semantics gives
//! (one call per record, a final call per timed-out key, the state after each batch), with
//! any partition count, checkpoint interval, timeout and restart; a batch calls the function
//! only for its own records; an empty state and an initial state restore like any other;
//! misuse of a timing-out state fails the batch and commits nothing.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flintlock::streaming::{
    self, ManualClock, RddQueue, State, StateSpec, StreamingContext, Until,
};
use flintlock::{Context, Error, Result};
use proptest::prelude::*;

type Batches = Vec<Vec<(u8, i32)>>;
/// Per batch: the calls' outputs (sorted) and the state after it.
type Run = BTreeMap<u64, (Vec<(u8, String)>, BTreeMap<u8, i64>)>;

/// The mapping function of these tests: a running sum, removed when a record is 0;
/// outputs say what happened.
fn sum(k: &u8, v: Option<i32>, state: &mut State<i64>) -> (u8, String) {
    match v {
        None => (*k, format!("timeout {}", state.get().unwrap())),
        Some(0) => {
            state.remove();
            (*k, "removed".to_string())
        }
        Some(v) => {
            let s = state.get().copied().unwrap_or(0) + i64::from(v);
            state.update(s);
            (*k, s.to_string())
        }
    }
}

/// The semantics, written plainly: records in order, each giving `sum`'s output, then
/// timeouts of keys idle for more than `idle` batches.
fn model(batches: &Batches, total: u64, idle: Option<u64>, initial: &[(u8, i64)]) -> Run {
    let mut state: BTreeMap<u8, (i64, u64)> = BTreeMap::new();
    for &(k, s) in initial {
        state.entry(k).or_insert((s, 0));
    }
    let mut out = Run::new();
    for b in 0..total {
        let mut mapped = Vec::new();
        for &(k, v) in batches.get(b as usize).map(Vec::as_slice).unwrap_or(&[]) {
            if v == 0 {
                state.remove(&k);
                mapped.push((k, "removed".to_string()));
            } else {
                let s = state.get(&k).map_or(0, |e| e.0) + i64::from(v);
                state.insert(k, (s, b));
                mapped.push((k, s.to_string()));
            }
        }
        if let Some(t) = idle {
            let expired: Vec<u8> = state
                .iter()
                .filter(|(_, (_, u))| b > u + t)
                .map(|(k, _)| *k)
                .collect();
            for k in expired {
                let (s, _) = state.remove(&k).unwrap();
                mapped.push((k, format!("timeout {s}")));
            }
        }
        mapped.sort();
        let snapshot = state.iter().map(|(k, (s, _))| (*k, *s)).collect();
        out.insert(b, (mapped, snapshot));
    }
    out
}

struct Case {
    batches: Batches,
    total: u64,
    partitions: usize,
    every: u32,
    timeout: Option<Duration>,
    initial: Vec<(u8, i64)>,
}

impl Case {
    fn build(&self, c: &Context, got: &Arc<Mutex<Run>>) -> Result<StreamingContext> {
        let mut batches = self.batches.clone();
        batches.resize(self.total as usize, Vec::new());
        let queue = RddQueue::from_rdds(batches.into_iter().map(|b| c.parallelize(b, 2)));
        let mut ssc = StreamingContext::new(c, Duration::from_secs(1)).clock(ManualClock::auto());
        let mut spec = StateSpec::function(sum)
            .partitions(self.partitions)
            .checkpoint_every(self.every);
        if let Some(t) = self.timeout {
            spec = spec.timeout(t);
        }
        if !self.initial.is_empty() {
            spec = spec.initial_state(c.parallelize(self.initial.clone(), 2));
        }
        let mws = ssc.queue_stream("in", queue).map_with_state("sums", spec);
        let out = got.clone();
        mws.foreach_rdd("mapped", move |rdd, batch| {
            let mut v = rdd.collect()?;
            v.sort();
            out.lock().unwrap().entry(batch.id).or_default().0 = v;
            Ok(())
        });
        let out = got.clone();
        mws.snapshots().foreach_rdd("snapshots", move |rdd, batch| {
            let snapshot: BTreeMap<u8, i64> = rdd.collect()?.into_iter().collect();
            out.lock().unwrap().entry(batch.id).or_default().1 = snapshot;
            Ok(())
        });
        Ok(ssc)
    }

    /// Runs the stream, restarted (a new context from the folder) after each batch of
    /// `restarts`.
    fn run(&self, dir: &Path, restarts: &[u64]) -> Run {
        let ctx = common::ctx();
        let got: Arc<Mutex<Run>> = Arc::default();
        for &at in restarts.iter().chain([&(self.total - 1)]) {
            let (mut s, _) =
                StreamingContext::get_or_create(&ctx, dir, |c| self.build(c, &got)).unwrap();
            s.run(Until::Committed(at)).unwrap();
        }

        got.lock().unwrap().clone()
    }
}

fn idle_batches(timeout: Option<Duration>) -> Option<u64> {
    timeout.map(|t| (t.as_millis() / 1000) as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_batch_is_the_models_with_any_settings_and_restarts(
        batches in prop::collection::vec(
            prop::collection::vec((0u8..12, -3i32..4), 0..8), 1..12),
        extra in 0u64..5,
        partitions in 1usize..4,
        every in 1u32..5,
        timeout_ms in prop::option::of(0u64..4500),
        restarts in prop::collection::vec(0u64..16, 0..3),
        initial in prop::collection::vec((0u8..12, -5i64..5), 0..4),
    ) {
        let total = batches.len() as u64 + extra;
        let mut restarts: Vec<u64> = restarts.into_iter().filter(|&r| r + 1 < total).collect();
        restarts.sort();
        restarts.dedup();
        let case = Case {
            batches,
            total,
            partitions,
            every,
            timeout: timeout_ms.map(Duration::from_millis),
            initial,
        };
        let dir = tempfile::tempdir().unwrap();
        let got = case.run(&dir.path().join("ckpt"), &restarts);
        let want = model(&case.batches, total, idle_batches(case.timeout), &case.initial);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn a_batch_calls_the_function_only_for_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let calls = Arc::new(AtomicUsize::new(0));
    let initial: Vec<(u32, u64)> = (0..20_000).map(|k| (k, 1)).collect();
    let c2 = calls.clone();
    let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    ssc.checkpoint(dir.path()).unwrap();
    let queue =
        RddQueue::from_rdds((0..6u32).map(|b| ctx.parallelize(vec![(b, 1u64), (b + 7, 1)], 2)));
    let spec = StateSpec::function(move |_: &u32, v: Option<u64>, s: &mut State<u64>| {
        c2.fetch_add(1, Ordering::Relaxed);
        let n = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
        s.update(n);
        n
    })
    .initial_state(ctx.parallelize(initial, 4))
    .checkpoint_every(3);
    let mws = ssc.queue_stream("in", queue).map_with_state("counts", spec);
    let snapshot_sizes = Arc::new(Mutex::new(Vec::new()));
    let sizes = snapshot_sizes.clone();
    mws.foreach_rdd("out", |rdd, _| rdd.count().map(drop));
    mws.snapshots().foreach_rdd("sizes", move |rdd, _| {
        sizes.lock().unwrap().push(rdd.count()?);
        Ok(())
    });
    ssc.run(Until::Batches(6)).unwrap();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        12,
        "2 records a batch, 6 batches"
    );
    assert_eq!(*snapshot_sizes.lock().unwrap(), vec![20_000; 6]);
    // The checkpoint of batch 5 holds the whole state.
    let state = streaming::open_state::<u32, u64>(&ctx, dir.path(), "counts", 5).unwrap();
    let state: BTreeMap<u32, u64> = state.collect().unwrap().into_iter().collect();
    assert_eq!(state.len(), 20_000);
    assert_eq!((state[&0], state[&7], state[&13]), (2, 2, 1));
}

#[test]
fn an_empty_state_checkpoints_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        batches: vec![vec![]; 5],
        total: 9,
        partitions: 2,
        every: 2,
        timeout: None,
        initial: vec![],
    };
    let got = case.run(dir.path(), &[3, 5]);
    assert_eq!(got, model(&case.batches, 9, None, &[]));
    let batches = streaming::state_batches(&common::ctx(), dir.path(), "sums").unwrap();
    assert_eq!(batches, vec![7]);
    let state = streaming::open_state::<u8, i64>(&common::ctx(), dir.path(), "sums", 7).unwrap();
    assert_eq!(state.count().unwrap(), 0);
}

#[test]
fn updating_a_timing_out_state_fails_the_batch_and_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    let mut ssc = StreamingContext::new(&ctx, Duration::from_secs(1)).clock(ManualClock::auto());
    ssc.checkpoint(dir.path()).unwrap();
    let queue = RddQueue::from_rdds([ctx.parallelize(vec![(1u8, 1i64)], 1)]);
    let spec = StateSpec::function(|_: &u8, v: Option<i64>, s: &mut State<i64>| {
        // Wrong: tries to keep the key alive on its final call.
        s.update(v.unwrap_or(0));
    })
    .timeout(Duration::from_secs(1));
    let mws = ssc.queue_stream("in", queue).map_with_state("keep", spec);
    mws.foreach_rdd("out", |rdd, _| rdd.count().map(drop));
    let err = ssc.run(Until::Batches(5)).unwrap_err();
    match &err {
        Error::InvalidArgument(m) => {
            assert!(m.contains("`keep`") && m.contains("timing out"), "{m}")
        }
        other => panic!("expected InvalidArgument, got {other}"),
    }
    // The key idles in batch 1 and times out in batch 2: that batch fails.
    assert_eq!(ssc.last_committed(), Some(1));
}

#[test]
fn the_initial_state_is_there_from_batch_zero_and_times_out_like_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        batches: vec![vec![(3, 1)], vec![], vec![(4, 2)]],
        total: 6,
        partitions: 3,
        every: 2,
        timeout: Some(Duration::from_secs(2)),
        initial: vec![(3, 10), (4, 20), (5, 30), (5, 99)],
    };
    let got = case.run(dir.path(), &[1]);
    assert_eq!(got[&0].1, BTreeMap::from([(3, 11), (4, 20), (5, 30)]));
    assert_eq!(
        got[&3].0,
        vec![(3, "timeout 11".to_string()), (5, "timeout 30".to_string())]
    );
    assert_eq!(got, model(&case.batches, 6, Some(2), &case.initial));
}

#[test]
fn a_restart_with_another_partition_count_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Batches = (0..8).map(|b| vec![(b % 5, 1), (7, 2)]).collect();
    let ctx = common::ctx();
    let got: Arc<Mutex<Run>> = Arc::default();
    for (partitions, at) in [(2, 4), (5, 7)] {
        let case = Case {
            batches: batches.clone(),
            total: 8,
            partitions,
            every: 2,
            timeout: Some(Duration::from_secs(3)),
            initial: vec![],
        };
        let (mut s, _) =
            StreamingContext::get_or_create(&ctx, dir.path(), |c| case.build(c, &got)).unwrap();
        s.run(Until::Committed(at)).unwrap();
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got, model(&batches, 8, Some(3), &[]));
}

#[test]
fn a_timeout_changed_at_a_restart_applies_from_the_first_new_batch_with_final_calls() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = common::ctx();
    // Key 1 has a record only in batch 0; key 2 in every batch.
    let batches: Batches = (0..8)
        .map(|b| if b == 0 { vec![(1, 1)] } else { vec![(2, 1)] })
        .collect();
    let got: Arc<Mutex<Run>> = Arc::default();
    let mut changes = Vec::new();
    for (timeout, at) in [(None, 4), (Some(Duration::from_secs(1)), 7)] {
        let case = Case {
            batches: batches.clone(),
            total: 8,
            partitions: 2,
            every: 1000, // no state checkpoint: the restart rebuilds batches 0..=4
            timeout,
            initial: vec![],
        };
        let (mut s, recovery) =
            StreamingContext::get_or_create(&ctx, dir.path(), |c| case.build(c, &got)).unwrap();
        changes.extend(recovery.changes);
        s.run(Until::Committed(at)).unwrap();
    }
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].contains("timeout none → 1s"), "{changes:?}");
    let got = got.lock().unwrap().clone();
    // The rebuilt batches kept no timeout; batch 5 gives key 1 its final call.
    assert_eq!(
        got[&5].0,
        vec![(1, "timeout 1".to_string()), (2, "5".to_string())]
    );
    assert_eq!(got[&5].1, BTreeMap::from([(2, 5)]));
}
