//! Checkpoints of plain numbers (the integers, floats and pairs of them that flintlock
//! encodes with its own postcard-compatible codec) read back exactly what was written,
//! through real part files: every varint length (one to ten bytes, signed and unsigned),
//! frames filled and split at every size, several partitions, and `f64`s compared by their
//! bits (NaNs, signed zeros, infinities).

use flintlock::{Compression, Context};
use proptest::prelude::*;

/// A value of every varint length: a random 64-bit value shifted right by 0..64 bits.
fn spread() -> impl Strategy<Value = u64> {
    (any::<u64>(), 0u32..64).prop_map(|(x, s)| x >> s)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<u64>().prop_map(f64::from_bits),
    ]
}

/// Pairs with their floats as bits, to compare NaNs and signed zeros exactly.
fn bits(v: &[(u64, f64)]) -> Vec<(u64, u64)> {
    v.iter().map(|&(a, x)| (a, x.to_bits())).collect()
}

fn context(dir: &std::path::Path, compression: Compression) -> Context {
    Context::builder()
        .threads(2)
        .checkpoint_dir(dir)
        .checkpoint_fsync(false)
        .checkpoint_compression(compression)
        .build()
        .unwrap()
}

/// (Each type here is one the codec recognises: `u64`, `f64`, `i64`, `(i32, u32)`, `u16`.)
///
/// Checkpoints `data` in `parts` partitions, then reads the committed files back in a new
/// context; returns both reads (the RDD's own after the checkpoint, and the reopened one).
fn write_and_read<T>(data: Vec<T>, parts: usize) -> (Vec<T>, Vec<T>)
where
    T: flintlock::Data + serde::Serialize + serde::de::DeserializeOwned,
{
    write_and_read_with(data, parts, Compression::None)
}

/// [`write_and_read`] with the part files' frames compressed as `compression` says.
fn write_and_read_with<T>(data: Vec<T>, parts: usize, compression: Compression) -> (Vec<T>, Vec<T>)
where
    T: flintlock::Data + serde::Serialize + serde::de::DeserializeOwned,
{
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), compression);
    let rdd = ctx.parallelize(data, parts);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().expect("committed");
    // Every byte as written: each frame's checksum, and each file's checksum (computed in
    // one pass over the whole file here, where the writer derives it from its frames')
    // against the manifest's.
    let report = flintlock::checkpoint::admin::verify(&path).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.parts_checked, parts);
    let own = rdd.collect().unwrap();
    let other = context(dir.path(), compression);
    let reopened = other
        .open_checkpoint::<T>(&path)
        .unwrap()
        .collect()
        .unwrap();
    (own, reopened)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn pairs_of_every_varint_length_and_any_float_read_back_bit_for_bit(
        data in proptest::collection::vec((spread(), float()), 0..30_000),
        parts in 1usize..5,
    ) {
        let (own, reopened) = write_and_read(data.clone(), parts);
        prop_assert_eq!(bits(&own), bits(&data));
        prop_assert_eq!(bits(&reopened), bits(&data));
    }

    /// The same with LZ4-compressed frames: each file's checksum, which the writer derives
    /// from its compressed frames', matches `verify`'s one pass over the file.
    #[test]
    fn compressed_pairs_read_back_bit_for_bit(
        data in proptest::collection::vec((spread(), float()), 0..30_000),
        parts in 1usize..5,
    ) {
        let (own, reopened) = write_and_read_with(data.clone(), parts, Compression::Lz4);
        prop_assert_eq!(bits(&own), bits(&data));
        prop_assert_eq!(bits(&reopened), bits(&data));
    }

    #[test]
    fn signed_and_narrow_integers_read_back_exactly(
        data in proptest::collection::vec((spread(), any::<bool>()), 0..20_000),
        parts in 1usize..5,
    ) {
        let wide: Vec<i64> = data.iter().map(|&(a, neg)| if neg { !(a as i64) } else { a as i64 }).collect();
        let (own, reopened) = write_and_read(wide.clone(), parts);
        prop_assert_eq!(&own, &wide);
        prop_assert_eq!(&reopened, &wide);
        let narrow: Vec<(i32, u32)> = data
            .iter()
            .map(|&(a, neg)| (if neg { !(a as i32) } else { a as i32 }, (a >> 3) as u32))
            .collect();
        let (own, reopened) = write_and_read(narrow.clone(), parts);
        prop_assert_eq!(&own, &narrow);
        prop_assert_eq!(&reopened, &narrow);
        let shorts: Vec<u16> = data.iter().map(|&(a, _)| a as u16).collect();
        let (own, reopened) = write_and_read(shorts.clone(), parts);
        prop_assert_eq!(&own, &shorts);
        prop_assert_eq!(&reopened, &shorts);
    }
}
