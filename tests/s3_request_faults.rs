//! Checkpoints on S3 under failing requests: a fault-injecting layer around the store client
//! (`S3Options::layer`) fails the k-th request of one kind (PUT, start of a multipart upload,
//! upload of a piece, completion, GET, LIST, DELETE), once or from the k-th on, for every k,
//! and also applies the k-th PUT but loses its answer. After every round: an action either
//! returns exactly the lineage's result or an error naming the fault and the endpoint; every
//! manifest on the store reads back exactly (never a committed-but-wrong checkpoint); the next
//! action without faults succeeds, checkpointed; and start-up cleanup (grace period zero)
//! leaves no unmanifested attempt behind.
//!
//! They need the `s3` feature and a server: `.ci/run` runs them (see the README).

#[cfg(not(feature = "s3"))]
#[test]
#[ignore = "needs the `s3` feature and an S3 server: .ci/run runs it (see the README)"]
fn needs_the_s3_feature_and_a_server() {}

#[cfg(feature = "s3")]
use crate::common;

#[cfg(feature = "s3")]
mod on_s3 {
    use std::fmt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
    use parking_lot::Mutex;

    use flintlock::checkpoint::object_store::path::Path;
    use flintlock::checkpoint::object_store::{
        self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
        UploadPart,
    };
    use flintlock::checkpoint::{S3Options, S3Storage, S3Store};
    use flintlock::{Context, Rdd};

    use super::common::backend::s3_prefix;

    /// The kinds of request a checkpoint makes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Put,
        StartUpload,
        UploadPiece,
        CompleteUpload,
        Get,
        List,
        Delete,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Mode {
        /// The k-th request fails.
        Once,
        /// Every request from the k-th on fails.
        From,
        /// The k-th request is applied and its answer lost (the client sees an error).
        AnswerLost,
    }

    enum Verdict {
        Go,
        Fail,
        ApplyThenFail,
    }

    #[derive(Default)]
    struct Faults {
        /// Before the next manifest's PUT, delete the parts beside it (another process's
        /// cleanup acting while the writer stalled).
        steal_parts: std::sync::atomic::AtomicBool,
        /// The next conditional PUT of a lock object is applied and then refused as if the
        /// object were there already: what a retried request whose first try landed gets.
        lock_put_refused_after_landing: std::sync::atomic::AtomicBool,
        /// Before the next refresh of a lock object (a PUT that is not a create), another
        /// holder takes the lock: what a taker that removed the lease and took it between
        /// the refresher's read and its write leaves.
        lock_refresh_overtaken: std::sync::atomic::AtomicBool,
        /// The next refresh of a lock object is applied and then refused as changed
        /// meanwhile: what a retried conditional request whose first try landed gets.
        lock_refresh_refused_after_landing: std::sync::atomic::AtomicBool,
        /// Every conditional rewrite (`If-Match`) of a lock object is refused unapplied: a
        /// store that does not honour the condition.
        refuse_if_match: std::sync::atomic::AtomicBool,
        armed: Mutex<Option<(Kind, usize, Mode)>>,
        seen: AtomicUsize,
        injected: AtomicUsize,
    }

    impl Faults {
        fn arm(&self, kind: Kind, k: usize, mode: Mode) {
            self.seen.store(0, Ordering::SeqCst);
            self.injected.store(0, Ordering::SeqCst);
            *self.armed.lock() = Some((kind, k, mode));
        }
        /// Disarms, returning how many faults were injected.
        fn disarm(&self) -> usize {
            *self.armed.lock() = None;
            self.injected.load(Ordering::SeqCst)
        }
        fn check(&self, kind: Kind) -> Verdict {
            let armed = self.armed.lock();
            let Some((k_kind, k, mode)) = *armed else {
                return Verdict::Go;
            };
            if k_kind != kind {
                return Verdict::Go;
            }
            let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let hit = match mode {
                Mode::Once | Mode::AnswerLost => n == k,
                Mode::From => n >= k,
            };
            if !hit {
                return Verdict::Go;
            }
            self.injected.fetch_add(1, Ordering::SeqCst);
            if mode == Mode::AnswerLost {
                Verdict::ApplyThenFail
            } else {
                Verdict::Fail
            }
        }
    }

    fn fault(kind: Kind) -> object_store::Error {
        object_store::Error::Generic {
            store: "faulty",
            source: format!("injected fault ({kind:?})").into(),
        }
    }

    /// The store client with faults: every request flintlock makes passes here.
    #[derive(Debug)]
    struct FaultyStore {
        inner: Arc<dyn ObjectStore>,
        faults: Arc<Faults>,
    }

    impl fmt::Debug for Faults {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Faults")
        }
    }

    impl fmt::Display for FaultyStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Faulty({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for FaultyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if location.as_ref().ends_with("/_manifest.json")
                && self.faults.steal_parts.swap(false, Ordering::SeqCst)
            {
                let folder = Path::from(location.as_ref().trim_end_matches("/_manifest.json"));
                let parts: Vec<ObjectMeta> = self.inner.list(Some(&folder)).try_collect().await?;
                for part in parts {
                    self.inner.delete(&part.location).await?;
                }
            }
            if location.as_ref().ends_with("/.lock")
                && opts.mode == object_store::PutMode::Create
                && self
                    .faults
                    .lock_put_refused_after_landing
                    .swap(false, Ordering::SeqCst)
            {
                self.inner.put_opts(location, payload, opts).await?;
                return Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "412 on a retried conditional PUT whose first try landed".into(),
                });
            }
            if location.as_ref().ends_with("/.lock")
                && matches!(opts.mode, object_store::PutMode::Update(_))
                && self.faults.refuse_if_match.load(Ordering::SeqCst)
            {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: "a store that refuses every If-Match".into(),
                });
            }
            if location.as_ref().ends_with("/.lock") && opts.mode != object_store::PutMode::Create {
                if self
                    .faults
                    .lock_refresh_overtaken
                    .swap(false, Ordering::SeqCst)
                {
                    let body = format!(
                        r#"{{"owner":"a-taker","pid":1,"refreshed_unix_ms":{},"ttl_ms":600000}}"#,
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis()
                    );
                    self.inner.put(location, body.into_bytes().into()).await?;
                }
                if self
                    .faults
                    .lock_refresh_refused_after_landing
                    .swap(false, Ordering::SeqCst)
                {
                    self.inner.put_opts(location, payload, opts).await?;
                    return Err(object_store::Error::Precondition {
                        path: location.to_string(),
                        source: "412 on a retried conditional PUT whose first try landed".into(),
                    });
                }
            }
            match self.faults.check(Kind::Put) {
                Verdict::Go => self.inner.put_opts(location, payload, opts).await,
                Verdict::Fail => Err(fault(Kind::Put)),
                Verdict::ApplyThenFail => {
                    self.inner.put_opts(location, payload, opts).await?;
                    Err(fault(Kind::Put))
                }
            }
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            if let Verdict::Fail | Verdict::ApplyThenFail = self.faults.check(Kind::StartUpload) {
                return Err(fault(Kind::StartUpload));
            }
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(FaultyUpload {
                inner,
                faults: self.faults.clone(),
            }))
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            match self.faults.check(Kind::Get) {
                Verdict::Go => self.inner.get_opts(location, options).await,
                _ => Err(fault(Kind::Get)),
            }
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            let (inner, faults) = (self.inner.clone(), self.faults.clone());
            locations
                .and_then(move |location| {
                    let (inner, faults) = (inner.clone(), faults.clone());
                    async move {
                        match faults.check(Kind::Delete) {
                            Verdict::Go => inner.delete(&location).await.map(|()| location),
                            Verdict::Fail => Err(fault(Kind::Delete)),
                            Verdict::ApplyThenFail => {
                                inner.delete(&location).await?;
                                Err(fault(Kind::Delete))
                            }
                        }
                    }
                })
                .boxed()
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            match self.faults.check(Kind::List) {
                Verdict::Go => self.inner.list(prefix),
                _ => futures_util::stream::once(async { Err(fault(Kind::List)) }).boxed(),
            }
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            match self.faults.check(Kind::List) {
                Verdict::Go => self.inner.list_with_delimiter(prefix).await,
                _ => Err(fault(Kind::List)),
            }
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[derive(Debug)]
    struct FaultyUpload {
        inner: Box<dyn MultipartUpload>,
        faults: Arc<Faults>,
    }

    #[async_trait]
    impl MultipartUpload for FaultyUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            match self.faults.check(Kind::UploadPiece) {
                Verdict::Go => self.inner.put_part(data),
                Verdict::Fail => Box::pin(async { Err(fault(Kind::UploadPiece)) }),
                Verdict::ApplyThenFail => {
                    let sent = self.inner.put_part(data);
                    Box::pin(async {
                        sent.await?;
                        Err(fault(Kind::UploadPiece))
                    })
                }
            }
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            match self.faults.check(Kind::CompleteUpload) {
                Verdict::Go => self.inner.complete().await,
                Verdict::Fail => Err(fault(Kind::CompleteUpload)),
                Verdict::ApplyThenFail => {
                    self.inner.complete().await?;
                    Err(fault(Kind::CompleteUpload))
                }
            }
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.inner.abort().await
        }
    }

    type Data = (u64, u64);

    /// A context owning app `app` below `url`, through the store client with `faults`.
    fn owner(url: &str, app: &str, faults: &Arc<Faults>) -> flintlock::Result<Context> {
        Context::builder()
            .app_id(app)
            .checkpoint_dir(url)
            .checkpoint_storage(storage(url, faults, false))
            .build()
    }

    /// Checkpoints the small data in `ctx`, which must commit and read back.
    fn checkpoints_small_data(ctx: &Context) {
        let rdd = data(ctx, false);
        rdd.checkpoint().unwrap();
        assert_eq!(rdd.count().unwrap(), 3_000);
        assert!(rdd.is_checkpointed());
    }

    /// Three small partitions, or one of about 20 MiB (two multipart pieces).
    fn data(ctx: &Context, big: bool) -> Rdd<Data> {
        if big {
            ctx.range(0..1_500_000, 1)
                .map(|x| (x, x.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        } else {
            ctx.range(0..3_000, 3).map(|x| (x, x * 3))
        }
    }

    fn bucket_and_prefix(url: &str) -> (String, String) {
        let rest = url.trim_start_matches("s3://");
        let (b, p) = rest.split_once('/').unwrap();
        (b.to_string(), p.to_string())
    }

    fn storage(url: &str, faults: &Arc<Faults>, grace_zero: bool) -> S3Storage {
        let faults = faults.clone();
        let mut options = S3Options::from_env().layer(move |inner| {
            Arc::new(FaultyStore {
                inner,
                faults: faults.clone(),
            })
        });
        if grace_zero {
            options = options.cleanup_grace(std::time::Duration::ZERO);
        }
        S3Storage::open(&bucket_and_prefix(url).0, &options).unwrap()
    }

    /// Every committed checkpoint below `url` reads back exactly `expected`.
    fn every_manifest_reads_back(url: &str, expected: &[Data], case: &str) -> usize {
        let store = S3Store::open(url, &S3Options::from_env()).unwrap();
        let reader = Context::new();
        let mut n = 0;
        for key in store.list("").unwrap() {
            let Some(folder) = key.strip_suffix("/_manifest.json") else {
                continue;
            };
            let mut got = reader
                .open_checkpoint::<Data>(format!("{url}/{folder}"))
                .and_then(|r| r.collect())
                .unwrap_or_else(|e| panic!("{case}: committed {folder} does not read back: {e}"));
            got.sort();
            assert_eq!(got, expected, "{case}: committed {folder} holds other data");
            n += 1;
        }
        n
    }

    /// Sweeps `k` over the requests of `kind` in one checkpoint write and read.
    fn sweep(kind: Kind, mode: Mode, big: bool) {
        let url = s3_prefix(&format!("faults-{kind:?}-{mode:?}").to_lowercase());
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
        let faults = Arc::new(Faults::default());
        let ctx = Context::builder()
            .threads(2)
            .app_id("faults")
            .checkpoint_dir(&url)
            .checkpoint_storage(storage(&url, &faults, false))
            .clean_checkpoints(true)
            .build()
            .unwrap();
        let mut expected = data(&ctx, big).collect().unwrap();
        expected.sort();
        let mut rounds_failed = 0;
        let mut rounds = 0;
        // The previous round's checkpointed RDD: dropped under the faults, so that its
        // checkpoint's removal (clean_checkpoints) meets them too.
        let mut previous = Some(data(&ctx, big));
        if let Some(first) = &previous {
            first.checkpoint().unwrap();
            first.count().unwrap();
        }
        for k in 1.. {
            let case = format!("{kind:?} {mode:?} #{k}");
            let rdd = data(&ctx, big);
            rdd.checkpoint().unwrap();
            faults.arm(kind, k, mode);
            // One action writes the checkpoint, the next reads it back.
            let results = [rdd.collect(), rdd.collect()];
            drop(previous.take());
            // Its removal runs in the background: finished under the faults.
            flintlock::checkpoint::wait_for_removals();
            let injected = faults.disarm();
            for r in results {
                match r {
                    Ok(mut got) => {
                        got.sort();
                        assert_eq!(got, expected, "{case}: an action returned other data");
                    }
                    Err(e) => {
                        rounds_failed += 1;
                        let msg = e.to_string();
                        assert!(injected > 0, "{case}: failed without a fault: {msg}");
                        assert!(msg.contains("injected fault"), "{case}: {msg}");
                        assert!(msg.contains(&endpoint), "{case}: no endpoint: {msg}");
                    }
                }
            }
            every_manifest_reads_back(&url, &expected, &case);
            // The next action retries and succeeds.
            let mut again = rdd
                .collect()
                .unwrap_or_else(|e| panic!("{case}: the action after the faults: {e}"));
            again.sort();
            assert_eq!(again, expected, "{case}");
            assert!(
                rdd.is_checkpointed(),
                "{case}: not checkpointed after retry"
            );
            previous = Some(rdd);
            rounds += 1;
            if injected == 0 {
                break; // fewer than k requests of this kind: swept them all
            }
            assert!(k < 200, "{case}: the sweep does not end");
        }
        drop(previous);
        drop(ctx);
        eprintln!("{kind:?} {mode:?}: {rounds} rounds, {rounds_failed} actions failed");
        if mode != Mode::AnswerLost && kind != Kind::Delete {
            assert!(rounds_failed > 0, "{kind:?} {mode:?}: no round failed");
        }
        // Start-up cleanup (with no grace period: no writer is alive) removes every attempt
        // the faults left without a manifest.
        let cleaner = Context::builder()
            .app_id("faults")
            .checkpoint_dir(&url)
            .checkpoint_storage(storage(&url, &faults, true))
            .build()
            .unwrap();
        drop(cleaner);
        let store = S3Store::open(&url, &S3Options::from_env()).unwrap();
        let keys = store.list("").unwrap();
        let manifested: Vec<&str> = keys
            .iter()
            .filter_map(|k| k.strip_suffix("/_manifest.json"))
            .collect();
        let stray: Vec<&String> = keys
            .iter()
            .filter(|k| k.contains("/rdd-"))
            .filter(|k| !manifested.iter().any(|m| k.starts_with(&format!("{m}/"))))
            .collect();
        assert!(
            stray.is_empty(),
            "{kind:?} {mode:?}: left behind: {stray:?}"
        );
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_lock_put_that_landed_before_its_retry_was_refused_is_this_processs_own() {
        let url = s3_prefix("own-lock");
        let faults = Arc::new(Faults::default());
        faults
            .lock_put_refused_after_landing
            .store(true, Ordering::SeqCst);
        let ctx = owner(&url, "own-lock", &faults)
            .expect("the lock this process wrote is its own, not another's");
        assert!(!faults.lock_put_refused_after_landing.load(Ordering::SeqCst));
        checkpoints_small_data(&ctx);
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_lease_refresh_never_overwrites_a_holder_that_took_over_and_knows_its_own_write() {
        let url = s3_prefix("refresh");
        let faults: [Arc<Faults>; 4] = Default::default();
        let [_, overtaken, landed, quirky] = &faults;
        overtaken
            .lock_refresh_overtaken
            .store(true, Ordering::SeqCst);
        landed
            .lock_refresh_refused_after_landing
            .store(true, Ordering::SeqCst);
        quirky.refuse_if_match.store(true, Ordering::SeqCst);
        let store = S3Store::open(&url, &S3Options::from_env()).unwrap();
        let body = |app: &str| String::from_utf8(store.get(&format!("{app}/.lock")).unwrap());
        let apps = ["plain", "overtaken", "landed", "quirky"];
        let contexts: Vec<Context> = apps
            .iter()
            .zip(&faults)
            .map(|(app, f)| owner(&url, app, f).unwrap())
            .collect();
        let first: Vec<String> = apps.iter().map(|a| body(a).unwrap()).collect();
        // A context with a generated app id that empties its folder when dropped, whose
        // lease is taken over too.
        let generated_faults = Arc::new(Faults::default());
        generated_faults
            .lock_refresh_overtaken
            .store(true, Ordering::SeqCst);
        let generated = Context::builder()
            .checkpoint_dir(&url)
            .checkpoint_storage(storage(&url, &generated_faults, false))
            .clean_checkpoints(true)
            .build()
            .unwrap();
        // Holders rewrite their lease every 10 s; one whose store refuses every
        // conditional rewrite falls back to a plain one at its second refusal in a row.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(50);
        let mut rewritten = [false; 4];
        while rewritten != [true, false, true, true] {
            assert!(
                std::time::Instant::now() < deadline,
                "leases rewritten in 50 s: {rewritten:?} of {apps:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
            for (i, app) in apps.iter().enumerate() {
                let now = body(app).unwrap();
                rewritten[i] = now != first[i] && !now.contains("a-taker");
            }
        }
        assert!(!overtaken.lock_refresh_overtaken.load(Ordering::SeqCst));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while generated_faults
            .lock_refresh_overtaken
            .load(Ordering::SeqCst)
        {
            assert!(std::time::Instant::now() < deadline, "no refresh in 20 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        // Its folder is the new holder's now: dropping the context empties nothing.
        let app = generated.app_id().to_string();
        drop(generated);
        assert!(
            store
                .list(&app)
                .unwrap()
                .contains(&format!("{app}/.flintlock-app")),
            "a context that lost its lease emptied the folder of its new holder"
        );
        let holder = body("overtaken").unwrap();
        assert!(
            holder.contains("a-taker"),
            "the refresh overwrote the new holder's lease: {holder}"
        );
        let mut contexts = contexts.into_iter();
        let (plain, lost) = (contexts.next().unwrap(), contexts.next().unwrap());
        // The holder that lost its lease commits nothing into the folder.
        let rdd = data(&lost, false);
        rdd.checkpoint().unwrap();
        match rdd.count() {
            Err(flintlock::Error::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(!rdd.is_checkpointed());
        assert_eq!(every_manifest_reads_back(&url, &[], "overtaken"), 0);
        drop((rdd, lost));
        let holder = body("overtaken").unwrap();
        assert!(
            holder.contains("a-taker"),
            "released another's lease: {holder}"
        );
        // The others hold their leases still (a refresh refused after it landed is the
        // holder's own; a store that refuses conditions gets plain rewrites): they commit.
        for ctx in std::iter::once(plain).chain(contexts) {
            checkpoints_small_data(&ctx);
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_writer_whose_parts_were_cleaned_up_while_it_stalled_withdraws_its_manifest() {
        let url = s3_prefix("stalled");
        let faults = Arc::new(Faults::default());
        let ctx = owner(&url, "stalled", &faults).unwrap();
        let rdd = data(&ctx, false);
        rdd.checkpoint().unwrap();
        faults.steal_parts.store(true, Ordering::SeqCst);
        let err = rdd
            .count()
            .expect_err("a commit without its parts must fail");
        assert!(
            err.to_string().contains("removed while it stalled"),
            "{err}"
        );
        assert!(!rdd.is_checkpointed());
        assert_eq!(
            every_manifest_reads_back(&url, &[], "stalled"),
            0,
            "a manifest stayed"
        );
        // The next action writes it again.
        assert_eq!(rdd.count().unwrap(), 3_000);
        assert!(rdd.is_checkpointed());
        let mut expected = data(&ctx, false).collect().unwrap();
        expected.sort();
        assert_eq!(every_manifest_reads_back(&url, &expected, "stalled"), 1);
    }

    macro_rules! sweeps {
        ($($name:ident: $kind:ident, $mode:ident, $big:expr_2021;)*) => {$(
            #[test]
            #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
            fn $name() {
                sweep(Kind::$kind, Mode::$mode, $big);
            }
        )*};
    }

    sweeps! {
        every_failed_put_leaves_no_wrong_checkpoint_and_the_retry_succeeds: Put, Once, false;
        puts_failing_from_any_request_on_leave_no_wrong_checkpoint: Put, From, false;
        a_put_applied_with_its_answer_lost_is_settled_by_reading_back: Put, AnswerLost, false;
        every_failed_get_fails_only_its_action: Get, Once, false;
        gets_failing_from_any_request_on_fail_only_their_actions: Get, From, false;
        every_failed_listing_leaves_no_wrong_checkpoint: List, Once, false;
        listings_failing_from_any_request_on_leave_no_wrong_checkpoint: List, From, false;
        every_failed_delete_leaves_committed_checkpoints_whole: Delete, Once, false;
        deletes_failing_from_any_request_on_leave_committed_checkpoints_whole: Delete, From, false;
        every_failed_upload_start_is_an_error_and_the_retry_succeeds: StartUpload, Once, true;
        every_failed_piece_upload_aborts_and_the_retry_succeeds: UploadPiece, Once, true;
        piece_uploads_failing_from_any_on_abort_and_the_retry_succeeds: UploadPiece, From, true;
        every_failed_upload_completion_aborts_and_the_retry_succeeds: CompleteUpload, Once, true;
        a_completion_applied_with_its_answer_lost_is_an_error_or_exact: CompleteUpload, AnswerLost, true;
    }
}
