//! Broadcast variables: every task reads the one shared value; a destroyed broadcast is a
//! clear task failure, never a silent stale read; the value is freed with its last handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flintlock::{Context, Error};

fn ctx() -> Context {
    Context::builder().threads(2).build().unwrap()
}

#[test]
fn tasks_read_the_shared_value() {
    let ctx = ctx();
    let table: Vec<u64> = (0..1000).map(|x| x * x).collect();
    let bc = ctx.broadcast(table);
    let b = bc.clone();
    let looked_up = ctx.range(0..1000, 8).map(move |i| b[i as usize]);
    assert_eq!(
        looked_up.reduce(|a, b| a + b).unwrap(),
        Some((0..1000u64).map(|x| x * x).sum::<u64>())
    );
    assert_eq!(bc.value().len(), 1000);
    assert_ne!(ctx.broadcast(0u8).id(), bc.id());
}

#[test]
fn a_destroyed_broadcast_fails_the_task_that_uses_it_naming_the_line() {
    let ctx = ctx();
    let bc = ctx.broadcast(vec![1, 2, 3]);
    let b = bc.clone();
    let rdd = ctx.range(0..3, 1).map(move |i| b.value()[i as usize]);
    assert_eq!(rdd.collect().unwrap(), vec![1, 2, 3]);
    bc.destroy();
    bc.destroy(); // harmless
    assert!(bc.is_destroyed());
    assert_eq!(bc.try_value(), None);
    let err = rdd.collect().unwrap_err();
    match &err {
        Error::TaskFailed { message, .. } => {
            assert!(
                message.contains(&format!("broadcast {}", bc.id())),
                "{message}"
            );
            assert!(message.contains("broadcast_variables.rs"), "{message}");
        }
        other => panic!("expected TaskFailed, got {other}"),
    }
    assert!(format!("{bc:?}").contains("destroyed_at"));
}

struct CountsDrops(Arc<AtomicUsize>);
impl Drop for CountsDrops {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_value_is_freed_with_the_last_handle() {
    let ctx = ctx();
    let drops = Arc::new(AtomicUsize::new(0));
    let bc = ctx.broadcast(CountsDrops(drops.clone()));
    let b = bc.clone();
    let rdd = ctx.range(0..10, 2).map(move |x| {
        let _ = &b.value().0;
        x
    });
    assert_eq!(rdd.count().unwrap(), 10);
    drop(bc);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the RDD's closure still holds it"
    );
    drop(rdd);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
