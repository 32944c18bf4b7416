//! Statistics of numeric RDDs (Spark's `DoubleRDDFunctions` and `StatCounter`): `sum`,
//! `mean`, `variance`, `stdev`, their sample forms, `stats` and `histogram`.
//!
//! As in Spark, every element is taken as an `f64`, and the results are `f64`: for exact
//! integer sums use `reduce` or `fold`.

use std::fmt;

use crate::context::ContextInner;
use crate::error::{Error, Result};
use crate::scheduler::wire::Wire;
use crate::{Data, Rdd};

/// A number whose RDD has statistics: the primitive integers and floats, taken as `f64`
/// (Spark's `numericRDDToDoubleRDDFunctions`).
pub trait Numeric: Data + Copy {
    /// The value as an `f64` (integers above 2^53 round).
    fn to_f64(self) -> f64;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
numeric!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

/// Count, mean, variance, minimum and maximum of numbers, computed in one pass and merged
/// across partitions (Spark's `StatCounter`, with the same update and merge formulas).
#[derive(Clone, Copy, PartialEq)]
pub struct StatCounter {
    n: u64,
    mu: f64,
    m2: f64,
    max: f64,
    min: f64,
}

impl Wire for StatCounter {
    fn put(&self, ctx: &ContextInner, out: &mut Vec<u8>) -> Result<()> {
        (self.n, (self.mu, self.m2), (self.max, self.min)).put(ctx, out)
    }
    fn take(ctx: &ContextInner, bytes: &mut &[u8]) -> Result<Self> {
        let (n, (mu, m2), (max, min)) = Wire::take(ctx, bytes)?;
        Ok(StatCounter {
            n,
            mu,
            m2,
            max,
            min,
        })
    }
}

impl Default for StatCounter {
    fn default() -> Self {
        StatCounter {
            n: 0,
            mu: 0.0,
            m2: 0.0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
        }
    }
}

impl StatCounter {
    /// A counter of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> StatCounter {
        let mut s = StatCounter::default();
        for v in values {
            s.add(v);
        }
        s
    }

    /// Adds one value.
    pub fn add(&mut self, value: f64) {
        let delta = value - self.mu;
        self.n += 1;
        self.mu += delta / self.n as f64;
        self.m2 += delta * (value - self.mu);
        self.max = self.max.max(value);
        self.min = self.min.min(value);
    }

    /// Merges another counter into this one.
    pub fn merge(&mut self, other: &StatCounter) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (n, m) = (self.n as f64, other.n as f64);
        let delta = other.mu - self.mu;
        self.mu = if m * 10.0 < n {
            self.mu + (delta * m) / (n + m)
        } else if n * 10.0 < m {
            other.mu - (delta * n) / (n + m)
        } else {
            (self.mu * n + other.mu * m) / (n + m)
        };
        self.m2 += other.m2 + (delta * delta * n * m) / (n + m);
        self.n += other.n;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
    }

    /// How many values.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Their mean (`NaN` for none).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.mu
        }
    }

    /// Their sum (count × mean; 0 for none).
    pub fn sum(&self) -> f64 {
        self.n as f64 * self.mu
    }

    /// The largest (`-inf` for none).
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The smallest (`+inf` for none).
    pub fn min(&self) -> f64 {
        self.min
    }

    /// The population variance, dividing by n (`NaN` for none).
    pub fn variance(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.m2 / self.n as f64
        }
    }

    /// The sample variance, dividing by n - 1 (`NaN` below two values).
    pub fn sample_variance(&self) -> f64 {
        if self.n <= 1 {
            f64::NAN
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }

    /// The population standard deviation.
    pub fn stdev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The sample standard deviation.
    pub fn sample_stdev(&self) -> f64 {
        self.sample_variance().sqrt()
    }
}

impl fmt::Debug for StatCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(count: {}, mean: {}, stdev: {}, max: {}, min: {})",
            self.n,
            self.mean(),
            self.stdev(),
            self.max,
            self.min
        )
    }
}

impl<T: Numeric> Rdd<T> {
    /// The sum of the elements as `f64`, added in partition order (0 for an empty RDD).
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// assert_eq!(ctx.range(1..5, 2).sum()?, 10.0);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job.
    pub fn sum(&self) -> Result<f64> {
        let parts = self.run_all(|_, it| Ok(it.fold(0.0, |a, x| a + x.to_f64())))?;
        Ok(parts.into_iter().fold(0.0, |a, b| a + b))
    }

    /// Count, mean, variance, max and min in one job.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let s = ctx.parallelize(vec![2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 3).stats()?;
    /// assert_eq!((s.count(), s.mean(), s.stdev()), (8, 5.0, 2.0));
    /// assert_eq!((s.min(), s.max()), (2.0, 9.0));
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// Any error of the job.
    pub fn stats(&self) -> Result<StatCounter> {
        let parts = self.run_all(|_, it| {
            let mut s = StatCounter::default();
            for x in it {
                s.add(x.to_f64());
            }
            Ok(s)
        })?;
        let mut total = StatCounter::default();
        for p in &parts {
            total.merge(p);
        }
        Ok(total)
    }

    /// The mean (`NaN` for an empty RDD).
    ///
    /// # Errors
    /// Any error of the job.
    pub fn mean(&self) -> Result<f64> {
        Ok(self.stats()?.mean())
    }

    /// The population variance (`NaN` for an empty RDD).
    ///
    /// # Errors
    /// Any error of the job.
    pub fn variance(&self) -> Result<f64> {
        Ok(self.stats()?.variance())
    }

    /// The population standard deviation (`NaN` for an empty RDD).
    ///
    /// # Errors
    /// Any error of the job.
    pub fn stdev(&self) -> Result<f64> {
        Ok(self.stats()?.stdev())
    }

    /// The sample variance, dividing by n - 1 (`NaN` below two elements).
    ///
    /// # Errors
    /// Any error of the job.
    pub fn sample_variance(&self) -> Result<f64> {
        Ok(self.stats()?.sample_variance())
    }

    /// The sample standard deviation (`NaN` below two elements).
    ///
    /// # Errors
    /// Any error of the job.
    pub fn sample_stdev(&self) -> Result<f64> {
        Ok(self.stats()?.sample_stdev())
    }

    /// A histogram of `bucket_count` even buckets between the minimum and the maximum
    /// (Spark's `histogram(bucketCount)`): returns the `bucket_count + 1` edges and the
    /// counts. Each bucket is `[edge_i, edge_i+1)`, the last one closed: the maximum counts
    /// in it. When all elements are equal there is one bucket, `[v, v]`. `NaN` elements are
    /// not counted.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let (edges, counts) = ctx.parallelize(vec![1.0, 2.0, 3.0, 4.0, 10.0], 2).histogram(3)?;
    /// assert_eq!(edges, vec![1.0, 4.0, 7.0, 10.0]);
    /// assert_eq!(counts, vec![3, 1, 1]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero buckets, or an RDD that is empty or holds an
    /// infinity or only `NaN`s (no range to divide); any error of the jobs.
    pub fn histogram(&self, bucket_count: usize) -> Result<(Vec<f64>, Vec<u64>)> {
        if bucket_count == 0 {
            return Err(Error::InvalidArgument(
                "histogram: the number of buckets must be at least 1".to_string(),
            ));
        }
        let bounds = self.run_all(|_, it| {
            Ok(it.fold((f64::NEG_INFINITY, f64::INFINITY), |(hi, lo), x| {
                let x = x.to_f64();
                (hi.max(x), lo.min(x))
            }))
        })?;
        let (max, min) = bounds
            .into_iter()
            .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), (c, d)| {
                (a.max(c), b.min(d))
            });
        if !min.is_finite() || !max.is_finite() {
            return Err(Error::InvalidArgument(
                "histogram: the RDD is empty or holds an infinity or only NaN, so it has no \
                 range to divide into buckets"
                    .to_string(),
            ));
        }
        let edges: Vec<f64> = if min == max {
            vec![min, min]
        } else {
            let span = max - min;
            (0..bucket_count)
                .map(|i| min + (i as f64 * span) / bucket_count as f64)
                .chain(std::iter::once(max))
                .collect()
        };
        let count = edges.len() - 1;
        let counts = self.bucket_counts(count, move |e| {
            if e.is_nan() || e < min || e > max {
                None
            } else if max == min {
                Some(0)
            } else {
                let b = (((e - min) / (max - min)) * count as f64) as usize;
                Some(b.min(count - 1))
            }
        })?;
        Ok((edges, counts))
    }

    /// Counts the elements in the buckets between consecutive `edges` (Spark's
    /// `histogram(buckets)`): `[1, 10, 20, 50]` makes the buckets `[1, 10)`, `[10, 20)` and
    /// `[20, 50]`, the last one closed. Elements outside the edges, and `NaN`, are not
    /// counted.
    ///
    /// ```
    /// # let ctx = flintlock::Context::new();
    /// let rdd = ctx.parallelize(vec![1.0, 10.0, 19.9, 50.0, 51.0], 2);
    /// assert_eq!(rdd.histogram_with(&[1.0, 10.0, 20.0, 50.0])?, vec![1, 2, 1]);
    /// # Ok::<(), flintlock::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for fewer than two edges, or edges that are not finite
    /// and strictly increasing; any error of the job.
    pub fn histogram_with(&self, edges: &[f64]) -> Result<Vec<u64>> {
        if edges.len() < 2
            || edges.iter().any(|e| e.is_nan())
            || edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Error::InvalidArgument(format!(
                "histogram: the bucket edges must be at least two, strictly increasing and not \
                 NaN, got {edges:?}"
            )));
        }
        let edges = edges.to_vec();
        let count = edges.len() - 1;
        self.bucket_counts(count, move |e| {
            if e.is_nan() || e < edges[0] || e > edges[count] {
                return None;
            }
            // The first edge above `e`; `e` on the last edge goes to the last bucket.
            let above = edges.partition_point(|&b| b <= e);
            Some(above.saturating_sub(1).min(count - 1))
        })
    }

    fn bucket_counts(
        &self,
        count: usize,
        bucket: impl Fn(f64) -> Option<usize> + Send + Sync,
    ) -> Result<Vec<u64>> {
        let parts = self.run_all(|_, it| {
            let mut counts = vec![0u64; count];
            for x in it {
                if let Some(b) = bucket(x.to_f64()) {
                    counts[b] += 1;
                }
            }
            Ok(counts)
        })?;
        let mut total = vec![0u64; count];
        for p in parts {
            for (t, c) in total.iter_mut().zip(p) {
                *t += c;
            }
        }
        Ok(total)
    }
}
