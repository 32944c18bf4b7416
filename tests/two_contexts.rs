//! RDDs of two contexts never mix (DESIGN §4, issue 9 item 7): combining them is an error
//! of the action naming both contexts, never a wrong result or an internal error.

use crate::common;

use flintlock::{CheckpointState, Error, Rdd};

fn assert_mismatch<T: flintlock::Data>(rdd: &Rdd<T>) {
    let err = rdd.count().unwrap_err();
    match &err {
        Error::ContextMismatch { this, other, .. } => {
            assert_ne!(this, other);
            assert!(
                this.contains("context #") && other.contains("context #"),
                "{err}"
            );
        }
        other => panic!("expected ContextMismatch, got {other}"),
    }
    assert!(rdd.collect().is_err());
}

#[test]
fn a_join_across_contexts_is_an_error_naming_both() {
    let (a, b) = (common::ctx(), common::ctx());
    let left = a.parallelize(vec![(1, 'a'), (2, 'b')], 2);
    let right = b.parallelize(vec![(1, 10), (2, 20)], 2);
    assert_mismatch(&left.join(&right));
    assert_mismatch(&right.cogroup(&left));
    assert_mismatch(&left.left_outer_join(&right));
}

#[test]
fn zips_unions_and_cartesians_across_contexts_are_errors() {
    let (a, b) = (common::ctx(), common::ctx());
    let x = a.range(0..10, 2);
    let y = b.range(100..110, 2);
    assert_mismatch(&x.zip(&y));
    assert_mismatch(&x.zip_partitions(&y, |a, _| a));
    assert_mismatch(&x.union(&y));
    assert_mismatch(&x.cartesian(&y));
    // The mix is inherited by every descendant.
    assert_mismatch(&x.union(&y).map(|v| v + 1).filter(|_| true));
    // Each side on its own still works.
    assert_eq!(x.count().unwrap(), 10);
    assert_eq!(y.count().unwrap(), 10);
}

#[test]
fn a_marked_rdd_of_the_other_context_is_never_claimed_by_a_mixed_job() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::ctx_with_dir(dir.path());
    let b = common::ctx_with_dir(dir.path());
    let marked = b.range(0..10, 2).map(|x| x * 2);
    marked.checkpoint().unwrap();
    let mixed = a.range(0..10, 2).union(&marked);
    assert_mismatch(&mixed);
    assert_eq!(marked.checkpoint_state(), CheckpointState::Marked);
    // Its own context checkpoints it as usual.
    assert_eq!(marked.count().unwrap(), 10);
    assert!(marked.is_checkpointed());
}

#[test]
fn contexts_sharing_an_app_id_are_still_told_apart() {
    let a = flintlock::Context::builder()
        .app_id("same")
        .threads(1)
        .build()
        .unwrap();
    let b = flintlock::Context::builder()
        .app_id("same")
        .threads(1)
        .build()
        .unwrap();
    let x = a.range(0..4, 2);
    let y = b.range(0..4, 2);
    assert_mismatch(&x.zip(&y));
}
