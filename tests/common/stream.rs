//! A deterministic stateful word count for the streaming tests, and its model.
//!
//! Batch `b`'s input is a function of `(seed, b)`; the state of a word is its running count,
//! except that a word whose count reaches a multiple of 13 is removed (so removal is
//! covered). The sink gets `"<word> <count>"` for every word in the state after each batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flintlock::checkpoint::Storage;
use flintlock::streaming::{FileSink, ManualClock, RddQueue, State, StateSpec, StreamingContext};
use flintlock::{Context, Result};

/// splitmix64: the input generator.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Batch `b`'s words: 0 to 40 words of a 25-word vocabulary.
pub fn batch_words(seed: u64, b: u64) -> Vec<String> {
    let n = mix(seed ^ b.wrapping_mul(31)) % 41;
    (0..n)
        .map(|i| format!("w{}", mix(seed.wrapping_add(b << 20).wrapping_add(i)) % 25))
        .collect()
}

/// The update function of the stream (also used by the model).
pub fn update(new: &[u64], old: Option<u64>) -> Option<u64> {
    let n = old.unwrap_or(0) + new.iter().sum::<u64>();
    if n > 0 && n.is_multiple_of(13) {
        None
    } else {
        Some(n)
    }
}

/// The state after each of batches `0..batches`, computed directly.
pub fn model(seed: u64, batches: u64) -> Vec<BTreeMap<String, u64>> {
    let mut state: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for b in 0..batches {
        let mut new: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for w in batch_words(seed, b) {
            new.entry(w).or_default().push(1);
        }
        let keys: Vec<String> = state.keys().chain(new.keys()).cloned().collect();
        let mut next = BTreeMap::new();
        for k in keys {
            if next.contains_key(&k) {
                continue;
            }
            let values = new.get(&k).cloned().unwrap_or_default();
            if let Some(s) = update(&values, state.get(&k).copied()) {
                next.insert(k, s);
            }
        }
        state = next;
        out.push(state.clone());
    }
    out
}

/// The sink lines the model expects for one state, sorted.
pub fn lines_of(state: &BTreeMap<String, u64>) -> Vec<String> {
    let mut v: Vec<String> = state.iter().map(|(k, n)| format!("{k} {n}")).collect();
    v.sort();
    v
}

/// Options of the word-count stream.
#[derive(Clone)]
pub struct WordCount {
    pub seed: u64,
    pub batches: u64,
    pub every: u32,
    pub partitions: usize,
    pub storage: Option<Arc<dyn Storage>>,
    /// The stream's clock (default: a fresh `ManualClock::auto()`).
    pub clock: Option<ManualClock>,
    /// Also runs an incremental window (`reduce_by_key_and_window_inv`, 4 batches sliding
    /// by 2, with a filter) into sink `<out>-window` and `map_with_state` (3-batch
    /// timeout) into sink `<out>-mapped`, both on the same words.
    pub more_state: bool,
}

/// The sink folders of a word count writing to `out` with `more_state`: the window's and
/// `map_with_state`'s.
pub fn more_sinks(out: &Path) -> [std::path::PathBuf; 2] {
    let name = out.file_name().unwrap().to_string_lossy();
    [
        out.with_file_name(format!("{name}-window")),
        out.with_file_name(format!("{name}-mapped")),
    ]
}

impl WordCount {
    pub fn new(seed: u64, batches: u64, every: u32) -> WordCount {
        WordCount {
            seed,
            batches,
            every,
            partitions: 2,
            storage: None,
            clock: None,
            more_state: false,
        }
    }

    /// Builds the stream (for `get_or_create`), its sink writing to `out`.
    pub fn build(&self, ctx: &Context, out: &Path) -> Result<StreamingContext> {
        let queue = RddQueue::from_rdds(
            (0..self.batches).map(|b| ctx.parallelize(batch_words(self.seed, b), 2)),
        );
        let clock = self.clock.clone().unwrap_or_else(ManualClock::auto);
        let mut ssc = StreamingContext::new(ctx, Duration::from_secs(1)).clock(clock);
        let mut sink = FileSink::new(out);
        if let Some(s) = &self.storage {
            sink = sink.with_storage(s.clone());
        }
        let pairs = ssc.queue_stream("words", queue).map(|w| (w, 1u64));
        if self.more_state {
            let [window, mapped] = more_sinks(out);
            let sink = |p: std::path::PathBuf| match &self.storage {
                Some(s) => FileSink::new(p).with_storage(s.clone()),
                None => FileSink::new(p),
            };
            pairs
                .map_values(|n| n as i64)
                .reduce_by_key_and_window_inv(
                    "window",
                    |a, b| a + b,
                    |a, b| a - b,
                    Duration::from_secs(4),
                    Duration::from_secs(2),
                    Some(Box::new(|_, n| *n != 0)),
                )
                .checkpoint_every(3)
                .partitions(self.partitions)
                .map(|(w, n)| format!("{w} {n}"))
                .sink("window-out", sink(window));
            let spec =
                StateSpec::function(|w: &String, v: Option<u64>, s: &mut State<u64>| match v {
                    Some(v) => {
                        let n = s.get().copied().unwrap_or(0) + v;
                        s.update(n);
                        format!("{w} {n}")
                    }
                    None => format!("{w} timeout {}", s.get().unwrap()),
                })
                .timeout(Duration::from_secs(3))
                .checkpoint_every(self.every)
                .partitions(self.partitions + 1);
            pairs
                .map_with_state("mapped", spec)
                .sink("mapped-out", sink(mapped));
        }
        pairs
            .update_state_by_key("counts", |_, new: Vec<u64>, old: Option<u64>| {
                update(&new, old)
            })
            .checkpoint_every(self.every)
            .partitions(self.partitions)
            .map(|(w, n)| format!("{w} {n}"))
            .sink("out", sink);
        Ok(ssc)
    }
}

/// The sorted lines of a committed sink batch (`None` when not committed).
pub fn sink_lines(out: &Path, batch: u64) -> Option<Vec<String>> {
    let mut v = FileSink::new(out)
        .read_batch(batch)
        .expect("a committed batch reads back")?;
    v.sort();
    Some(v)
}

/// Asserts that sink folder `out` holds the batches of `range` exactly as the model of
/// `seed` says, and nothing at `range.end`; `case` names the case in a failure.
pub fn assert_sink_is_model(out: &Path, seed: u64, range: std::ops::Range<u64>, case: &str) {
    let m = model(seed, range.end);
    for b in range.clone() {
        assert_eq!(
            sink_lines(out, b),
            Some(lines_of(&m[b as usize])),
            "{case}: sink batch {b}"
        );
    }
    assert_eq!(
        sink_lines(out, range.end),
        None,
        "{case}: no batch beyond the run"
    );
}

/// Every file below `dir` (relative paths), sorted.
pub fn files(dir: &Path) -> Vec<String> {
    super::files_below(dir)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}
