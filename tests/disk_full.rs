//! A full disk, for real: a small tmpfs mounted by the test (ignored: it needs root, and
//! `.ci/run` runs it explicitly when it is root). The checkpoint write fails with a storage-full error naming
//! the path, leaves no file behind, gives the space back, and succeeds once space is freed.

#![cfg(target_os = "linux")]
// Two libc calls (statvfs, geteuid), each with its SAFETY comment.
#![allow(unsafe_code)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use flintlock::{CheckpointState, Context};

/// Unmounts the tmpfs even when an assertion fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `statvfs` fills the zeroed struct for a valid NUL-terminated path.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s.f_bavail * s.f_frsize
    }
}

#[test]
#[ignore = "mounts a 2 MiB tmpfs, which needs root: .ci/run runs it when it is root"]
fn a_full_disk_is_a_storage_full_error_that_leaves_nothing_behind() {
    // SAFETY: a plain syscall without arguments.
    assert_eq!(unsafe { libc::geteuid() }, 0, "mounting a tmpfs needs root");
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "`mount -t tmpfs` is not permitted here");
    let _mount = Mount(mnt.clone());

    let ctx = Context::builder()
        .threads(2)
        .checkpoint_dir(&mnt)
        .build()
        .unwrap();
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![7u8; 1536 << 10]).unwrap();
    let before = free_bytes(&mnt);

    // About 1.1 MB of checkpoint: more than the ~500 KB left, less than the 2 MB freed.
    let rdd = ctx.range(0..100_000, 4).map(|x| (x, x as f64));
    rdd.checkpoint().unwrap();
    let err = rdd.count().unwrap_err();
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::StorageFull),
        "{err}"
    );
    common::assert_names(&err, &mnt);
    assert_eq!(rdd.checkpoint_state(), CheckpointState::Marked);
    let left: Vec<_> = common::files_below(&mnt)
        .into_iter()
        .filter(|p| {
            !p.ends_with(".lock") && !p.ends_with(".flintlock-app") && !p.ends_with("filler")
        })
        .collect();
    assert!(left.is_empty(), "files left: {left:?}");
    assert_eq!(free_bytes(&mnt), before, "the space is given back");

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(rdd.count().unwrap(), 100_000);
    assert!(rdd.is_checkpointed());
}
