//! Timing helpers shared by the benches: ratios measured in the same run, interleaved, so a
//! noisy machine affects both sides alike.
#![allow(dead_code)]

use std::time::Instant;

/// Seconds of one call of `f`.
pub fn time<R>(f: impl FnOnce() -> R) -> (f64, R) {
    let start = Instant::now();
    let r = f();
    (start.elapsed().as_secs_f64(), r)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `a` and `b` alternately `reps` times after one warm-up each; returns the medians.
pub fn interleaved<A, B>(
    reps: usize,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (f64, f64) {
    let (ta, tb) = paired(reps, &mut a, &mut b);
    (median(ta), median(tb))
}

fn paired<A, B>(
    reps: usize,
    a: &mut impl FnMut() -> A,
    b: &mut impl FnMut() -> B,
) -> (Vec<f64>, Vec<f64>) {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ta.push(time(&mut *a).0);
        tb.push(time(&mut *b).0);
    }
    (ta, tb)
}

/// Runs `a` and `b` alternately `reps` times after one warm-up each and prints one `RATIO`
/// line: both medians, and the median of the ratios of the pairs run back to back, with its
/// quartiles. On a shared machine whose speed drifts over minutes, the pairwise median is
/// the robust figure (a ratio of two medians mixes different moments). Returns the medians.
pub fn compare<A, B>(
    reps: usize,
    name: &str,
    a_name: &str,
    mut a: impl FnMut() -> A,
    b_name: &str,
    mut b: impl FnMut() -> B,
) -> (f64, f64) {
    let (ta, tb) = paired(reps, &mut a, &mut b);
    let ratios: Vec<f64> = ta.iter().zip(&tb).map(|(x, y)| x / y).collect();
    let (q1, mid, q3) = quartiles(ratios);
    let (ma, mb) = (median(ta), median(tb));
    println!(
        "RATIO {name}: {a_name} {:.1} ms, {b_name} {:.1} ms, {a_name}/{b_name} = {mid:.2} \
         (median of {reps} back-to-back pairs; quartiles {q1:.2}-{q3:.2})",
        ma * 1e3,
        mb * 1e3,
    );
    (ma, mb)
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

/// Runs each closure alternately `reps` times after one warm-up each; returns the medians.
pub fn interleaved_n(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    for f in fs.iter_mut() {
        f();
    }
    let mut times = vec![Vec::new(); fs.len()];
    for _ in 0..reps {
        for (i, f) in fs.iter_mut().enumerate() {
            times[i].push(time(&mut *f).0);
        }
    }
    times.into_iter().map(median).collect()
}
