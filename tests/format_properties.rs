//! The checkpoint decoders never panic on arbitrary bytes, and decoding inverts encoding
//! (10,000 cases each; `fuzz/` has cargo-fuzz targets for the same decoders).

use std::path::Path;

use flintlock::checkpoint::{
    Compression, ManifestBody, PartFile, PartHeader, PartInfo, SeriesEntry,
};
use flintlock::Partitioner;
use proptest::prelude::*;

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Lz4)]
}

fn part_file() -> impl Strategy<Value = PartFile> {
    (
        compression(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        "[a-z:<>(), ]{0,40}",
        proptest::collection::vec(
            (1u32..50, proptest::collection::vec(any::<u8>(), 0..300)),
            0..5,
        ),
    )
        .prop_map(
            |(compression, partition, rdd_id, write_id, type_name, frames)| {
                let header = PartHeader::new(partition, rdd_id, write_id, type_name, compression);
                PartFile::new(header, frames)
            },
        )
}

fn manifest() -> impl Strategy<Value = ManifestBody> {
    (
        any::<u64>(),
        any::<u64>(),
        "[a-z0-9-]{1,20}",
        "[a-z:<>(), ]{1,30}",
        compression(),
        proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u32>()), 0..6),
        any::<bool>(),
    )
        .prop_map(
            |(write_id, rdd_id, app_id, element_type, compression, parts, hashed)| {
                let n = parts.len();
                let parts = parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, (bytes, records, crc32c))| PartInfo::new(i, bytes, records, crc32c))
                    .collect();
                let mut m =
                    ManifestBody::new(write_id, rdd_id, app_id, element_type, compression, parts);
                m.partitioner = (hashed && n > 0).then(|| Partitioner::hash(n));
                m.written_at = (n % 3 == 0).then(|| "2026-12-02T01:40:00Z".to_string());
                m.series = (n % 2 == 0).then(|| {
                    SeriesEntry::new(
                        format!("s{n}"),
                        n as u64,
                        [("k".to_string(), format!("v{n}"))].into(),
                    )
                });
                m.element_layout =
                    (n % 2 == 1).then(|| format!("(u64, T{n}); struct T{n} {{ x: str }}"));
                m
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn decoding_arbitrary_bytes_as_a_part_file_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = PartFile::decode(&bytes, Path::new("fuzz"));
    }

    #[test]
    fn decoding_arbitrary_bytes_as_a_manifest_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ManifestBody::decode(&bytes, Path::new("fuzz"));
    }

    #[test]
    fn a_part_file_decodes_to_what_was_encoded(file in part_file()) {
        let bytes = file.encode();
        prop_assert_eq!(PartFile::decode(&bytes, Path::new("p")).unwrap(), file);
    }

    #[test]
    fn a_manifest_decodes_to_what_was_encoded(m in manifest()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(ManifestBody::decode(&bytes, Path::new("m")).unwrap(), m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Mutations of a valid file, which reach deeper than random bytes.
    #[test]
    fn a_damaged_part_file_is_an_error_never_a_panic(file in part_file(), at in any::<prop::sample::Index>(), x in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let bytes = file.encode();
        let mut flipped = bytes.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= x;
        prop_assert!(PartFile::decode(&flipped, Path::new("p")).is_err(), "flip at {} undetected", i);
        let n = cut.index(bytes.len());
        prop_assert!(PartFile::decode(&bytes[..n], Path::new("p")).is_err(), "truncation at {} undetected", n);
    }
}
