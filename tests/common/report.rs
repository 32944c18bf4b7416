//! Helpers of the report tests: a logged PageRank run, and the RDD ids each job's drawing
//! has (in a report, or in a browser's DOM of it) and must have (from the log).

use std::collections::BTreeSet;
use std::path::Path;

use flintlock::event_log::{EventLog, Record};
use flintlock::Context;

/// The `data-rdd` ids of each job's drawing, by job id.
pub fn drawn(html: &str) -> Vec<(u64, BTreeSet<u64>)> {
    html.split("<svg class=\"dag\" data-job=\"")
        .skip(1)
        .map(|svg| {
            let job: u64 = svg[..svg.find('"').unwrap()].parse().unwrap();
            let body = &svg[..svg.find("</svg>").unwrap()];
            let ids = body
                .split("data-rdd=\"")
                .skip(1)
                .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
                .collect();
            (job, ids)
        })
        .collect()
}

/// The RDD ids each job's drawing must have: its lineage, plus the checkpoint RDDs swapped
/// in while it ran.
pub fn expected(log: &EventLog) -> Vec<(u64, BTreeSet<u64>)> {
    let mut jobs = Vec::new();
    let mut open: Vec<(u64, BTreeSet<u64>)> = Vec::new();
    for line in &log.lines {
        match &line.record {
            Record::JobLineage { job_id, nodes, .. } => {
                open.push((*job_id, nodes.iter().map(|n| n.id).collect()))
            }
            Record::LineageTruncated {
                rdd_id,
                checkpoint_rdd_id,
                ..
            } => {
                for (_, ids) in &mut open {
                    if ids.contains(rdd_id) {
                        ids.insert(*checkpoint_rdd_id);
                    }
                }
            }
            Record::JobEnded { job_id, .. } => {
                if let Some(k) = open.iter().position(|(j, _)| j == job_id) {
                    jobs.push(open.remove(k));
                }
            }
            _ => {}
        }
    }
    jobs.extend(open);
    jobs.sort();
    jobs
}

/// A small PageRank with checkpoints every 2 iterations, logged to `path`.
pub fn pagerank_log(path: &Path, checkpoints: &Path, name: &str) {
    let ctx = Context::builder()
        .app_name("report-test")
        .threads(2)
        .checkpoint_dir(checkpoints)
        .event_log(path)
        .build()
        .unwrap();
    let edges: Vec<(u64, u64)> = (0..200u64).map(|i| (i % 40, (i * 7 + 3) % 40)).collect();
    let links = ctx
        .parallelize(edges, 4)
        .group_by_key()
        .set_name(name)
        .cache();
    let mut ranks = links.map_values(|_| 1.0f64);
    for i in 1..=5 {
        let contribs = links.join(&ranks).values().flat_map(|(urls, rank)| {
            let share = rank / urls.len() as f64;
            urls.into_iter().map(move |u| (u, share))
        });
        ranks = contribs
            .reduce_by_key(|a, b| a + b)
            .map_values(|s| 0.15 + 0.85 * s)
            .set_name(format!("ranks {i}"));
        if i % 2 == 0 {
            ranks.checkpoint().unwrap();
        }
        ranks.count().unwrap();
    }
    ranks.collect().unwrap();
}
