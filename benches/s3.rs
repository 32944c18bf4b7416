//! Checkpoint writes to an S3-compatible server on loopback against plain PUTs of the same
//! bytes with the same crate, in one run (issue 14's target: ≥ 0.8 of the plain PUTs'
//! throughput). Needs `--features s3` and a server:
//!
//! ```sh
//! source .ci/seaweedfs.sh && start_seaweedfs
//! cargo bench --features s3 --bench s3
//! ```
//!
//! The `RATIO` line is the figure (plain PUT time / checkpoint time = throughput ratio).

mod support;

use rayon::prelude::*;

use flintlock::checkpoint::{S3Options, S3Store};
use flintlock::{Context, StorageLevel};

const RECORDS: u64 = 4_000_000;

fn main() {
    let Ok(_) = std::env::var("AWS_ENDPOINT_URL") else {
        println!(
            "SKIPPED: AWS_ENDPOINT_URL is not set (source .ci/seaweedfs.sh && start_seaweedfs)"
        );
        return;
    };
    let bucket = std::env::var("FLINTLOCK_S3_BUCKET").unwrap_or_else(|_| "flintlock".into());
    let url = format!("s3://{bucket}/bench-{}", std::process::id());
    let ctx = Context::builder().checkpoint_dir(&url).build().unwrap();
    // Four parts of ~11 MiB (one PUT each), then one of ~43 MiB (a multipart upload).
    for partitions in [4, 1] {
        case(&ctx, &url, partitions);
    }
}

fn case(ctx: &Context, url: &str, partitions: usize) {
    // The records are computed and cached first: the comparison is of the writes.
    let data = ctx
        .range(0..RECORDS, partitions)
        .map(|i| (i, i as f64 * 0.5));
    data.persist(StorageLevel::MemoryOnly);
    data.count().unwrap();
    // The bytes of one checkpoint, per part, for the plain PUTs.
    let probe = data.map(|x| x);
    probe.checkpoint().unwrap();
    probe.count().unwrap();
    let store = S3Store::open(url, &S3Options::from_env()).unwrap();
    let folder = probe
        .checkpoint_path()
        .unwrap()
        .to_string_lossy()
        .strip_prefix(&format!("{url}/"))
        .unwrap()
        .to_string();
    let parts: Vec<Vec<u8>> = (0..partitions)
        .map(|p| store.get(&format!("{folder}/part-{p:05}")).unwrap())
        .collect();
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut round = 0u64;
    let (ckpt, plain) = support::compare(
        7,
        &format!(
            "{RECORDS} (u64, f64) records in {partitions} parts, {} MiB",
            total >> 20
        ),
        "checkpoint",
        || {
            let rdd = data.map(|x| x);
            rdd.checkpoint().unwrap();
            rdd.count().unwrap()
        },
        "plain PUT",
        || {
            round += 1;
            let r = round;
            parts.par_iter().enumerate().for_each(|(p, bytes)| {
                store
                    .put(
                        &format!("plain/{partitions}/{r}/part-{p:05}"),
                        bytes.clone(),
                    )
                    .unwrap();
            });
        },
    );
    println!(
        "THROUGHPUT: checkpoint {:.0} MiB/s, plain PUT {:.0} MiB/s, ratio {:.2}",
        total as f64 / ckpt / (1 << 20) as f64,
        total as f64 / plain / (1 << 20) as f64,
        plain / ckpt
    );
}
