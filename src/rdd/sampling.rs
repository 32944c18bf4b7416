//! Deterministic randomness for `sample`, `repartition` and `sort_by_key`'s bound sampling.

use super::iter::{Filtered, FlatMapped};
use super::node::PartitionIter;

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

    /// A Poisson(`mean`) draw (Knuth's method; `mean` is a sampling fraction, small).
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.next_f64();
        while p > limit {
            k += 1;
            p *= self.next_f64();
        }
        k
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
    it: PartitionIter<T>,
    with_replacement: bool,
    fraction: f64,
    mut rng: SplitMix64,
) -> PartitionIter<T> {
    if with_replacement {
        FlatMapped::boxed(it, move |x| {
            let k = rng.poisson(fraction) as usize;
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
