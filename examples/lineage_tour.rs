//! A guided tour of lineage and checkpoints: run it and read along.
//!
//! ```text
//! cargo run --example lineage_tour
//! ```
//!
//! It builds a small iterative job, prints `to_debug_string()` as the lineage grows, marks a
//! checkpoint, prints every state transition as it happens, shows the folder that was
//! written, and prints the lineage after truncation.

use flintlock::{Context, Event};

fn main() -> flintlock::Result<()> {
    let dir = tempfile::tempdir().map_err(|e| flintlock::Error::Io {
        op: "create temp folder",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let ctx = Context::builder()
        .app_name("lineage-tour")
        .threads(2)
        .checkpoint_dir(dir.path())
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
            "round {round}: lineage depth {}\n{}\n",
            scores.lineage_depth(),
            scores.to_debug_string()
        );
    }
    println!(
        "Each `+-` is a shuffle: a stage boundary. Only round 1 shuffles: its result is\n\
         hash-partitioned by key, map_values keeps that, so later reduce_by_key calls combine\n\
         in place (a narrow dependency), as in Spark. Nothing has run yet: all of this is lazy.\n"
    );

    println!("== 2. Mark a checkpoint; the next action writes it while computing ==\n");
    scores.checkpoint()?;
    println!("state after checkpoint(): {:?}", scores.checkpoint_state());
    let mut result = scores.collect()?;
    result.sort_by_key(|p| p.0);
    println!("collect() = {result:?}");
    println!("state after the action: {:?}\n", scores.checkpoint_state());

    println!("== 3. What is on disk ==\n");
    let path = scores.checkpoint_path().expect("checkpointed");
    let mut names: Vec<String> = std::fs::read_dir(&path)
        .map_err(|e| flintlock::Error::Io {
            op: "list",
            path: path.clone(),
            source: e,
        })?
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

    println!("\n== 4. The lineage after truncation ==\n");
    println!(
        "depth {}\n{}\n",
        scores.lineage_depth(),
        scores.to_debug_string()
    );
    println!(
        "The parents are gone: the RDD now reads its checkpoint, and the next rounds start here."
    );
    let next = scores
        .map_values(|s| s * 0.5 + 1.0)
        .reduce_by_key(|a, b| a + b);
    println!("\none more round:\n{}", next.to_debug_string());
    Ok(())
}
