//! Deterministic randomness for `sample`, `repartition` and `sort_by_key`'s bound sampling.
//!
//! The generator is splitmix64, written here so its sequence never changes. Poisson draws
//! (sampling with replacement) come from `rand_distr` (pinned to an exact version, because
//! its algorithms define the values), fed by that generator: Knuth's method below a mean of
//! 12 and Hörmann's PTRS rejection above, so a large fraction such as 2000 draws correctly
//! instead of underflowing `exp(-mean)`. A pinned test vector notices any change.

use std::convert::Infallible;
use std::sync::Arc;

use rand_distr::Distribution;

use super::iter::{Filtered, FlatMapped};
use super::node::BoxedPartitionIter;
use super::{site, Rdd};
use crate::error::Result;
use crate::Data;

/// splitmix64 (Steele, Lea, Flood): tiny, fast, and the same sequence on every platform.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Lets `rand_distr` draw from splitmix64.
impl rand_core::TryRng for SplitMix64 {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The largest fraction `sample(true, ..)` accepts (`rand_distr`'s largest Poisson mean).
pub(crate) const MAX_POISSON_MEAN: f64 = rand_distr::Poisson::<f64>::MAX_LAMBDA;

/// Poisson(`mean`) draws; `mean` zero always draws zero.
pub(crate) struct PoissonDraws {
    dist: Option<rand_distr::Poisson<f64>>,
}

impl PoissonDraws {
    /// # Panics
    /// When `mean` is negative, not finite or above [`MAX_POISSON_MEAN`] (checked by
    /// `sample` before).
    pub(crate) fn new(mean: f64) -> Self {
        PoissonDraws {
            dist: (mean > 0.0).then(|| {
                rand_distr::Poisson::new(mean)
                    .unwrap_or_else(|e| panic!("Poisson mean {mean} out of range: {e}"))
            }),
        }
    }

    pub(crate) fn draw(&self, rng: &mut SplitMix64) -> u64 {
        // The distribution yields whole numbers as floats; `as` saturates.
        self.dist.as_ref().map_or(0, |d| d.sample(rng) as u64)
    }
}

/// The splitmix64 finaliser: a good 64-bit mixer.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Bernoulli sampling (each element kept with probability `fraction`) or Poisson sampling
/// (each element repeated Poisson(`fraction`) times).
pub(crate) fn sample_iter<T: Clone + 'static>(
    it: BoxedPartitionIter<T>,
    with_replacement: bool,
    fraction: f64,
    mut rng: SplitMix64,
) -> BoxedPartitionIter<T> {
    if with_replacement {
        let poisson = PoissonDraws::new(fraction);
        FlatMapped::boxed(it, move |x| {
            let k = poisson.draw(&mut rng) as usize;
            std::iter::repeat_n(x, k)
        })
    } else {
        Filtered::boxed(it, move |_| rng.next_f64() < fraction)
    }
}

/// A reservoir sample of at most `k` items, and how many items were seen.
pub(crate) fn reservoir<T>(it: impl Iterator<Item = T>, k: usize, seed: u64) -> (Vec<T>, u64) {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(k);
    let mut seen = 0u64;
    for x in it {
        seen += 1;
        if out.len() < k {
            out.push(x);
        } else {
            let j = rng.next_u64() % seen;
            if (j as usize) < k {
                out[j as usize] = x;
            }
        }
    }
    (out, seen)
}

/// Fisher–Yates shuffle driven by `rng` (Spark's `Utils.randomizeInRange`).
fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The sampling fraction that yields at least `num` of `total` elements with probability
/// 0.9999 (Spark's `SamplingUtils.computeFractionForSampleSize`).
fn fraction_for_sample_size(num: u64, total: u64, with_replacement: bool) -> f64 {
    let total = total as f64;
    let s = num as f64;
    if with_replacement {
        let std = if s < 6.0 {
            12.0
        } else if s < 16.0 {
            9.0
        } else {
            6.0
        };
        ((s + std * s.sqrt()).max(1e-10) / total).min(MAX_POISSON_MEAN)
    } else {
        let fraction = s / total;
        let gamma = -(1e-4f64).ln() / total;
        (fraction + gamma + (gamma * gamma + 2.0 * gamma * fraction).sqrt()).clamp(1e-10, 1.0)
    }
}

impl<T: Data> Rdd<T> {
    /// A random sample of exactly `num` elements (fewer if the RDD has fewer and
    /// `with_replacement` is false), in random order (Spark's `takeSample`). The same `seed`
    /// on the same data gives the same sample. It counts the RDD, then samples it with a
    /// fraction large enough to get `num` elements with probability 0.9999, repeating in
    /// the rare case it falls short.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..1000, 4);
    /// let s = rdd.take_sample(false, 10, 7)?;
    /// assert_eq!(s.len(), 10);
    /// assert_eq!(s, rdd.take_sample(false, 10, 7)?);
    /// assert_eq!(rdd.take_sample(false, 5000, 7)?.len(), 1000);
    /// assert_eq!(rdd.take_sample(true, 5000, 7)?.len(), 5000);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the jobs.
    pub fn take_sample(&self, with_replacement: bool, num: usize, seed: u64) -> Result<Vec<T>> {
        let mut rng = SplitMix64::new(seed);
        if num == 0 {
            return Ok(Vec::new());
        }
        let total = self.count()?;
        if total == 0 {
            return Ok(Vec::new());
        }
        if !with_replacement && num as u64 >= total {
            let mut all = self.collect()?;
            shuffle(&mut all, &mut rng);
            return Ok(all);
        }
        let fraction = fraction_for_sample_size(num as u64, total, with_replacement);
        let mut samples = self
            .sample(with_replacement, fraction, rng.next_u64())
            .collect()?;
        while samples.len() < num {
            samples = self
                .sample(with_replacement, fraction, rng.next_u64())
                .collect()?;
        }
        shuffle(&mut samples, &mut rng);
        samples.truncate(num);
        Ok(samples)
    }

    /// Splits the RDD randomly into one RDD per weight (Spark's `randomSplit`): each element
    /// goes to exactly one split, to split `i` with probability `weights[i] / sum`. Every
    /// split draws the same numbers per partition from `seed`, so the splits are disjoint
    /// and cover the RDD, provided each partition's elements come in the same order every
    /// time it is computed (cache the RDD if they might not).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.range(0..1000, 4);
    /// let parts = rdd.random_split(&[0.7, 0.3], 11);
    /// let (a, b) = (parts[0].collect()?, parts[1].collect()?);
    /// assert_eq!(a.len() + b.len(), 1000);
    /// assert!(a.iter().all(|x| !b.contains(x)));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Panics
    /// When a weight is negative or not finite, or all are zero.
    #[track_caller]
    #[must_use = "transformations are lazy: nothing runs until an action on the result"]
    pub fn random_split(&self, weights: &[f64], seed: u64) -> Vec<Rdd<T>> {
        assert!(
            weights.iter().all(|w| w.is_finite() && *w >= 0.0),
            "random_split: weights must be finite and not negative, got {weights:?}"
        );
        let sum: f64 = weights.iter().sum();
        assert!(
            sum > 0.0,
            "random_split: the weights must not all be zero, got {weights:?}"
        );
        let mut bounds = Vec::with_capacity(weights.len() + 1);
        let mut acc = 0.0;
        bounds.push(0.0);
        for w in weights {
            acc += w / sum;
            bounds.push(acc);
        }
        // The last bound is 1 exactly: rounding never leaves an element out.
        if let Some(last) = bounds.last_mut() {
            *last = 1.0;
        }
        let s = site("random_split");
        bounds
            .windows(2)
            .map(|w| {
                let (lo, hi) = (w[0], w[1]);
                self.map_partitions_op(
                    s,
                    true,
                    Arc::new(move |i, it| {
                        let mut rng = SplitMix64::new(seed ^ mix(i as u64 + 1));
                        Filtered::boxed(it, move |_| {
                            let x = rng.next_f64();
                            lo <= x && x < hi
                        })
                    }),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_reference_sequence() {
        // The published first outputs of splitmix64 seeded with 0 (Vigna's reference code).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn poisson_draws_are_pinned() {
        // Part of what a seed means: a change here changes every `sample(true, ..)` result
        // (a rand_distr upgrade that changed its algorithms, say).
        let mut r = SplitMix64::new(42);
        let small: Vec<u64> = (0..8)
            .map(|_| PoissonDraws::new(0.5).draw(&mut r))
            .collect();
        let large: Vec<u64> = (0..4)
            .map(|_| PoissonDraws::new(2000.0).draw(&mut r))
            .collect();
        assert_eq!(
            (small, large),
            (vec![1, 0, 0, 0, 1, 1, 1, 0], vec![2000, 2002, 2012, 1984])
        );
    }

    #[test]
    fn poisson_means_hold_for_small_and_large_fractions() {
        for mean in [0.0, 0.3, 1.0, 11.9, 12.0, 50.0, 2000.0, 1e6] {
            let d = PoissonDraws::new(mean);
            let mut r = SplitMix64::new(7);
            let n = 20_000;
            let total: u64 = (0..n).map(|_| d.draw(&mut r)).sum();
            let avg = total as f64 / n as f64;
            // Five standard errors of the mean.
            let tolerance = 5.0 * (mean / n as f64).sqrt() + 1e-9;
            assert!(
                (avg - mean).abs() <= tolerance,
                "mean {mean}: average {avg}"
            );
        }
    }
}
