//! A damaged, incomplete or foreign checkpoint is a clear error naming the file and what
//! was expected — never a panic, never wrong data.

use crate::common;

use std::path::{Path, PathBuf};

use common::backend::{copy_dir, read, remove, write};
use common::ctx_with_dir;
use flintlock::checkpoint::{ManifestBody, PartFile, PartHeader, MANIFEST};
use flintlock::{Context, Error};

/// Writes a small checkpoint of `(u64, f64)` and returns its folder.
fn write_checkpoint(ctx: &Context) -> PathBuf {
    let rdd = ctx.range(0..300, 3).map(|x| (x, x as f64 / 2.0));
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.checkpoint_path().unwrap()
}

/// Copies checkpoint folder `base` to `dest`, puts the file `source` in place of `part`
/// there, and returns the error of opening and reading the copy.
fn read_with_part_replaced(
    ctx: &Context,
    base: &Path,
    dest: &Path,
    part: &str,
    source: &Path,
) -> Error {
    copy_dir(base, dest);
    write(&dest.join(part), &read(source));
    read_err(ctx, dest)
}

/// Opens and reads a checkpoint folder, returning the error.
fn read_err(ctx: &Context, path: &Path) -> Error {
    match ctx.open_checkpoint::<(u64, f64)>(path) {
        Err(e) => e,
        Ok(rdd) => rdd.collect().expect_err("the damage must be detected"),
    }
}

#[test]
fn a_folder_without_a_manifest_is_not_committed() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    remove(&path.join(MANIFEST));
    let err = read_err(&ctx, &path);
    assert!(matches!(err, Error::NotCommitted { .. }), "{err}");
    assert!(err.to_string().contains("_manifest.json"));
}

#[test]
fn a_missing_folder_is_an_error_naming_it() {
    let ctx = common::ctx();
    let err = ctx
        .open_checkpoint::<u8>("/no/such/checkpoint")
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/checkpoint"), "{err}");
}

#[test]
fn a_missing_or_extra_part_file_is_detected() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    let missing = dir.path().join("missing");
    copy_dir(&path, &missing);
    remove(&missing.join("part-00001"));
    let err = read_err(&ctx, &missing);
    assert!(
        err.to_string().contains("part-00001") && err.to_string().contains("missing"),
        "{err}"
    );

    let extra = dir.path().join("extra");
    let err = read_with_part_replaced(&ctx, &path, &extra, "part-00003", &path.join("part-00000"));
    assert!(
        err.to_string().contains("part-00003") && err.to_string().contains("unexpected"),
        "{err}"
    );
}

#[test]
fn a_truncated_or_extended_part_file_is_a_length_mismatch() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    let bytes = read(&path.join("part-00002"));
    for (name, content) in [
        ("trunc", bytes[..bytes.len() - 5].to_vec()),
        ("ext", [bytes.clone(), vec![0]].concat()),
    ] {
        let copy = dir.path().join(name);
        copy_dir(&path, &copy);
        write(&copy.join("part-00002"), &content);
        let err = read_err(&ctx, &copy);
        assert!(
            err.to_string().contains("part-00002") && err.to_string().contains("length mismatch"),
            "{err}"
        );
    }
}

#[test]
fn every_flipped_byte_of_a_part_file_is_detected_without_a_panic() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.parallelize(vec![(1u64, 0.5f64), (2, 1.5), (3, 2.5)], 1);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let path = rdd.checkpoint_path().unwrap();
    let bytes = read(&path.join("part-00000"));
    let copy = dir.path().join("flip");
    copy_dir(&path, &copy);
    // Every byte XOR-ed with three values through the whole reader (manifest, length,
    // header, frames, trailer, whole-file checksum: the manifest's recorded length is
    // unchanged, so every case reaches the bytes) ...
    for i in 0..bytes.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= x;
            write(&copy.join("part-00000"), &b);
            let err = read_err(&ctx, &copy);
            assert!(
                err.to_string().contains("part-00000"),
                "byte {i} ^ {x:#x}: {err}"
            );
        }
    }
    // ... and with every value through the same verifying decoder, in memory.
    let name = copy.join("part-00000");
    let mut cases = 0;
    for i in 0..bytes.len() {
        for x in 1..=255u8 {
            let mut b = bytes.clone();
            b[i] ^= x;
            let err = PartFile::decode(&b, &name).expect_err("detected");
            assert!(
                err.to_string().contains("part-00000"),
                "byte {i} ^ {x:#x}: {err}"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, bytes.len() * 255);
    // Every truncation and a one-byte extension.
    for n in 0..bytes.len() {
        write(&copy.join("part-00000"), &bytes[..n]);
        assert!(
            read_err(&ctx, &copy).to_string().contains("part-00000"),
            "truncated to {n}"
        );
    }
    write(&copy.join("part-00000"), &[bytes.as_slice(), &[0]].concat());
    assert!(read_err(&ctx, &copy)
        .to_string()
        .contains("length mismatch"));
}

#[test]
fn every_flipped_byte_of_the_manifest_is_detected() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    let bytes = read(&path.join(MANIFEST));
    let copy = dir.path().join("flip");
    copy_dir(&path, &copy);
    // Every byte XOR-ed with three values through `open_checkpoint`, and with every value
    // through the same decoder in memory.
    for i in 0..bytes.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[i] ^= x;
            write(&copy.join(MANIFEST), &b);
            let err = ctx.open_checkpoint::<(u64, f64)>(&copy).unwrap_err();
            assert!(
                err.to_string().contains("_manifest.json"),
                "byte {i} ^ {x:#x}: {err}"
            );
        }
    }
    let name = copy.join(MANIFEST);
    for i in 0..bytes.len() {
        for x in 1..=255u8 {
            let mut b = bytes.clone();
            b[i] ^= x;
            let err = ManifestBody::decode(&b, &name).expect_err("detected");
            assert!(
                err.to_string().contains("_manifest.json"),
                "byte {i} ^ {x:#x}: {err}"
            );
        }
    }
    for n in 0..bytes.len() {
        write(&copy.join(MANIFEST), &bytes[..n]);
        assert!(
            ctx.open_checkpoint::<(u64, f64)>(&copy).is_err(),
            "truncated to {n}"
        );
    }
}

#[test]
fn a_part_file_of_another_partition_or_checkpoint_is_caught_at_its_header() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    // Equal partition sizes, so the copies pass the length check and reach the header.
    let a = ctx.range(0..300, 3).map(|x| (x % 100, 0.0f64));
    a.checkpoint().unwrap();
    a.count().unwrap();
    let b = ctx.range(0..300, 3).map(|x| (x % 100, 0.0f64));
    b.checkpoint().unwrap();
    b.count().unwrap();
    let (pa, pb) = (a.checkpoint_path().unwrap(), b.checkpoint_path().unwrap());

    let swapped = dir.path().join("swapped");
    let err = read_with_part_replaced(&ctx, &pa, &swapped, "part-00001", &pa.join("part-00000"));
    assert!(
        err.to_string().contains("part-00001") && err.to_string().contains("holds partition 0"),
        "{err}"
    );

    let foreign = dir.path().join("foreign");
    let err = read_with_part_replaced(&ctx, &pa, &foreign, "part-00001", &pb.join("part-00001"));
    assert!(
        err.to_string().contains("part-00001") && err.to_string().contains("another checkpoint"),
        "{err}"
    );

    // The same RDD written by another application (another context, same rdd id).
    let other_app = ctx_with_dir(dir.path());
    let c = other_app.range(0..300, 3).map(|x| (x % 100, 0.0f64));
    c.checkpoint().unwrap();
    c.count().unwrap();
    let pc = c.checkpoint_path().unwrap();
    let app = dir.path().join("other-app");
    let err = read_with_part_replaced(&ctx, &pa, &app, "part-00002", &pc.join("part-00002"));
    assert!(
        err.to_string().contains("part-00002") && err.to_string().contains("another checkpoint"),
        "{err}"
    );
}

#[test]
fn opening_with_the_wrong_element_type_names_both_types() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    let err = ctx.open_checkpoint::<String>(&path).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("(u64, f64)") && msg.contains("alloc::string::String"),
        "{msg}"
    );
}

#[test]
fn a_newer_format_version_is_unsupported_not_corrupt() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);

    // A part file whose header says version 9 (with a valid header checksum).
    let copy = dir.path().join("newer-part");
    copy_dir(&path, &copy);
    let bytes = read(&copy.join("part-00000"));
    let (mut header, raw) = PartHeader::read(&mut bytes.as_slice(), Path::new("x")).unwrap();
    header.version = 9;
    let new = [header.encode(), bytes[raw.len()..].to_vec()].concat();
    write(&copy.join("part-00000"), &new);
    let err = read_err(&ctx, &copy);
    assert!(
        matches!(
            err,
            Error::UnsupportedVersion {
                found: 9,
                max: 2,
                ..
            }
        ),
        "{err}"
    );

    // A manifest that says version 3 (with a valid checksum).
    let copy = dir.path().join("newer-manifest");
    copy_dir(&path, &copy);
    let mut m = ManifestBody::decode(&read(&copy.join(MANIFEST)), Path::new("m")).unwrap();
    m.version = 3;
    write(&copy.join(MANIFEST), &m.encode().unwrap());
    let err = read_err(&ctx, &copy);
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade flintlock"));
}

#[test]
fn a_manifest_with_a_wrong_partition_count_or_garbage_is_corrupt() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let path = write_checkpoint(&ctx);
    let copy = dir.path().join("count");
    copy_dir(&path, &copy);
    let mut m = ManifestBody::decode(&read(&copy.join(MANIFEST)), Path::new("m")).unwrap();
    m.num_partitions = 4;
    write(&copy.join(MANIFEST), &m.encode().unwrap());
    let err = read_err(&ctx, &copy);
    assert!(
        matches!(err, Error::CorruptCheckpoint { .. })
            && err.to_string().contains("3 part files for 4 partitions"),
        "{err}"
    );

    write(&copy.join(MANIFEST), b"{not json");
    let err = read_err(&ctx, &copy);
    assert!(matches!(err, Error::CorruptCheckpoint { .. }), "{err}");
}

#[test]
fn a_corrupt_checkpoint_under_a_live_rdd_fails_its_action_with_the_file_named() {
    let dir = common::backend::place();
    let ctx = ctx_with_dir(dir.path());
    let rdd = ctx.range(0..300, 3).map(|x| (x, x as f64));
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    let part = rdd.checkpoint_path().unwrap().join("part-00001");
    let mut bytes = read(&part);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    write(&part, &bytes);
    let msg = rdd.collect().unwrap_err().to_string();
    assert!(
        msg.contains("part-00001") && msg.contains("checksum"),
        "{msg}"
    );
}
