//! Hand-written PageRank references for the benchmarks, with exactly the semantics of the
//! engine's job (`job.rs`): distinct edges, `0.15 + 0.85 * sum`, and a node without in-edges
//! loses its rank after the first iteration.
//!
//! - [`rayon_hash`]: the same algorithm with the same plan as the engine runs it, by hand:
//!   `distinct` by the edge pair then grouping by source (two shuffles, as Spark's example),
//!   hash-partitioned `links` and `ranks` as hash maps, map-side combined contributions
//!   bucketed by target partition, merged per partition. This is the engine-overhead
//!   reference: what is left between it and the engine is the engine.
//! - [`csr`]: compressed sparse rows and flat arrays, pulling contributions along in-edges:
//!   the speed limit of the machine for this computation.
//!
//! Shared by `benches/pagerank.rs` and `examples/pagerank_rayon.rs` (included by path).
#![allow(dead_code)]

use flintlock::Partitioner;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

/// The engine's algorithm by hand over `partitions` hash partitions.
pub fn rayon_hash(edges: &[(u64, u64)], iterations: usize, partitions: usize) -> Vec<(u64, f64)> {
    let p = Partitioner::hash(partitions);
    let part = |k: &u64| p.partition_of(k);
    // The same plan as Spark's example (and so the engine): `distinct` shuffles the edges by
    // the whole pair and dedups each partition, then `groupByKey` shuffles them by source.
    let by_pair: Vec<Vec<Vec<(u64, u64)>>> = edges
        .par_chunks(edges.len().div_ceil(partitions).max(1))
        .map(|chunk| {
            let mut b: Vec<Vec<(u64, u64)>> = vec![Vec::new(); partitions];
            for e in chunk {
                b[p.partition_of(e)].push(*e);
            }
            b
        })
        .collect();
    let distinct: Vec<Vec<(u64, u64)>> = (0..partitions)
        .into_par_iter()
        .map(|q| {
            let mut seen: FxHashSet<(u64, u64)> = FxHashSet::default();
            for b in &by_pair {
                seen.extend(b[q].iter().copied());
            }
            seen.into_iter().collect()
        })
        .collect();
    drop(by_pair);
    let by_source: Vec<Vec<Vec<(u64, u64)>>> = distinct
        .par_iter()
        .map(|d| {
            let mut b: Vec<Vec<(u64, u64)>> = vec![Vec::new(); partitions];
            for e in d {
                b[part(&e.0)].push(*e);
            }
            b
        })
        .collect();
    drop(distinct);
    let links: Vec<FxHashMap<u64, Vec<u64>>> = (0..partitions)
        .into_par_iter()
        .map(|q| {
            let mut m: FxHashMap<u64, Vec<u64>> = FxHashMap::default();
            for b in &by_source {
                for &(s, d) in &b[q] {
                    m.entry(s).or_default().push(d);
                }
            }
            m
        })
        .collect();
    drop(by_source);
    let mut ranks: Vec<FxHashMap<u64, f64>> = links
        .par_iter()
        .map(|l| l.keys().map(|&k| (k, 1.0)).collect())
        .collect();
    for _ in 0..iterations {
        // Map side: contributions of each partition, combined per target, bucketed.
        let outputs: Vec<Vec<FxHashMap<u64, f64>>> = links
            .par_iter()
            .zip(ranks.par_iter())
            .map(|(l, r)| {
                let mut combined: FxHashMap<u64, f64> = FxHashMap::default();
                for (src, dsts) in l {
                    if let Some(rank) = r.get(src) {
                        let share = rank / dsts.len() as f64;
                        for d in dsts {
                            *combined.entry(*d).or_insert(0.0) += share;
                        }
                    }
                }
                let mut out: Vec<FxHashMap<u64, f64>> = vec![FxHashMap::default(); partitions];
                for (k, v) in combined {
                    out[part(&k)].insert(k, v);
                }
                out
            })
            .collect();
        // Reduce side: merge each target partition's buckets.
        ranks = (0..partitions)
            .into_par_iter()
            .map(|q| {
                let mut sums: FxHashMap<u64, f64> = FxHashMap::default();
                for o in &outputs {
                    for (k, v) in &o[q] {
                        *sums.entry(*k).or_insert(0.0) += v;
                    }
                }
                sums.into_iter()
                    .map(|(k, s)| (k, 0.15 + 0.85 * s))
                    .collect()
            })
            .collect();
    }
    let mut out: Vec<(u64, f64)> = ranks.into_iter().flatten().collect();
    out.sort_by_key(|p| p.0);
    out
}

/// PageRank over compressed sparse rows: flat arrays, contributions pulled along in-edges.
pub fn csr(edges: &[(u64, u64)], iterations: usize) -> Vec<(u64, f64)> {
    let mut e: Vec<(u32, u32)> = edges.iter().map(|&(s, d)| (s as u32, d as u32)).collect();
    e.par_sort_unstable_by_key(|&(s, d)| (d, s));
    e.dedup();
    let n = e
        .iter()
        .map(|&(s, d)| s.max(d) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut out_degree = vec![0u32; n];
    for &(s, _) in &e {
        out_degree[s as usize] += 1;
    }
    // In-edge rows: row d lists the sources of d.
    let mut row_start = vec![0usize; n + 1];
    for &(_, d) in &e {
        row_start[d as usize + 1] += 1;
    }
    for i in 0..n {
        row_start[i + 1] += row_start[i];
    }
    let sources: Vec<u32> = e.iter().map(|&(s, _)| s).collect();
    // Every node with out-edges starts ranked, as links.map_values(|_| 1.0).
    let mut rank: Vec<f64> = out_degree
        .iter()
        .map(|&d| if d > 0 { 1.0 } else { 0.0 })
        .collect();
    let mut ranked: Vec<bool> = out_degree.iter().map(|&d| d > 0).collect();
    let mut share = vec![0.0f64; n];
    for _ in 0..iterations {
        share.par_iter_mut().enumerate().for_each(|(s, x)| {
            *x = if ranked[s] {
                rank[s] / f64::from(out_degree[s])
            } else {
                0.0
            }
        });
        let next: Vec<(f64, bool)> = (0..n)
            .into_par_iter()
            .map(|d| {
                let mut sum = 0.0;
                let mut any = false;
                for &s in &sources[row_start[d]..row_start[d + 1]] {
                    if ranked[s as usize] {
                        sum += share[s as usize];
                        any = true;
                    }
                }
                (0.15 + 0.85 * sum, any)
            })
            .collect();
        for (d, (r, any)) in next.into_iter().enumerate() {
            rank[d] = r;
            ranked[d] = any;
        }
    }
    (0..n)
        .filter(|&d| ranked[d])
        .map(|d| (d as u64, rank[d]))
        .collect()
}
