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
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ta.push(time(&mut a).0);
        tb.push(time(&mut b).0);
    }
    (median(ta), median(tb))
}

/// Prints one ratio line in a fixed, greppable format.
pub fn report(name: &str, a_name: &str, a: f64, b_name: &str, b: f64) {
    println!(
        "RATIO {name}: {a_name} {:.1} ms, {b_name} {:.1} ms, {a_name}/{b_name} = {:.2}",
        a * 1e3,
        b * 1e3,
        a / b
    );
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
