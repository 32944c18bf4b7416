//! `open_state` reads a stateful operator's committed state at a retained batch from the
//! checkpoint folder, offline and while the stream runs, with the stream's exact content;
//! anything else is an error that says what is there.

use crate::common;

use common::stream::{model, WordCount};
use flintlock::streaming::{self, StreamingContext, Until};
use flintlock::Error;

#[test]
fn the_newest_committed_state_reads_back_exactly_while_the_stream_holds_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let wc = WordCount::new(4, 12, 3);
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
    s.run(Until::Batches(10)).unwrap();
    // The stream is alive and holds the folder's lock: queries only read.
    let batches = streaming::state_batches(&ctx, &ckpt, "counts").unwrap();
    assert_eq!(
        batches,
        vec![8],
        "state checkpoints at 2, 5, 8; retention keeps the newest"
    );
    let state = streaming::open_state::<String, u64>(&ctx, &ckpt, "counts", 8).unwrap();
    let got: std::collections::BTreeMap<String, u64> =
        state.collect().unwrap().into_iter().collect();
    assert_eq!(got, model(4, 9)[8]);
    // The stream goes on undisturbed.
    s.run(Until::Committed(11)).unwrap();
}

#[test]
fn a_batch_without_a_retained_state_is_an_error_listing_those_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let wc = WordCount::new(4, 12, 3);
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
    s.run(Until::Batches(7)).unwrap();
    drop(s);
    match streaming::open_state::<String, u64>(&ctx, &ckpt, "counts", 4) {
        Err(Error::InvalidArgument(m)) => {
            assert!(m.contains("batch 4") && m.contains("retained: 5"), "{m}")
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    match streaming::open_state::<String, u64>(&ctx, &ckpt, "nope", 5) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("`nope`"), "{m}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    assert!(
        streaming::open_state::<String, i32>(&ctx, &ckpt, "counts", 5).is_err(),
        "another state type is refused"
    );
    assert!(matches!(
        streaming::open_state::<String, u64>(&ctx, dir.path(), "counts", 5),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_stream_without_state_checkpoints_yet_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, out) = (dir.path().join("ckpt"), dir.path().join("out"));
    let ctx = common::ctx();
    let wc = WordCount::new(4, 12, 10);
    let (mut s, _) = StreamingContext::get_or_create(&ctx, &ckpt, |c| wc.build(c, &out)).unwrap();
    s.run(Until::Batches(3)).unwrap();
    let err = streaming::state_batches(&ctx, &ckpt, "counts").unwrap_err();
    assert!(err.to_string().contains("no commit names a state"), "{err}");
}
