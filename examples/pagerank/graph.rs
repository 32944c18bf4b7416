//! The built-in graph: a Rust port, bit for bit, of `shared/reference/gen_graph.py`, a
//! deterministic power-law-ish directed graph generator (splitmix64, integer arithmetic
//! only). `generate(10_000, 100_000, 42)` is the graph Spark's reference ranks were computed
//! on.
//!
//! Shared by `examples/pagerank`, its tests and `benches/pagerank.rs` (included by path).
#![allow(dead_code)]

use rustc_hash::FxHashSet;

/// splitmix64, exactly as in the Python reference.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Unbiased integer in `[0, n)` by rejection.
    fn below(&mut self, n: u64) -> u64 {
        let two64 = 1u128 << 64;
        let limit = two64 - (two64 % u128::from(n));
        loop {
            let x = self.next();
            if u128::from(x) < limit {
                return x % n;
            }
        }
    }
}

fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

fn gcd(mut x: u64, mut y: u64) -> u64 {
    while y != 0 {
        (x, y) = (y, x % y);
    }
    x
}

const OFFSET: u64 = 16;

/// The largest node and edge count [`generate`] takes.
pub const MAX_SIZE: u64 = 1_000_000_000;

/// Whether [`generate`] can build a graph of `nodes` nodes and `edges` edges; if not, what
/// to ask for instead (in the example's argument names).
pub fn check(nodes: u64, edges: u64) -> Result<(), String> {
    if nodes > MAX_SIZE {
        return Err(format!(
            "--nodes {nodes}: the built-in graph has at most {MAX_SIZE} nodes"
        ));
    }
    if edges > MAX_SIZE {
        return Err(format!(
            "--edge-count {edges}: the built-in graph has at most {MAX_SIZE} edges (about \
             16 bytes each in memory, several times over while links are built)"
        ));
    }
    if nodes < 2 {
        return Err(format!(
            "--nodes {nodes}: the built-in graph needs at least 2 nodes"
        ));
    }
    if edges < nodes {
        return Err(format!(
            "--edge-count {edges}: the built-in graph needs at least one edge per node \
             (--nodes {nodes})"
        ));
    }
    let most = u128::from(nodes) * u128::from(nodes - 1) / 2;
    if u128::from(edges) > most {
        return Err(format!(
            "--edge-count {edges}: too many edges for a simple graph of {nodes} nodes (at \
             most {most})"
        ));
    }
    Ok(())
}

/// The edges `(src, dst)` of the graph, in the generator's order: exactly `edges` of them,
/// no self-loops, no duplicates, every node with at least one out-edge.
pub fn generate(nodes: u64, edges: u64, seed: u64) -> Result<Vec<(u64, u64)>, String> {
    check(nodes, edges)?;
    let n = nodes;
    let mut rng = SplitMix64 { state: seed };
    let lo = bit_len(OFFSET) - 1;
    let hi = bit_len(n + OFFSET - 1) - 1;
    let span = u64::from(hi - lo + 1);
    let top = n + OFFSET;
    let skewed = |rng: &mut SplitMix64| loop {
        let k = lo + rng.below(span) as u32;
        let x = (1u64 << k) + rng.below(1u64 << k);
        if (OFFSET..top).contains(&x) {
            return x - OFFSET;
        }
    };
    let mut mult: u64 = 2_654_435_761;
    while gcd(mult, n) != 1 {
        mult += 2;
    }
    let add = n / 3;
    let dst_of =
        |i: u64| ((u128::from(i) * u128::from(mult) + u128::from(add)) % u128::from(n)) as u64;
    // Membership only: the hasher does not change the graph.
    let mut seen: FxHashSet<u128> =
        FxHashSet::with_capacity_and_hasher(edges as usize, Default::default());
    let mut out = Vec::with_capacity(edges as usize);
    for s in 0..n {
        let d = loop {
            let d = dst_of(skewed(&mut rng));
            if d != s {
                break d;
            }
        };
        seen.insert(u128::from(s) * u128::from(n) + u128::from(d));
        out.push((s, d));
    }
    while (out.len() as u64) < edges {
        let s = skewed(&mut rng);
        let d = dst_of(skewed(&mut rng));
        if s == d || !seen.insert(u128::from(s) * u128::from(n) + u128::from(d)) {
            continue;
        }
        out.push((s, d));
    }
    Ok(out)
}

/// The edge list as the reference writes it: `"src dst\n"` per edge.
pub fn to_text(edges: &[(u64, u64)]) -> String {
    let mut s = String::with_capacity(edges.len() * 12);
    for (a, b) in edges {
        s.push_str(&a.to_string());
        s.push(' ');
        s.push_str(&b.to_string());
        s.push('\n');
    }
    s
}
