//! `S3Store` against a real S3-compatible server (SeaweedFS on loopback, started by
//! `.ci/run`): objects read back, conditional PUTs have exactly one winner among racing
//! writers, a call from inside a tokio runtime does not block it, and credentials never
//! appear in errors or `Debug` output; a wrong secret is an authorization error naming the
//! endpoint and bucket.
//!
//! These tests need the `s3` feature and the server: a plain `cargo test` shows one ignored
//! test saying so, and `.ci/run` runs them with `--all-features -- --include-ignored` after
//! `source .ci/seaweedfs.sh && start_seaweedfs` has set `AWS_ENDPOINT_URL` and the
//! credentials (see the README).

#[cfg(not(feature = "s3"))]
#[test]
#[ignore = "needs the `s3` feature and an S3 server: .ci/run runs it (see the README)"]
fn needs_the_s3_feature_and_a_server() {}

#[cfg(feature = "s3")]
mod on_s3 {
    use std::io::ErrorKind;
    use std::sync::{Arc, Barrier};

    use flintlock::checkpoint::{S3Options, S3Store};

    const NEEDS: &str = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)";

    /// A store on a fresh prefix of the test bucket.
    fn store(options: &S3Options) -> S3Store {
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set: this test {NEEDS}"));
        let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
        let prefix = format!(
            "test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let options = options.clone().endpoint(endpoint).allow_http(true);
        S3Store::open(&format!("s3://{bucket}/{prefix}"), &options).unwrap()
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn objects_read_back_list_and_delete() {
        let s = store(&S3Options::from_env());
        s.put("a/x", b"one".to_vec()).unwrap();
        s.put("a/y", vec![7; 3 << 20]).unwrap();
        s.put("b", Vec::new()).unwrap();
        assert_eq!(s.get("a/x").unwrap(), b"one");
        assert_eq!(s.get("a/y").unwrap(), vec![7; 3 << 20]);
        assert_eq!(s.get("b").unwrap(), Vec::<u8>::new());
        assert_eq!(s.list("a").unwrap(), vec!["a/x", "a/y"]);
        assert_eq!(s.list("").unwrap(), vec!["a/x", "a/y", "b"]);
        let missing = s.get("nope").unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(missing.to_string().contains("/nope"), "{missing}");
        s.delete("a/x").unwrap();
        s.delete("a/x").unwrap(); // nothing there: not an error
        assert_eq!(s.list("").unwrap(), vec!["a/y", "b"]);
        s.put("a/y", b"two".to_vec()).unwrap(); // a plain PUT replaces
        assert_eq!(s.get("a/y").unwrap(), b"two");
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_conditional_put_has_exactly_one_winner_among_eight_racing_threads() {
        let s = Arc::new(store(&S3Options::from_env()));
        for round in 0..4 {
            let key = format!("manifest-{round}");
            let barrier = Arc::new(Barrier::new(8));
            let results: Vec<(usize, std::io::Result<()>)> = (0..8)
                .map(|t| {
                    let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        (t, s.put_new(&key, format!("writer {t}").into_bytes()))
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            let winners: Vec<usize> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| *t)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            for (_, r) in &results {
                if let Err(e) = r {
                    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "round {round}: {e}");
                }
            }
            // The object is the winner's, whole.
            assert_eq!(
                s.get(&key).unwrap(),
                format!("writer {}", winners[0]).into_bytes()
            );
        }
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_call_from_inside_a_tokio_runtime_does_not_block_it() {
        let s = Arc::new(store(&S3Options::from_env()));
        s.put("k", b"v".to_vec()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async { s.get("k") }).unwrap();
        assert_eq!(got, b"v");
    }

    #[test]
    #[ignore = "needs an S3 server: .ci/run starts SeaweedFS (source .ci/seaweedfs.sh)"]
    fn a_wrong_secret_is_an_authorization_error_and_no_secret_is_ever_shown() {
        let secret = "s3cr3t-THAT-MUST-NOT-LEAK-42";
        let key_id = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "flintlock-ci".into());
        let wrong = S3Options::from_env().credentials(&key_id, secret);
        let s = store(&wrong);
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
        let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
        let mut texts = vec![format!("{wrong:?}"), format!("{s:?}")];
        for e in [
            s.put("x", b"x".to_vec()).unwrap_err(),
            s.put_new("x", b"x".to_vec()).unwrap_err(),
            s.get("x").unwrap_err(),
            s.list("").unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
            let text = e.to_string();
            assert!(text.contains(&endpoint) && text.contains(&bucket), "{text}");
            texts.push(text);
            texts.push(format!("{e:?}"));
        }
        // The right secret (from the environment) never shows either.
        if let Ok(real) = std::env::var("AWS_SECRET_ACCESS_KEY") {
            let s = store(&S3Options::from_env());
            texts.push(format!("{s:?}"));
            texts.push(s.get("missing").unwrap_err().to_string());
            for t in &texts {
                assert!(!t.contains(&real), "the secret shows in: {t}");
            }
        }
        for t in &texts {
            assert!(!t.contains(secret), "the secret shows in: {t}");
        }
    }

    #[test]
    fn urls_that_are_not_s3_bucket_prefix_are_refused_before_any_request() {
        for url in ["http://x/y", "s3://", "s3:///prefix", "bucket/prefix"] {
            match S3Store::open(url, &S3Options::from_env()) {
                Err(flintlock::Error::InvalidArgument(m)) => assert!(m.contains(url), "{m}"),
                other => panic!("{url}: expected InvalidArgument, got {other:?}"),
            }
        }
        let redacted = format!("{:?}", S3Options::from_env().credentials("id", "hunter2"));
        assert!(
            !redacted.contains("hunter2") && redacted.contains("<redacted>"),
            "{redacted}"
        );
    }
}
