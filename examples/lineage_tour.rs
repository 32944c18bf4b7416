//! A guided tour of lineage, loss and recovery: run it and read along.
//!
//! ```text
//! cargo run --example lineage_tour                 # in a temporary folder, removed at the end
//! cargo run --example lineage_tour -- /tmp/tour    # in a folder that stays
//! ```
//!
//! It builds a small iterative job and prints the scores and `to_debug_string()` as the
//! lineage grows; loses a cached partition and recomputes it from lineage, counting the
//! closure's calls; marks a checkpoint, prints every state transition as it happens, shows
//! the files that were written, loses the partition again and reads it back with no
//! recomputation; shows what a local checkpoint cannot do; and writes the lineage as a
//! Graphviz file and the whole run as an event log for `flintlock report`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flintlock::{Context, Event, Rdd};

fn io_err(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> flintlock::Error + use<> {
    let path = path.to_path_buf();
    move |source| flintlock::Error::Io { op, path, source }
}

fn sorted(rdd: &Rdd<(u32, f64)>) -> flintlock::Result<Vec<(u32, f64)>> {
    let mut v = rdd.collect()?;
    v.sort_by_key(|p| p.0);
    Ok(v)
}

#[path = "support/tracing_output.rs"]
mod tracing_output;

fn main() -> flintlock::Result<()> {
    tracing_output::init();
    // The tour's folder: the one given, kept; otherwise a temporary one, removed at the end.
    let kept: Option<PathBuf> = std::env::args_os().nth(1).map(PathBuf::from);
    let temp = match &kept {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            None
        }
        None => Some(tempfile::tempdir().map_err(io_err("create", &std::env::temp_dir()))?),
    };
    let dir: PathBuf = match (&kept, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("one of the two is set"),
    };
    let event_log = dir.join("events.jsonl");
    let ctx = Context::builder()
        .app_name("lineage-tour")
        .threads(2)
        .checkpoint_dir(&dir)
        .event_log(&event_log)
        .build()?;
    ctx.add_listener(|e: &Event| match e {
        Event::CheckpointStateChanged { rdd_id, from, to } => {
            println!("  [event] rdd {rdd_id}: {from} -> {to}")
        }
        Event::CheckpointPartitionWritten { rdd_id, partition, records, bytes } => {
            println!("  [event] rdd {rdd_id}: partition {partition} written ({records} records, {bytes} bytes)")
        }
        Event::CheckpointCommitted { rdd_id, path, .. } => {
            println!("  [event] rdd {rdd_id}: manifest committed in {}", path.display())
        }
        Event::LineageTruncated { rdd_id, checkpoint_rdd_id, checkpoint_kind, released_parents } => {
            println!("  [event] rdd {rdd_id}: lineage swapped for {checkpoint_kind} [{checkpoint_rdd_id}], parents {released_parents:?} released")
        }
        _ => {}
    });

    println!("== 1. A source and three rounds of a score update ==\n");
    let mut scores = ctx
        .parallelize((0u32..12).map(|k| (k % 4, 1.0f64)).collect(), 2)
        .set_name("scores");
    for round in 1..=3 {
        scores = scores
            .map_values(|s| s * 0.5 + 1.0)
            .reduce_by_key(|a, b| a + b)
            .set_name(format!("scores after round {round}"));
        println!(
            "round {round}: scores {:?}, lineage depth {}\n{}\n",
            sorted(&scores)?,
            scores.lineage_depth(),
            scores.to_debug_string()
        );
    }
    println!(
        "Each `+-` is a shuffle: a stage boundary. Only round 1 shuffles: its result is\n\
         hash-partitioned by key, map_values keeps that, so later reduce_by_key calls combine\n\
         in place (a narrow dependency), as in Spark. Each collect() above ran the whole\n\
         lineage again from the source: nothing is kept unless it is cached or checkpointed.\n"
    );

    println!("== 2. A cached partition is lost and recomputed from lineage ==\n");
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let scored = scores
        .map_values(move |s| {
            counter.fetch_add(1, Ordering::Relaxed);
            s * 10.0
        })
        .set_name("scored")
        .cache();
    scored.count()?;
    println!(
        "count() computed and cached it: the closure ran {} times",
        calls.load(Ordering::Relaxed)
    );
    scored.count()?;
    println!(
        "count() again, from the cache: still {} calls",
        calls.load(Ordering::Relaxed)
    );
    ctx.evict_block(scored.id(), 0);
    let before = calls.load(Ordering::Relaxed);
    scored.count()?;
    println!(
        "evict_block(partition 0), then count(): {} more calls — partition 0 was recomputed\n\
         from its lineage (the other partition came from the cache)\n",
        calls.load(Ordering::Relaxed) - before
    );

    println!("== 3. Mark a checkpoint; the next action writes it ==\n");
    scored.checkpoint()?;
    println!("state after checkpoint(): {:?}", scored.checkpoint_state());
    let before = calls.load(Ordering::Relaxed);
    println!("collect() = {:?}", sorted(&scored)?);
    println!(
        "state after the action: {:?} ({} closure calls: the cached blocks were written)\n",
        scored.checkpoint_state(),
        calls.load(Ordering::Relaxed) - before
    );

    println!("== 4. What is on disk ==\n");
    let path = scored
        .checkpoint_path()
        .ok_or_else(|| flintlock::Error::InvalidArgument("no checkpoint path".into()))?;
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .map_err(io_err("list", &path))?
        .filter_map(|e| e.ok())
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            format!("{} ({len} bytes)", e.file_name().to_string_lossy())
        })
        .collect();
    names.sort();
    println!("{}", path.display());
    for n in names {
        println!("  {n}");
    }

    println!("\n== 5. The lineage after truncation ==\n");
    println!(
        "depth {}\n{}\n",
        scored.lineage_depth(),
        scored.to_debug_string()
    );
    println!(
        "The parents are gone: the RDD now reads its checkpoint, and later rounds start here.\n"
    );

    println!("== 6. The same loss after the checkpoint: read back, not recomputed ==\n");
    ctx.evict_block(scored.id(), 0);
    let before = calls.load(Ordering::Relaxed);
    let again = sorted(&scored)?;
    println!(
        "evict_block(partition 0), then collect() = {again:?}\n\
         closure calls: {} — partition 0 was read back from its checkpoint file\n",
        calls.load(Ordering::Relaxed) - before
    );

    println!("== 7. A local checkpoint keeps only the cached blocks ==\n");
    let local = scores
        .map_values(|s| s + 1.0)
        .set_name("locally checkpointed");
    local.local_checkpoint()?;
    local.count()?;
    println!(
        "local_checkpoint() + count(): {:?}, lineage cut without writing a file:\n{}",
        local.checkpoint_state(),
        local.to_debug_string()
    );
    ctx.evict_block(local.id(), 0);
    match local.count() {
        Ok(n) => println!("count() after losing a block: {n} (unexpected)"),
        Err(e) => println!(
            "after evict_block(partition 0), count() fails, since nothing can recompute it:\n  {e}\n"
        ),
    }

    println!("== 8. Pictures ==\n");
    let next = scored
        .map_values(|s| s * 0.5 + 1.0)
        .reduce_by_key(|a, b| a + b);
    let dot = dir.join("lineage.dot");
    std::fs::write(&dot, next.to_dot()).map_err(io_err("write", &dot))?;
    drop((scored, scores, local, next));
    drop(ctx); // flushes the event log
    println!(
        "the lineage of one more round, as Graphviz: {}",
        dot.display()
    );
    println!("  dot -Tsvg {} -o lineage.svg", dot.display());
    println!(
        "every event of this tour, as an event log: {}",
        event_log.display()
    );
    println!(
        "  cargo run --release -- report {} -o tour.html",
        event_log.display()
    );
    match &kept {
        Some(d) => println!("\nThe tour's files stay in {}.", d.display()),
        None => println!(
            "\n{} is a temporary folder, removed now that the tour ends; give a folder to keep\n\
             it: cargo run --example lineage_tour -- /tmp/tour",
            dir.display()
        ),
    }
    Ok(())
}
