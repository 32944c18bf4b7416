//! One checkpoint suite, two backends: where a test's checkpoints go, and file access that
//! works on both.
//!
//! By default a test's checkpoint root is a fresh temp folder. With
//! `FLINTLOCK_TEST_BACKEND=s3` (and the `s3` feature, and an S3 server: `.ci/run` runs the
//! suite a second time this way), it is a fresh prefix on the server,
//! `s3://$FLINTLOCK_S3_BUCKET/suite-<pid>-<n>-<nanos>`, and every file access below goes
//! through flintlock's own `DefaultStorage`, so a test damages, lists and removes objects
//! the same way it does files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flintlock::checkpoint::{DefaultStorage, Storage};

/// The variable that selects the backend: `s3`, or unset for the local filesystem.
pub const BACKEND_ENV: &str = "FLINTLOCK_TEST_BACKEND";

/// Whether this run of the suite is on S3.
pub fn on_s3() -> bool {
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("s3") => true,
        Ok("local") | Err(_) => false,
        Ok(other) => panic!("{BACKEND_ENV}={other:?}: use `s3` or `local`"),
    }
}

/// A test's checkpoint root: a temp folder, or a fresh S3 prefix (left on the server: the
/// tests look at it after their contexts are gone; the bucket is the server's scratch).
pub struct Place {
    root: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Place {
    /// The root to pass to `checkpoint_dir`.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

/// A fresh checkpoint root on this run's backend.
pub fn place() -> Place {
    if !on_s3() {
        let tmp = tempfile::tempdir().unwrap();
        return Place {
            root: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        };
    }
    Place {
        root: PathBuf::from(s3_prefix("suite")),
        _tmp: None,
    }
}

/// A fresh `s3://bucket/<tag>-<pid>-<n>-<nanos>` on the test server (whose endpoint must be
/// set: `.ci/run` starts one; see the README).
pub fn s3_prefix(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: this test needs an S3 server (.ci/run starts one)")
    });
    let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
    format!(
        "s3://{bucket}/{tag}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn storage() -> &'static DefaultStorage {
    static STORAGE: std::sync::OnceLock<DefaultStorage> = std::sync::OnceLock::new();
    STORAGE.get_or_init(DefaultStorage::default)
}

/// The bytes of the file (or object) at `path`.
pub fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    storage()
        .open(path)
        .and_then(|mut r| r.read_to_end(&mut out))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    out
}

/// Whether a file (or object) is at `path`.
pub fn exists(path: &Path) -> bool {
    storage().len(path).is_ok()
}

/// Writes `bytes` at `path`, replacing what is there.
pub fn write(path: &Path, bytes: &[u8]) {
    let s = storage();
    let _ = s.remove_file(path);
    if let Some(parent) = path.parent() {
        s.create_dir_all(parent).unwrap();
    }
    let mut f = s
        .create_new(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
    f.sync()
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Removes the file (or object) at `path`.
pub fn remove(path: &Path) {
    storage()
        .remove_file(path)
        .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
}

/// The names directly in folder `dir`, sorted (none when it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names = storage().list(dir).unwrap_or_default();
    names.sort();
    names
}

/// Whether `path` is a folder (on S3: a prefix with objects below it).
pub fn is_dir(path: &Path) -> bool {
    if on_s3() {
        !list(path).is_empty()
    } else {
        path.is_dir()
    }
}

/// Copies every file of folder `from` (not recursively) into a new folder `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    storage().create_dir_all(to).unwrap();
    for name in list(from) {
        write(&to.join(&name), &read(&from.join(&name)));
    }
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for name in list(&d) {
            let p = d.join(&name);
            if is_dir(&p) {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Removes everything below `dir` (a folder, or every key under an S3 prefix).
pub fn remove_all(dir: &Path) {
    storage()
        .remove_dir_all(dir)
        .unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
}

/// `builder` set up for a restart after a kill the test made: on S3, start-up cleanup then
/// removes unmanifested attempts without waiting out the grace period (no writer is alive:
/// the test killed it). Unchanged on the local filesystem, whose locks tell.
pub fn without_grace(builder: flintlock::ContextBuilder) -> flintlock::ContextBuilder {
    #[cfg(feature = "s3")]
    if on_s3() {
        use flintlock::checkpoint::{S3Options, S3Storage};
        let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
        let options = S3Options::from_env().cleanup_grace(std::time::Duration::ZERO);
        return builder.checkpoint_storage(S3Storage::open(&bucket, &options).unwrap());
    }
    builder
}
