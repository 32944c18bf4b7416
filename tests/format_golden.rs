//! Format version 1, pinned: small checkpoints written by flintlock 0.1 and committed under
//! `tests/data/golden-v1/` must keep decoding, bit-exactly, in every later version.
//!
//! Regenerate (only when deliberately changing the v1 writer, which should never happen):
//! `FLINTLOCK_REGENERATE_GOLDEN=1 cargo test --test format_golden -- --test-threads 1`.

use std::path::{Path, PathBuf};

use flintlock::checkpoint::{ManifestBody, PartFile, MANIFEST};
use flintlock::{Compression, Context, Partitioner};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden-v1")
        .join(name)
}

fn expected() -> Vec<(u64, String)> {
    (0..20u64).map(|i| (i, format!("value {i}"))).collect()
}

/// Writes the golden checkpoints when asked to; a no-op otherwise.
#[test]
fn regenerate_golden_files_when_asked() {
    if std::env::var("FLINTLOCK_REGENERATE_GOLDEN").is_err() {
        return;
    }
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
        let out = golden(name);
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

#[test]
fn golden_v1_files_reencode_bit_exactly() {
    for name in ["plain", "lz4"] {
        let dir = golden(name);
        let manifest_bytes = std::fs::read(dir.join(MANIFEST)).unwrap();
        let manifest = ManifestBody::decode(&manifest_bytes, &dir).unwrap();
        assert_eq!(manifest.version, 1);
        assert_eq!(
            manifest.encode().unwrap(),
            manifest_bytes,
            "{name} manifest"
        );
        for part in &manifest.parts {
            let bytes = std::fs::read(dir.join(&part.file)).unwrap();
            let file = PartFile::decode(&bytes, &dir.join(&part.file)).unwrap();
            assert_eq!(file.header.version, 1);
            assert_eq!(file.encode(), bytes, "{name} {}", part.file);
            assert_eq!(crc32c::crc32c(&bytes), part.crc32c);
        }
    }
}
