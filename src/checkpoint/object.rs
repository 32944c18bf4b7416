//! Object storage (S3 and S3-compatible servers) through the `object_store` crate, behind a
//! small synchronous facade (DESIGN.md §7).
//!
//! The facade owns a small tokio runtime. A call from an ordinary thread (a rayon worker, the
//! driver) blocks on it; a call from inside some other tokio runtime is handed to the
//! facade's own runtime and waited for with a channel, so a runtime worker is never blocked
//! on itself. Every error names the endpoint, the bucket and the key, never a credential.
//!
//! The commit protocol on an object store has no rename and no fsync: objects become
//! visible whole when their PUT completes, and [`S3Store::put_new`] publishes an object only
//! if none exists at its key (a conditional PUT, `If-None-Match: *`), which is the single
//! commit point of a checkpoint's manifest.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::storage::{ObjectWriter, Storage, StorageFile, StorageLock};
use std::io::Write;

/// How to reach an S3-compatible store. Unset fields come from the standard `AWS_*`
/// environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, ...).
///
/// `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct S3Options {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
    retry_timeout: Option<std::time::Duration>,
    cleanup_grace: Option<std::time::Duration>,
    layer: Option<Layer>,
}

/// A wrapper put around the store client (see [`S3Options::layer`]).
type Layer = Arc<dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("retry_timeout", &self.retry_timeout)
            .field("cleanup_grace", &self.cleanup_grace)
            .field("layer", &self.layer.as_ref().map(|_| "set"))
            .finish()
    }
}

impl S3Options {
    /// Options read from the environment only.
    pub fn from_env() -> S3Options {
        S3Options::default()
    }

    /// The endpoint URL (an S3-compatible server, e.g. `http://127.0.0.1:8333`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The region (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret.into());
        self
    }

    /// Allows plain `http://` endpoints (a server on loopback); off by default.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = Some(allow);
        self
    }

    /// How long a request that fails with a connection error or a server error is retried
    /// (with backoff) before the action fails naming the endpoint: default
    /// [`S3_RETRY_TIMEOUT`].
    pub fn retry_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.retry_timeout = Some(timeout);
        self
    }

    /// How long nothing must have been written below a write attempt's folder without a
    /// manifest before cleanup (start-up, `flintlock gc`) removes it: default
    /// [`S3_CLEANUP_GRACE`]. A lease can be lost by a holder that stalled past
    /// [`S3_LOCK_TTL`] and still writes; the grace period, far longer, keeps its attempt.
    /// Zero removes every unmanifested attempt of a folder whose lock cleanup holds (for a
    /// tool run when no writer can be alive).
    pub fn cleanup_grace(mut self, grace: std::time::Duration) -> Self {
        self.cleanup_grace = Some(grace);
        self
    }

    /// Puts `wrap` around the store client: every request flintlock makes goes through the
    /// store it returns (the `object_store` crate's [`ObjectStore`], re-exported as
    /// [`crate::checkpoint::object_store`]). For metrics, throttling
    /// (`object_store::throttle`), request limits (`object_store::limit`) or fault
    /// injection in tests.
    pub fn layer(
        mut self,
        wrap: impl Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
    ) -> Self {
        self.layer = Some(Arc::new(wrap));
        self
    }
}

/// The default of [`S3Options::cleanup_grace`].
pub const S3_CLEANUP_GRACE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The default of [`S3Options::retry_timeout`]: long enough to ride out a throttled or
/// restarting store, short enough that an unreachable one is an error soon.
pub const S3_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A bucket and a key prefix on an S3-compatible store, with a synchronous API: the
/// operations flintlock's checkpoints need, each one request (or one listing).
///
/// Keys passed to the methods are relative to the prefix, `/`-separated.
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// `s3://bucket/prefix`, for messages.
    url: String,
    endpoint: String,
    prefix: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Opens `s3://bucket/prefix` with `options` (and the environment for what they leave
    /// unset). Nothing is sent until the first call.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for a URL that is not `s3://bucket[/prefix]` or
    /// options the client refuses (naming them, never a secret).
    pub fn open(url: &str, options: &S3Options) -> crate::Result<S3Store> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            crate::Error::InvalidArgument(format!("{url:?} is not an s3://bucket/prefix URL"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(crate::Error::InvalidArgument(format!(
                "{url:?} names no bucket (s3://bucket/prefix)"
            )));
        }
        if let Err(e) = object_path(prefix) {
            return Err(crate::Error::InvalidArgument(format!("{url}: {e}")));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &options.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &options.region {
            b = b.with_region(r);
        }
        if let Some(k) = &options.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &options.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(h) = options.allow_http {
            b = b.with_allow_http(h);
        }
        b = b.with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 10,
            retry_timeout: options.retry_timeout.unwrap_or(S3_RETRY_TIMEOUT),
        });
        b = b.with_config(
            object_store::aws::AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::ConnectTimeout,
            ),
            "5s",
        );
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .unwrap_or_else(|| "AWS S3".to_string());
        let store = b.build().map_err(|e| {
            crate::Error::InvalidArgument(format!(
                "{url} at {endpoint}: {}",
                redact(&e.to_string())
            ))
        })?;
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let store = match &options.layer {
            Some(wrap) => wrap(store),
            None => store,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flintlock-object-store")
            .enable_all()
            .build()
            .map_err(|e| crate::Error::io("start the object-store runtime for", url, e))?;
        Ok(S3Store {
            store,
            runtime,
            url: format!("s3://{bucket}/{prefix}"),
            endpoint,
            prefix: prefix.trim_end_matches('/').to_string(),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path(&self, key: &str) -> io::Result<ObjectPath> {
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        object_path(&full)
    }

    /// Runs `f` on the facade's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        run_on(self.runtime.handle(), f)
    }

    fn error(&self, op: &str, key: &str, e: object_store::Error) -> io::Error {
        error_of(op, &self.url, &self.endpoint, key, e)
    }

    /// Writes `bytes` at `key`, replacing what is there.
    ///
    /// # Errors
    /// The store's error, naming the key.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move { store.put(&path, PutPayload::from(bytes)).await })
            .map(drop)
            .map_err(|e| self.error("PUT", key, e))
    }

    /// Publishes `bytes` at `key` only if no object is there (`If-None-Match: *`): of racing
    /// writers exactly one succeeds; the others get [`io::ErrorKind::AlreadyExists`].
    ///
    /// # Errors
    /// `AlreadyExists` when an object is at `key`; the store's error otherwise.
    pub fn put_new(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let opts = PutOptions::from(PutMode::Create);
        self.run(async move { store.put_opts(&path, PutPayload::from(bytes), opts).await })
            .map(drop)
            .map_err(|e| self.error("PUT (if none)", key, e))
    }

    /// The object at `key`, whole.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when there is none; the store's error otherwise.
    pub fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move {
            let r = store.get(&path).await?;
            r.bytes().await
        })
        .map(|b| b.to_vec())
        .map_err(|e| self.error("GET", key, e))
    }

    /// The keys below `prefix` (relative to the store's prefix), sorted.
    ///
    /// # Errors
    /// The store's error, naming the prefix.
    pub fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        Ok(self
            .list_modified(prefix)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The keys below `prefix` (relative to the store's prefix), sorted, each with the time
    /// the store says it was last written.
    ///
    /// # Errors
    /// The store's error, naming the prefix.
    pub fn list_modified(&self, prefix: &str) -> io::Result<Vec<(String, std::time::SystemTime)>> {
        use futures_util::TryStreamExt;
        let (store, path) = (self.store.clone(), self.path(prefix)?);
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys: Vec<(String, std::time::SystemTime)> = self
            .run(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
            .map_err(|e| self.error("LIST", prefix, e))?
            .into_iter()
            .map(|m| {
                let k = m.location.to_string();
                (
                    k.strip_prefix(&strip).map(str::to_string).unwrap_or(k),
                    system_time(m.last_modified.timestamp_millis()),
                )
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Bytes `range` of the object at `key`.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when there is none; the store's error otherwise.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> io::Result<Vec<u8>> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move { store.get_range(&path, range).await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error("GET (range)", key, e))
    }

    /// The size of the object at `key`.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when there is none; the store's error otherwise.
    pub fn len(&self, key: &str) -> io::Result<u64> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move { store.head(&path).await })
            .map(|m| m.size)
            .map_err(|e| self.error("HEAD", key, e))
    }

    /// The object at `key`, whole, with the time the store says it was last written (by
    /// the store's own clock).
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when there is none; the store's error otherwise.
    pub fn get_modified(&self, key: &str) -> io::Result<(Vec<u8>, std::time::SystemTime)> {
        self.get_tagged(key)
            .map(|(bytes, written, _)| (bytes, written))
    }

    /// As [`get_modified`](Self::get_modified), with the object's entity tag (`None` when
    /// the store gives none), for [`put_if_tagged`](Self::put_if_tagged).
    pub(crate) fn get_tagged(
        &self,
        key: &str,
    ) -> io::Result<(Vec<u8>, std::time::SystemTime, Option<String>)> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move {
            let r = store.get(&path).await?;
            let written = system_time(r.meta.last_modified.timestamp_millis());
            let tag = r.meta.e_tag.clone();
            r.bytes().await.map(|b| (b.to_vec(), written, tag))
        })
        .map_err(|e| self.error("GET", key, e))
    }

    /// Replaces the object at `key` only while its entity tag is still `e_tag`
    /// (`If-Match`): an object written or removed by anyone since it was read is left as
    /// it is, and the error's kind is [`io::ErrorKind::AlreadyExists`].
    pub(crate) fn put_if_tagged(&self, key: &str, bytes: Vec<u8>, e_tag: String) -> io::Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        let opts = PutOptions::from(PutMode::Update(object_store::UpdateVersion {
            e_tag: Some(e_tag),
            version: None,
        }));
        self.run(async move { store.put_opts(&path, PutPayload::from(bytes), opts).await })
            .map(drop)
            .map_err(|e| self.error("PUT (if match)", key, e))
    }

    /// The time the store says the object at `key` was last written (by the store's own
    /// clock, not this machine's).
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] when there is none; the store's error otherwise.
    pub fn modified(&self, key: &str) -> io::Result<std::time::SystemTime> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        self.run(async move { store.head(&path).await })
            .map(|m| system_time(m.last_modified.timestamp_millis()))
            .map_err(|e| self.error("HEAD", key, e))
    }

    /// The names directly below `prefix` (`/`-separated, relative to the store's prefix):
    /// objects and the first components of deeper keys, sorted, without repeats.
    ///
    /// # Errors
    /// The store's error, naming the prefix.
    pub fn list_children(&self, prefix: &str) -> io::Result<Vec<String>> {
        let (store, path) = (self.store.clone(), self.path(prefix)?);
        let asked = path.clone();
        let listing = self
            .run(async move { store.list_with_delimiter(Some(&path)).await })
            .map_err(|e| self.error("LIST", prefix, e))?;
        // A server with folders (SeaweedFS) lists an empty folder's own marker as an object
        // at the prefix itself: not a child.
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|o| &o.location))
            .filter(|p| **p != asked)
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Deletes the object at `key` (nothing there is not an error).
    ///
    /// # Errors
    /// The store's error, naming the key.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        let (store, path) = (self.store.clone(), self.path(key)?);
        match self.run(async move { store.delete(&path).await }) {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", key, e)),
        }
    }
}

/// The object path of `key`, refusing characters the client would percent-encode (`~`,
/// `%`, `#`, `\\`, `{`, `}`, `^`, `[`, `]`, `` ` ``, `\"`, `<`, `>`, `|`, controls): such a
/// key would be stored under another name than the one asked for, and listings would
/// return names that do not find their objects again. Empty segments (`a//b`) fold away.
fn object_path(key: &str) -> io::Result<ObjectPath> {
    let path = ObjectPath::from(key);
    let folded: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
    if path.as_ref() != folded.join("/") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the object key {key:?} holds characters an object store client encodes \
                 (one of ~ % # \\ {{ }} ^ [ ] ` \" < > | or a control character): use \
                 letters, digits, spaces and - _ . / in s3:// paths"
            ),
        ));
    }
    Ok(path)
}

/// Runs `f` on `runtime` and waits for it, from any thread: a thread of another tokio
/// runtime waits on a channel rather than blocking one of that runtime's workers inside
/// `block_on`.
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .expect("the object-store runtime dropped a request")
    } else {
        runtime.block_on(f)
    }
}

/// An I/O error for operation `op` on `key`, naming the store and the endpoint and never a
/// credential.
fn error_of(op: &str, url: &str, endpoint: &str, key: &str, e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            io::ErrorKind::AlreadyExists
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
        // A listing's refusal comes back as a generic error with the status.
        e if ["status code: 401", "status code: 403"]
            .iter()
            .any(|s| e.to_string().contains(s)) =>
        {
            io::ErrorKind::PermissionDenied
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(
        kind,
        format!(
            "{op} {}/{key} at {endpoint}: {}",
            url.trim_end_matches('/'),
            redact(&e.to_string())
        ),
    )
}

/// Replaces the values of signature and credential query parameters in an error text
/// (the store's errors carry URLs; presigned ones would carry secrets).
fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for name in [
        "X-Amz-Signature=",
        "X-Amz-Credential=",
        "X-Amz-Security-Token=",
    ] {
        let mut from = 0;
        while let Some(i) = out[from..].find(name) {
            let start = from + i + name.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

/// A [`Storage`] on one bucket of an S3-compatible store: paths are `s3://bucket/key`.
///
/// Objects appear whole when their PUT completes, so checkpoint parts and manifests go
/// through [`Storage::create_object`] (a manifest by a conditional PUT); `create_new` and
/// `rename_no_replace` (for small metadata files) are a buffered PUT and a copy by GET,
/// conditional PUT and DELETE. Folders do not exist (creating one does nothing) and
/// `sync_dir` has nothing to do. Locks are leases: a lock object created by a conditional
/// PUT, refreshed by its holder, deleted when released, and taken over when not refreshed
/// for [`S3_LOCK_TTL`] by the store's own clock (its holder was killed; at once when the
/// holder was a process of this machine that is gone). Machines' clocks may disagree, so
/// the time stamps in lock bodies decide nothing: a lock's age is its last-modified time
/// against that of a marker written when it is taken over. As a lease is weaker than a
/// filesystem lock (a holder stalled past the TTL loses it), [`Storage::has_locks`] is
/// false: a writer checks that it still holds
/// the lease before it commits, cleanup removes a write attempt without a manifest only once
/// nothing was written below it for [`S3Options::cleanup_grace`], and streams (which rest on
/// one writer) refuse object stores, as do `FileSink`s.
///
/// Multipart uploads abandoned by a killed writer are invisible to listings; a bucket
/// lifecycle rule (`AbortIncompleteMultipartUpload`) removes them.
#[derive(Debug)]
pub struct S3Storage {
    store: Arc<S3Store>,
    bucket: String,
    grace: std::time::Duration,
}

impl S3Storage {
    /// The storage of `s3://bucket` with `options` (and the `AWS_*` environment).
    ///
    /// # Errors
    /// As [`S3Store::open`].
    pub fn open(bucket: &str, options: &S3Options) -> crate::Result<S3Storage> {
        Ok(S3Storage {
            store: Arc::new(S3Store::open(&format!("s3://{bucket}"), options)?),
            bucket: bucket.to_string(),
            grace: options.cleanup_grace.unwrap_or(S3_CLEANUP_GRACE),
        })
    }

    /// The key of `path` in this storage's bucket.
    fn key(&self, path: &std::path::Path) -> io::Result<String> {
        let text = path.to_string_lossy();
        let rest = text
            .strip_prefix("s3://")
            .and_then(|r| r.strip_prefix(self.bucket.as_str()))
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{text} is not in s3://{}", self.bucket),
                )
            })?;
        Ok(rest
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string())
    }
}

/// A store's time stamp (milliseconds since 1970) as a `SystemTime` (before 1970: 1970).
fn system_time(millis: i64) -> std::time::SystemTime {
    let millis = u64::try_from(millis).unwrap_or(0);
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis)
}

/// The bucket of an `s3://bucket/...` path.
pub(crate) fn bucket_of(path: &std::path::Path) -> Option<String> {
    let text = path.to_string_lossy();
    let rest = text.strip_prefix("s3://")?;
    let bucket = rest.split('/').next().unwrap_or("");
    (!bucket.is_empty()).then(|| bucket.to_string())
}

/// How long the lock object of a process that stopped refreshing it (a killed one) keeps
/// others out of an app or stream folder on an object store, measured by the store's clock
/// (the object's last-modified time against that of a marker written when it is taken
/// over), so that machines whose clocks disagree never take a live lease.
pub const S3_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// How often a holder rewrites its lock object.
const S3_LOCK_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// A lease on an object store (which has no locks): a lock object created by a conditional
/// PUT, rewritten by its holder every [`S3_LOCK_REFRESH`], deleted when dropped; one not
/// rewritten for [`S3_LOCK_TTL`] (its holder died) may be taken over.
struct S3Lock {
    key: String,
    token: String,
    store: Arc<S3Store>,
    stop: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for S3Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Lock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl StorageLock for S3Lock {
    fn is_held(&self) -> io::Result<bool> {
        Ok(lock_holder(&self.store, &self.key)?.is_some_and(|h| h.owner == self.token))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LockBody {
    owner: String,
    pid: u32,
    refreshed_unix_ms: u64,
    /// The holder's machine, precisely: its boot and pid namespace (Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
    /// When the holder's process started, in clock ticks since boot (Linux only): with the
    /// pid, it names one process even after its pid is reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<u64>,
    /// How long the lease lasts without a refresh, in milliseconds ([`S3_LOCK_TTL`] when
    /// absent, as in bodies of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
}

/// What a taker finds of a lock ([`S3Lock::remove_stale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Over: it may be removed (and was).
    Over,
    /// Live.
    Live,
    /// Released meanwhile: the lock may be taken.
    Released,
    /// Another taker is at it: try again after a pause.
    Contended,
}

/// The longest time to live a lock body may claim: a body claiming more (damaged, or
/// not written by flintlock) keeps others out no longer than this.
const S3_LOCK_TTL_MAX: std::time::Duration = std::time::Duration::from_secs(600);

impl LockBody {
    /// How long this lease lasts without a refresh ([`S3_LOCK_TTL`] unless the body says
    /// otherwise, at most [`S3_LOCK_TTL_MAX`]).
    fn ttl(&self) -> std::time::Duration {
        self.ttl_ms
            .map_or(S3_LOCK_TTL, std::time::Duration::from_millis)
            .min(S3_LOCK_TTL_MAX)
    }
}

/// Whether the taker that wrote `marker` is over: there is no such marker any more (its
/// taker is done), its taker is a process of this machine that is gone, or the marker was
/// not written for its time to live by `now` (the store's clock). The marker of a taker
/// that is over is removed (markers are named after their takers: no other is hit).
fn marker_is_over(store: &S3Store, marker: &str, now: std::time::SystemTime) -> io::Result<bool> {
    let Some((m, written)) = lock_holder_written(store, marker)? else {
        return Ok(true);
    };
    let over = holder_is_gone(&m) || expired_by_store(written, now, m.ttl());
    if over {
        let _ = store.delete(marker);
    }
    Ok(over)
}

/// This machine's boot and pid namespace: two processes that see the same value see the
/// same pids. `None` off Linux.
fn this_machine() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let pids = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), pids.display()))
}

/// When process `pid` of this machine started (clock ticks since boot), `None` when there
/// is no such process (or off Linux).
fn process_started(pid: u32) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name (which may hold spaces and parentheses).
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether an object last written at `modified` was not written again for `ttl` by the
/// time `now`, both by the store's clock. Stores keep whole seconds, so a time read back
/// may be up to a second early: the age must pass `ttl`, rounded up to whole seconds, by
/// more than one second.
fn expired_by_store(
    modified: std::time::SystemTime,
    now: std::time::SystemTime,
    ttl: std::time::Duration,
) -> bool {
    let whole = std::time::Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0));
    now.duration_since(modified)
        .is_ok_and(|age| age > whole + std::time::Duration::from_secs(1))
}

/// Whether a busy lock may be over, before a takeover marker is written to tell for sure
/// ([`S3Lock::remove_stale`], by the store's clock alone): its holder is a process of this
/// machine that is gone, the store's time of its last write (`written`) looks older than
/// its time to live by this machine's clock, or this process has seen the same lock
/// instance, unrefreshed, for its time to live (by this machine's monotonic clock: a
/// process that keeps trying gets there even when its clock runs behind the store's). A
/// live holder refreshes every [`S3_LOCK_REFRESH`], so polling a live lock writes nothing unless this machine's
/// clock runs ahead of the store's by most of a time to live.
fn may_be_over(store: &S3Store, key: &str, h: &LockBody, written: std::time::SystemTime) -> bool {
    type Seen = std::collections::HashMap<String, (String, std::time::Instant)>;
    static SEEN: std::sync::OnceLock<parking_lot::Mutex<Seen>> = std::sync::OnceLock::new();
    if holder_is_gone(h) || expired_by_store(written, std::time::SystemTime::now(), h.ttl()) {
        return true;
    }
    let instance = format!("{}\0{}", h.owner, h.refreshed_unix_ms);
    let mut seen = SEEN.get_or_init(Default::default).lock();
    let entry = seen
        .entry(format!("{}\0{key}", store.url()))
        .or_insert_with(|| (instance.clone(), std::time::Instant::now()));
    if entry.0 != instance {
        *entry = (instance, std::time::Instant::now());
    }
    entry.1.elapsed() > h.ttl()
}

/// Whether the lock's holder is a process of this machine that is gone: its lease is then
/// over at once, without waiting out [`S3_LOCK_TTL`] (a job restarted after `kill -9`). A
/// holder elsewhere, or one that cannot be checked, is alive until its lease expires.
fn holder_is_gone(h: &LockBody) -> bool {
    match (&h.machine, h.started) {
        (Some(machine), Some(started)) if this_machine().as_ref() == Some(machine) => {
            is_gone(started, process_started(h.pid), || process_exists(h.pid))
        }
        _ => false,
    }
}

/// Whether a holder that recorded `started` is gone, given its pid's start time as read now
/// (`None`: no `/proc` entry could be read) and whether a process of that pid exists. An
/// unreadable entry of a process that exists (another user's, under `/proc`'s `hidepid`)
/// cannot be told from the holder: it is alive until its lease expires.
fn is_gone(started: u64, now: Option<u64>, exists: impl FnOnce() -> bool) -> bool {
    match now {
        Some(now) => now != started,
        None => !exists(),
    }
}

/// Whether a process of `pid` exists, whoever owns it (`kill(pid, 0)`: no such process is
/// `ESRCH`; one this user may not signal is `EPERM`, and exists). `true` when it cannot be
/// asked, so that nothing is taken from a holder that may be alive.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one syscall, see SAFETY below
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true; // 0 and negatives name process groups: not a holder's pid
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists and may be
    // signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(target_os = "linux"))]
fn process_exists(_pid: u32) -> bool {
    true
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock_body(token: &str) -> Vec<u8> {
    serde_json::to_vec(&LockBody {
        owner: token.to_string(),
        pid: std::process::id(),
        refreshed_unix_ms: now_ms(),
        machine: this_machine(),
        started: process_started(std::process::id()),
        ttl_ms: Some(S3_LOCK_TTL.as_millis() as u64),
    })
    .unwrap_or_default()
}

/// The owner and refresh time of the lock object at `key`, `None` when there is none.
fn lock_holder(store: &S3Store, key: &str) -> io::Result<Option<LockBody>> {
    Ok(lock_holder_written(store, key)?.map(|(h, _)| h))
}

/// As [`lock_holder`], with the time the store says the lock object was last written.
fn lock_holder_written(
    store: &S3Store,
    key: &str,
) -> io::Result<Option<(LockBody, std::time::SystemTime)>> {
    match store.get_modified(key) {
        Ok((bytes, written)) => Ok(Some((parse_lock_body(&bytes), written))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The lock body in `bytes`; one that is not (an empty lock file of an older build) has
/// no owner and was never refreshed: it is stale.
fn parse_lock_body(bytes: &[u8]) -> LockBody {
    serde_json::from_slice(bytes).unwrap_or(LockBody {
        owner: String::new(),
        pid: 0,
        refreshed_unix_ms: 0,
        machine: None,
        started: None,
        ttl_ms: None,
    })
}

/// 64 random bits: the standard library's hasher keys are drawn at random per process and
/// stepped per `RandomState`, as for write ids (`writer::new_write_id`).
fn random_u64(salt: impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(salt)
}

/// A token no other taker has: 128 random bits, then this process's pid.
fn new_token() -> String {
    format!(
        "{:016x}{:016x}-{}",
        random_u64(0u8),
        random_u64(1u8),
        std::process::id()
    )
}

/// A random pause before the `round`-th try again where another taker was at work: up
/// to 50 ms, doubling each round (up to 6.4 s), so that takers that keep meeting spread
/// out until one gets through alone.
fn jitter(round: u32) {
    let most = 50u64 << round.min(7);
    std::thread::sleep(std::time::Duration::from_millis(
        1 + random_u64(round) % most,
    ));
}

impl S3Lock {
    /// Takes the lease at `key`, or `None` when a live holder has it.
    fn take(store: &Arc<S3Store>, key: &str) -> io::Result<Option<S3Lock>> {
        let token = new_token();
        let mut contended = 0;
        for _ in 0..12 {
            match store.put_new(key, lock_body(&token)) {
                Ok(()) => return Ok(Some(S3Lock::hold(store, key, token))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    // A PUT whose answer was lost may have landed: then the lock is ours.
                    return match lock_holder(store, key) {
                        Ok(Some(h)) if h.owner == token => {
                            Ok(Some(S3Lock::hold(store, key, token)))
                        }
                        _ => Err(e),
                    };
                }
            }
            match lock_holder_written(store, key)? {
                None => continue, // released meanwhile
                // This very PUT, landed, then refused on a retry of the request.
                Some((h, _)) if h.owner == token => {
                    return Ok(Some(S3Lock::hold(store, key, token)));
                }
                Some((h, written)) => {
                    if !may_be_over(store, key, &h, written) {
                        return Ok(None);
                    }
                    match Self::remove_stale(store, key, &h, &token)? {
                        Verdict::Over | Verdict::Released => continue,
                        Verdict::Live => return Ok(None),
                        Verdict::Contended => {
                            jitter(contended);
                            contended += 1;
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Removes the lock `h` at `key` if it is over, unless another taker is at it; says
    /// which: [`Verdict::Over`] (removed), [`Verdict::Released`] (gone meanwhile),
    /// [`Verdict::Live`] or [`Verdict::Contended`].
    ///
    /// A lock is over when its holder is a process of this machine that is gone, or when
    /// the store's clock says it was not written for its time to live: the lock object's
    /// last-modified time against that of the marker just written. Time stamps in bodies
    /// come from the writers' clocks, which may be minutes apart, and decide nothing here.
    ///
    /// Of the processes that find the lock over, one may remove it. Each writes a marker of
    /// its own, named after the lock instance and its token, then lists the markers of this
    /// instance and goes on only if every other one's taker is over (a gone process of this
    /// machine, or a marker not written for its time to live by the store's clock; such
    /// markers are removed on the way, and a removal can only hit the marker read, as no
    /// two takers share a name). Of two takers at work at once, the later to list sees the
    /// other's marker and backs off (both may; they try again after a random pause). Every
    /// taker deletes its marker when it leaves, after its removal of the lock. (The GET
    /// before the removal and the removal are two requests: a holder stalled past its time
    /// to live can still lose its lock between them, which [`Storage::has_locks`] being
    /// false tells writers to expect.)
    fn remove_stale(store: &S3Store, key: &str, h: &LockBody, token: &str) -> io::Result<Verdict> {
        let instance: String = format!("{}-{}", h.owner, h.refreshed_unix_ms)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let (folder, lock_name) = key.rsplit_once('/').unwrap_or(("", key));
        let prefix = format!("{lock_name}{}{instance}.", super::app_dir::TAKEOVER);
        let in_folder = |name: &str| {
            if folder.is_empty() {
                name.to_string()
            } else {
                format!("{folder}/{name}")
            }
        };
        let mine = in_folder(&format!("{prefix}{token}"));
        match store.put_new(&mine, lock_body(token)) {
            // No other taker has this name: a refusal is this PUT, landed on a retry.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = store.delete(&mine); // in case it landed
                return Err(e);
            }
        }
        let verdict = (|| {
            let now = store.modified(&mine)?;
            for name in store.list_children(folder)? {
                let other = in_folder(&name);
                if name.starts_with(&prefix)
                    && other != mine
                    && !marker_is_over(store, &other, now)?
                {
                    return Ok(Verdict::Contended);
                }
            }
            if holder_is_gone(h) {
                return Ok(Verdict::Over);
            }
            match store.modified(key) {
                Ok(written) if expired_by_store(written, now, h.ttl()) => Ok(Verdict::Over),
                Ok(_) => Ok(Verdict::Live),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Verdict::Released),
                Err(e) => Err(e),
            }
        })();
        if matches!(verdict, Ok(Verdict::Over)) {
            // Removed only while it is still that instance.
            let removed = lock_holder(store, key).and_then(|now| {
                let same = now.is_some_and(|now| {
                    now.owner == h.owner && now.refreshed_unix_ms == h.refreshed_unix_ms
                });
                if same {
                    store.delete(key)
                } else {
                    Ok(())
                }
            });
            let _ = store.delete(&mine);
            return removed.map(|()| Verdict::Over);
        }
        // Nothing removed: as if this process had never come.
        let _ = store.delete(&mine);
        verdict
    }

    fn hold(store: &Arc<S3Store>, key: &str, token: String) -> S3Lock {
        let stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let (s, k, t, st) = (store.clone(), key.to_string(), token.clone(), stop.clone());
        let refresher = std::thread::Builder::new()
            .name("flintlock-s3-lock".into())
            .spawn(move || {
                let mut state = Refresher {
                    refused: 0,
                    landed: std::time::Instant::now(),
                };
                loop {
                    {
                        let mut stopped = st.0.lock();
                        if !*stopped {
                            st.1.wait_for(&mut stopped, S3_LOCK_REFRESH);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    if !refresh(&s, &k, &t, &mut state) {
                        return;
                    }
                }
            })
            .ok();
        S3Lock {
            key: key.to_string(),
            token,
            store: store.clone(),
            stop,
            refresher,
        }
    }
}

/// What a lease's refresher knows between rounds.
struct Refresher {
    /// Rounds in a row in which the store refused a conditional rewrite that held.
    refused: u32,
    /// When a rewrite last landed.
    landed: std::time::Instant,
}

/// Rewrites the lock at `key` if it is still `token`'s; false once it is not (a holder
/// stalled past its time to live lost it to another, or it was removed), so the refresher
/// stops.
///
/// The rewrite is conditional on the entity tag read with the owner (`If-Match`): another
/// taker that removes the lock and takes it between the read and the write keeps it. A
/// refused rewrite counts as landed only if the lock now holds the very body written (the
/// request landed, then a retry of it was refused). A refusal while the lock still holds
/// this holder's earlier body is the store refusing a condition that held (some
/// S3-compatible stores honour `If-Match` partly or not at all; a taker's move shows as
/// another owner or no lock). At the second such round in a row, and only while the last
/// rewrite landed less than half the time to live ago (so that the lease cannot have
/// passed to another meanwhile), the lock is rewritten unconditionally, with a warning:
/// such a store keeps the lease. A store that gives no entity tags gets unconditional
/// rewrites, as before conditional writes. A failed request changes nothing; the next
/// round tries again.
fn refresh(store: &S3Store, key: &str, token: &str, state: &mut Refresher) -> bool {
    let refused = std::mem::take(&mut state.refused);
    let (h, tag) = match store.get_tagged(key) {
        Ok((bytes, _, tag)) => (parse_lock_body(&bytes), tag),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return lost(key, None),
        Err(_) => return true,
    };
    if h.owner != token {
        return lost(key, Some(&h));
    }
    let body = lock_body(token);
    let written = match tag {
        Some(tag) => store.put_if_tagged(key, body.clone(), tag),
        None => {
            warn_unconditional(key, "gives no entity tags");
            store.put(key, body.clone())
        }
    };
    match written {
        Ok(()) => state.landed = std::time::Instant::now(),
        // Changed since the read: ours only if the change was this very write.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match store.get(key) {
            Ok(now) if now == body => state.landed = std::time::Instant::now(),
            Ok(now) => {
                let held = parse_lock_body(&now);
                if held.owner != token {
                    return lost(key, Some(&held));
                }
                // Still this holder's earlier body: the store refused a condition that held.
                if refused == 0 || state.landed.elapsed() >= S3_LOCK_TTL / 2 {
                    state.refused = refused + 1;
                } else {
                    warn_unconditional(key, "refuses conditional rewrites (If-Match) that hold");
                    if store.put(key, body).is_ok() {
                        state.landed = std::time::Instant::now();
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return lost(key, None),
            Err(_) => {}
        },
        Err(_) => {}
    }
    true
}

/// Warns, once per process, that leases on this store are rewritten unconditionally
/// because it `why`.
fn warn_unconditional(key: &str, why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            key,
            "the object store {why}: S3 leases are rewritten unconditionally, so a holder \
             that stalls past its time to live may overwrite a new holder's lock"
        )
    });
}

/// Says that the lease at `key` was lost (to `to`, or removed), for [`refresh`]: false.
fn lost(key: &str, to: Option<&LockBody>) -> bool {
    match to {
        Some(h) => tracing::warn!(
            key,
            holder_pid = h.pid,
            "the S3 lease was taken over by another holder (this process stalled past its \
             time to live?); commits into its folder now fail with Locked"
        ),
        None => tracing::warn!(
            key,
            "the S3 lease was removed while held; commits into its folder now fail with Locked"
        ),
    }
    false
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if let Ok(Some(h)) = lock_holder(&self.store, &self.key)
            && h.owner == self.token
        {
            let _ = self.store.delete(&self.key);
        }
    }
}

/// Bytes buffered in memory until published or synced by one PUT (`store` has no prefix:
/// `key` is the whole key).
struct Buffered {
    store: Arc<S3Store>,
    key: String,
    bytes: Vec<u8>,
    put: bool,
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buffered {
    fn put(&mut self, if_absent: bool) -> io::Result<()> {
        self.put = true;
        let bytes = std::mem::take(&mut self.bytes);
        if if_absent {
            self.store.put_new(&self.key, bytes)
        } else {
            self.store.put(&self.key, bytes)
        }
    }
}

impl StorageFile for Buffered {
    fn sync(&mut self) -> io::Result<()> {
        self.put(true)
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        // A file written without a sync (fsync off) still appears, as on a filesystem.
        if !self.put && !self.bytes.is_empty() {
            let _ = self.put(true);
        }
    }
}

/// The size of the pieces a large object is uploaded and read in (S3 wants at least 5 MiB
/// for every part of a multipart upload but the last); an object up to this size goes by
/// one PUT.
const PIECE: usize = 16 << 20;

/// Pieces of one object in flight at once while the writer goes on encoding.
const PIECES_IN_FLIGHT: usize = 2;

/// An object published whole (checkpoint parts and manifests): one PUT when it is small;
/// past [`PIECE`] bytes, a multipart upload whose pieces go as they fill (memory stays at
/// one piece), completed by `publish` and aborted when dropped unpublished.
struct S3Object {
    buf: Buffered,
    upload: Option<Box<dyn object_store::MultipartUpload>>,
    /// Pieces sent and not yet confirmed, oldest first.
    inflight: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl S3Object {
    fn io_error(&self, op: &str, e: object_store::Error) -> io::Error {
        self.buf.store.error(op, &self.buf.key, e)
    }

    /// Sends the buffered bytes as the next piece of the multipart upload (started on the
    /// first one).
    fn send_piece(&mut self) -> io::Result<()> {
        let runtime = self.buf.store.runtime.handle().clone();
        if self.upload.is_none() {
            let (store, path) = (self.buf.store.store.clone(), object_path(&self.buf.key)?);
            let started = run_on(&runtime, async move {
                store
                    .put_multipart_opts(&path, object_store::PutMultipartOptions::default())
                    .await
            });
            self.upload = Some(started.map_err(|e| self.io_error("start upload of", e))?);
        }
        let piece = PutPayload::from(std::mem::take(&mut self.buf.bytes));
        let upload = self.upload.as_mut().expect("started above");
        // Sent while the writer goes on; at most PIECES_IN_FLIGHT wait at once.
        self.inflight
            .push_back(runtime.spawn(upload.put_part(piece)));
        while self.inflight.len() > PIECES_IN_FLIGHT {
            self.confirm_oldest()?;
        }
        Ok(())
    }

    /// Waits for the oldest piece in flight.
    fn confirm_oldest(&mut self) -> io::Result<()> {
        let Some(handle) = self.inflight.pop_front() else {
            return Ok(());
        };
        let runtime = self.buf.store.runtime.handle().clone();
        match run_on(&runtime, handle) {
            Ok(r) => r.map_err(|e| self.io_error("upload a piece of", e)),
            Err(e) => Err(io::Error::other(format!(
                "{}: a piece upload task failed: {e}",
                self.buf.key
            ))),
        }
    }
}

impl Write for S3Object {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.bytes.extend_from_slice(data);
        if self.buf.bytes.len() >= PIECE {
            self.send_piece()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Object {
    fn publish(mut self: Box<Self>, if_absent: bool) -> io::Result<()> {
        if self.upload.is_none() {
            return self.buf.put(if_absent);
        }
        while !self.inflight.is_empty() {
            self.confirm_oldest()?;
        }
        let Some(mut upload) = self.upload.take() else {
            return self.buf.put(if_absent);
        };
        if if_absent {
            return Err(io::Error::other(
                "a conditional object is written by one PUT, never a multipart upload",
            ));
        }
        let last = PutPayload::from(std::mem::take(&mut self.buf.bytes));
        let runtime = self.buf.store.runtime.handle().clone();
        let done = run_on(&runtime, async move {
            if last.content_length() > 0
                && let Err(e) = upload.put_part(last).await
            {
                let _ = upload.abort().await;
                return Err(e);
            }
            match upload.complete().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = upload.abort().await;
                    Err(e)
                }
            }
        });
        self.buf.put = true;
        done.map_err(|e| self.io_error("complete upload of", e))
    }
}

impl Drop for S3Object {
    fn drop(&mut self) {
        self.buf.put = true; // unpublished: abandoned, nothing more is sent
        if let Some(mut upload) = self.upload.take() {
            // S3 keeps the pieces of an open upload until it is aborted (after the pieces
            // in flight, which would otherwise land after the abort).
            let runtime = self.buf.store.runtime.handle().clone();
            let inflight = std::mem::take(&mut self.inflight);
            let _ = run_on(&runtime, async move {
                for h in inflight {
                    let _ = h.await;
                }
                upload.abort().await
            });
        }
    }
}

/// Reads an object in [`PIECE`]-sized ranged GETs, so memory stays at one piece.
struct S3Reader {
    store: Arc<S3Store>,
    key: String,
    len: u64,
    pos: u64,
    piece: Vec<u8>,
    at: usize,
}

impl io::Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.piece.len() {
            if self.pos >= self.len {
                return Ok(0);
            }
            let end = (self.pos + PIECE as u64).min(self.len);
            self.piece = self.store.get_range(&self.key, self.pos..end)?;
            if self.piece.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{}: the object ended early", self.key),
                ));
            }
            self.pos += self.piece.len() as u64;
            self.at = 0;
        }
        let n = out.len().min(self.piece.len() - self.at);
        out[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl S3Storage {
    /// Deletes an emptied folder's own key (see `remove_dir_all`); never the bucket's root.
    fn delete_folder_marker(&self, key: &str) -> io::Result<()> {
        if key.is_empty() {
            Ok(())
        } else {
            self.store.delete(key)
        }
    }

    fn buffered(&self, key: String) -> Buffered {
        Buffered {
            store: self.store.clone(),
            key,
            bytes: Vec::new(),
            put: false,
        }
    }
}

impl Storage for S3Storage {
    fn create_dir_all(&self, path: &std::path::Path) -> io::Result<()> {
        self.key(path).map(drop)
    }
    fn create_dir(&self, path: &std::path::Path) -> io::Result<()> {
        // Attempt folders have random write ids; a key prefix exists once written to.
        let key = self.key(path)?;
        if self.store.list_children(&key)?.is_empty() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ))
        }
    }
    fn create_new(&self, path: &std::path::Path) -> io::Result<Box<dyn StorageFile>> {
        let key = self.key(path)?;
        match self.store.len(&key) {
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(self.buffered(key))),
            Err(e) => Err(e),
        }
    }
    fn open(&self, path: &std::path::Path) -> io::Result<Box<dyn io::Read + Send>> {
        let key = self.key(path)?;
        let len = self.store.len(&key)?;
        Ok(Box::new(S3Reader {
            store: self.store.clone(),
            key,
            len,
            pos: 0,
            piece: Vec::new(),
            at: 0,
        }))
    }
    fn len(&self, path: &std::path::Path) -> io::Result<u64> {
        self.store.len(&self.key(path)?)
    }
    fn rename_no_replace(&self, from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
        let (from, to) = (self.key(from)?, self.key(to)?);
        let bytes = self.store.get(&from)?;
        self.store.put_new(&to, bytes)?;
        self.store.delete(&from)
    }
    fn sync_dir(&self, path: &std::path::Path) -> io::Result<()> {
        self.key(path).map(drop)
    }
    fn list(&self, path: &std::path::Path) -> io::Result<Vec<String>> {
        self.store.list_children(&self.key(path)?)
    }
    fn remove_file(&self, path: &std::path::Path) -> io::Result<()> {
        let key = self.key(path)?;
        match self.store.len(&key) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            _ => self.store.delete(&key),
        }
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> io::Result<()> {
        let key = self.key(path)?;
        for k in self.store.list(&key)? {
            self.store.delete(&k)?;
        }
        // A server with folders (SeaweedFS) keeps the emptied folder, listed in its parent,
        // until the folder's own key is deleted; on S3 this deletes nothing.
        self.delete_folder_marker(&key)
    }
    fn remove_dir(&self, path: &std::path::Path) -> io::Result<()> {
        let key = self.key(path)?;
        if self.store.list_children(&key)?.is_empty() {
            self.delete_folder_marker(&key)
        } else {
            Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{} is not empty", path.display()),
            ))
        }
    }
    fn try_lock(&self, path: &std::path::Path) -> io::Result<Option<Box<dyn StorageLock>>> {
        let key = self.key(path)?;
        Ok(S3Lock::take(&self.store, &key)?.map(|l| Box::new(l) as Box<dyn StorageLock>))
    }
    fn create_object(&self, path: &std::path::Path) -> Option<io::Result<Box<dyn ObjectWriter>>> {
        Some(self.key(path).map(|k| {
            Box::new(S3Object {
                buf: self.buffered(k),
                upload: None,
                inflight: std::collections::VecDeque::new(),
            }) as Box<dyn ObjectWriter>
        }))
    }
    fn has_locks(&self, _path: &std::path::Path) -> bool {
        false
    }
    fn is_abandoned(&self, dir: &std::path::Path) -> bool {
        let Ok(objects) = self.key(dir).and_then(|k| self.store.list_modified(&k)) else {
            return false;
        };
        let newest = objects.iter().map(|(_, t)| *t).max();
        newest.is_none_or(|t| {
            std::time::SystemTime::now()
                .duration_since(t)
                .is_ok_and(|age| age >= self.grace)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_by_the_stores_clock_and_its_own_time_to_live() {
        let t = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let ttl = std::time::Duration::from_secs(60);
        assert!(!expired_by_store(t(1000), t(1000), ttl));
        // Whole seconds: one more than the time to live, as a time read back may be a
        // second early.
        assert!(!expired_by_store(t(1000), t(1061), ttl));
        assert!(expired_by_store(t(1000), t(1062), ttl));
        let ms = |m: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(m);
        let short = std::time::Duration::from_millis(1500);
        assert!(!expired_by_store(ms(0), ms(3000), short));
        assert!(expired_by_store(ms(0), ms(3001), short));
        // The store's "now" before the object's time (another replica's clock): live.
        assert!(!expired_by_store(t(1000), t(900), ttl));
        // Bodies of earlier builds have no time to live: the default.
        let old: LockBody =
            serde_json::from_str(r#"{"owner":"a","pid":1,"refreshed_unix_ms":5}"#).unwrap();
        assert_eq!(old.ttl(), S3_LOCK_TTL);
        assert!(
            !holder_is_gone(&old),
            "a holder elsewhere is alive until it expires"
        );
        let ours: LockBody = serde_json::from_slice(&lock_body("me")).unwrap();
        assert_eq!(ours.ttl(), S3_LOCK_TTL);
        assert!(!holder_is_gone(&ours));
        // A body claiming a time to live of days keeps others out ten minutes at most.
        let greedy: LockBody = serde_json::from_str(
            r#"{"owner":"a","pid":1,"refreshed_unix_ms":5,"ttl_ms":999999999999}"#,
        )
        .unwrap();
        assert_eq!(greedy.ttl(), S3_LOCK_TTL_MAX);
    }

    #[test]
    fn a_holder_is_gone_only_when_its_pid_is_reused_or_no_process_has_it() {
        // Readable start times decide alone: the same start is the holder, another is a
        // reused pid.
        assert!(!is_gone(7, Some(7), || unreachable!()));
        assert!(is_gone(7, Some(8), || unreachable!()));
        // Unreadable (`hidepid`, another user's process): alive while a process has the pid.
        assert!(!is_gone(7, None, || true));
        assert!(is_gone(7, None, || false));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_exists_sees_this_process_and_not_a_finished_child() {
        assert!(process_exists(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap(); // reaped: the pid names no process (until reused)
        assert!(!process_exists(pid) || process_started(pid).is_some());
        // pid 1 exists whoever owns it (EPERM for another user is "exists").
        assert!(process_exists(1));
        assert!(process_exists(0), "not a holder's pid: never taken as gone");
    }
}
