//! Every released format version, pinned: small checkpoints committed under
//! `tests/data/golden-v<N>/` must keep decoding, bit-exactly, in every later version.
//! - v1: written by flintlock 0.1 (no layout in the manifest).
//! - v2: the element type's structural layout in the manifest.
//!
//! Regenerate the *current* version's files (only when deliberately changing its writer,
//! which should never happen once released):
//! `FLINTLOCK_REGENERATE_GOLDEN=1 cargo test --test checkpoint_format -- --ignored format_golden::`.

use std::path::{Path, PathBuf};

use flintlock::checkpoint::{ManifestBody, PartFile, FORMAT_VERSION, MANIFEST};
use flintlock::{Compression, Context, Partitioner};

fn golden_of(version: u32, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/golden-v{version}"))
        .join(name)
}

fn golden(name: &str) -> PathBuf {
    golden_of(1, name)
}

fn expected() -> Vec<(u64, String)> {
    (0..20u64).map(|i| (i, format!("value {i}"))).collect()
}

/// Writes the golden checkpoints of the current format version (only when a format
/// version is added: released versions' files never change).
#[test]
#[ignore = "writes the golden files: FLINTLOCK_REGENERATE_GOLDEN=1 cargo test --test checkpoint_format -- --ignored format_golden::"]
fn regenerate_golden_files_when_asked() {
    assert!(
        std::env::var("FLINTLOCK_REGENERATE_GOLDEN").is_ok(),
        "set FLINTLOCK_REGENERATE_GOLDEN=1 to overwrite tests/data/golden-v{FORMAT_VERSION}"
    );
    for (name, compression) in [("plain", Compression::None), ("lz4", Compression::Lz4)] {
        let scratch = tempfile::tempdir().unwrap();
        let ctx = Context::builder()
            .threads(1)
            .checkpoint_dir(scratch.path())
            .checkpoint_compression(compression)
            .build()
            .unwrap();
        let rdd = ctx
            .parallelize(expected(), 3)
            .partition_by(Partitioner::hash(2));
        rdd.checkpoint().unwrap();
        rdd.count().unwrap();
        let out = golden_of(FORMAT_VERSION, name);
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        for e in std::fs::read_dir(rdd.checkpoint_path().unwrap()).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn golden_v1_checkpoints_decode_to_their_records_and_partitioner() {
    let ctx = Context::builder().threads(1).build().unwrap();
    for name in ["plain", "lz4"] {
        let rdd = ctx.open_checkpoint::<(u64, String)>(golden(name)).unwrap();
        assert_eq!(rdd.partitioner(), Some(Partitioner::hash(2)), "{name}");
        let mut got = rdd.collect().unwrap();
        got.sort();
        assert_eq!(got, expected(), "{name}");
        // The same keys land in the same partitions as when the files were written.
        let parts = rdd.glom().collect().unwrap();
        for (i, part) in parts.iter().enumerate() {
            assert!(part
                .iter()
                .all(|(k, _)| Partitioner::hash(2).partition_of(k) == i));
        }
    }
}

/// Decodes every golden file of `version` and re-encodes it bit-exactly.
fn reencodes_bit_exactly(version: u32) {
    for name in ["plain", "lz4"] {
        let dir = golden_of(version, name);
        let manifest_bytes = std::fs::read(dir.join(MANIFEST)).unwrap();
        let manifest = ManifestBody::decode(&manifest_bytes, &dir).unwrap();
        assert_eq!(manifest.version, version);
        assert_eq!(
            manifest.encode().unwrap(),
            manifest_bytes,
            "{name} manifest"
        );
        for part in &manifest.parts {
            let bytes = std::fs::read(dir.join(&part.file)).unwrap();
            let file = PartFile::decode(&bytes, &dir.join(&part.file)).unwrap();
            assert_eq!(file.header.version, version);
            assert_eq!(file.encode(), bytes, "{name} {}", part.file);
            assert_eq!(crc32c::crc32c(&bytes), part.crc32c);
        }
    }
}

#[test]
fn golden_v1_files_reencode_bit_exactly() {
    reencodes_bit_exactly(1);
}

#[test]
fn golden_v2_files_reencode_bit_exactly() {
    reencodes_bit_exactly(2);
}

#[test]
fn golden_v2_checkpoints_decode_with_their_layout_and_partitioner() {
    let ctx = Context::builder().threads(1).build().unwrap();
    for name in ["plain", "lz4"] {
        let dir = golden_of(2, name);
        let manifest =
            ManifestBody::decode(&std::fs::read(dir.join(MANIFEST)).unwrap(), &dir).unwrap();
        assert_eq!(manifest.element_layout.as_deref(), Some("(u64, str)"));
        let rdd = ctx.open_checkpoint::<(u64, String)>(&dir).unwrap();
        assert_eq!(rdd.partitioner(), Some(Partitioner::hash(2)));
        let mut got = rdd.collect().unwrap();
        got.sort();
        assert_eq!(got, expected(), "{name}");
        // The reopened partitioner passes the placement check: a by-key operation on it
        // needs no shuffle.
        let reduced = rdd.reduce_by_key(|a, _| a);
        assert!(reduced.dependencies().iter().all(|d| !d.is_shuffle()));
        // A layout mismatch is named, not misread.
        let err = ctx.open_checkpoint::<(u64, u64)>(&dir).unwrap_err();
        assert!(err.to_string().contains("layouts differ"), "{err}");
    }
}
