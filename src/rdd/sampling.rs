//! Deterministic randomness for `sample`, `repartition` and `sort_by_key`'s bound sampling.
//!
//! The generator is splitmix64, written here so its sequence never changes. Poisson draws
//! (sampling with replacement) come from `rand_distr` (pinned to an exact version, because
//! its algorithms define the values), fed by that generator: Knuth's method below a mean of
//! 12 and Hörmann's PTRS rejection above, so a large fraction such as 2000 draws correctly
//! instead of underflowing `exp(-mean)`. A pinned test vector notices any change.

use std::convert::Infallible;

use rand_distr::Distribution;

use super::iter::{Filtered, FlatMapped};
use super::node::BoxedPartitionIter;

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
