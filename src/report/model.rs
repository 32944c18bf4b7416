//! What the report shows, gathered from an event log's lines: jobs with their lineage and
//! its states at the job's end, stages, tasks, checkpoint writes and notable events.
//!
//! Every field comes from the log, so nothing here trusts it: missing starts or ends,
//! unknown ids and out-of-order times are tolerated, never unwrapped.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::event_log::{lineage_depth, EventLog, LoggedNode, Record};

/// A lineage truncation: `rdd` now reads `checkpoint` instead of `released`.
#[derive(Clone, Debug)]
pub(crate) struct Truncation {
    pub(crate) rdd: u64,
    pub(crate) checkpoint: u64,
    pub(crate) kind: String,
    pub(crate) released: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) rdd_id: Option<u64>,
    pub(crate) partitions: Option<u64>,
    pub(crate) start_t: Option<u64>,
    pub(crate) end_t: Option<u64>,
    pub(crate) elapsed_us: Option<u64>,
    pub(crate) succeeded: Option<bool>,
    pub(crate) error: Option<String>,
    pub(crate) lineage: Vec<LoggedNode>,
    /// The lineage's depth (as logged, or computed from `lineage`).
    pub(crate) depth: u64,
    /// RDDs of the lineage the log left out.
    pub(crate) omitted_nodes: u64,
    /// The ids in `lineage`.
    ids: HashSet<u64>,
    /// Checkpoint states when the job ended (or when the log ends, for a job that did not).
    pub(crate) end_states: HashMap<u64, String>,
    /// Lineages truncated while the job ran.
    pub(crate) truncations: Vec<Truncation>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Stage {
    pub(crate) id: u64,
    pub(crate) job_id: u64,
    pub(crate) kind: String,
    pub(crate) rdd_id: u64,
    pub(crate) shuffle_id: Option<u64>,
    pub(crate) tasks: u64,
    pub(crate) start_t: Option<u64>,
    pub(crate) end_t: Option<u64>,
    pub(crate) elapsed_us: Option<u64>,
    pub(crate) succeeded: Option<bool>,
}

#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) stage_id: u64,
    pub(crate) partition: u64,
    pub(crate) worker: Option<usize>,
    pub(crate) start_t: u64,
    pub(crate) end_t: Option<u64>,
    pub(crate) succeeded: Option<bool>,
    pub(crate) error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct CheckpointWrite {
    pub(crate) rdd_id: u64,
    pub(crate) parts: u64,
    pub(crate) records: u64,
    pub(crate) part_bytes: u64,
    pub(crate) path: Option<String>,
    pub(crate) committed_bytes: Option<u64>,
    pub(crate) started_t: Option<u64>,
    pub(crate) committed_t: Option<u64>,
    pub(crate) kind: Option<String>,
}

/// Everything the report draws.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    pub(crate) jobs: Vec<Job>,
    pub(crate) stages: BTreeMap<u64, Stage>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) checkpoints: BTreeMap<u64, CheckpointWrite>,
    /// Stage ids by job.
    stages_by_job: HashMap<u64, Vec<u64>>,
    /// (time, what, text) of events worth a line: failures, skipped and released
    /// checkpoints, dropped partitioners, ignored requests.
    pub(crate) notes: Vec<(u64, &'static str, String)>,
    pub(crate) last_t: u64,
}

impl Model {
    pub(crate) fn build(log: &EventLog) -> Model {
        let mut m = Model::default();
        let mut jobs: BTreeMap<u64, Job> = BTreeMap::new();
        let mut states: HashMap<u64, String> = HashMap::new();
        // Jobs started and not yet ended: a truncation belongs to those whose lineage holds
        // the RDD.
        let mut open: Vec<u64> = Vec::new();
        let mut open_tasks: HashMap<(u64, u64), Vec<usize>> = HashMap::new();
        for line in &log.lines {
            let t = line.t_us;
            m.last_t = m.last_t.max(t);
            match &line.record {
                Record::JobStarted {
                    job_id,
                    rdd_id,
                    partitions,
                } => {
                    let job = job_entry(&mut jobs, *job_id);
                    job.rdd_id = Some(*rdd_id);
                    job.partitions = Some(*partitions);
                    job.start_t = Some(t);
                    if !open.contains(job_id) {
                        open.push(*job_id);
                    }
                }
                Record::JobLineage {
                    job_id,
                    nodes,
                    depth,
                    omitted_nodes,
                } => {
                    let job = job_entry(&mut jobs, *job_id);
                    if job.lineage.is_empty() {
                        job.lineage = nodes.clone();
                        job.ids = nodes.iter().map(|n| n.id).collect();
                        job.depth = depth.unwrap_or_else(|| lineage_depth(nodes));
                        job.omitted_nodes = *omitted_nodes;
                    }
                    for n in nodes {
                        states
                            .entry(n.id)
                            .or_insert_with(|| n.checkpoint_state.clone());
                    }
                }
                Record::JobFailed { job_id, error } => {
                    job_entry(&mut jobs, *job_id).error = Some(error.clone());
                    m.notes
                        .push((t, "job failed", format!("job {job_id}: {error}")));
                }
                Record::JobEnded {
                    job_id,
                    succeeded,
                    elapsed_us,
                } => {
                    let job = job_entry(&mut jobs, *job_id);
                    job.end_t = Some(t);
                    job.succeeded = Some(*succeeded);
                    job.elapsed_us = Some(*elapsed_us);
                    close_job(job, &states);
                    open.retain(|j| j != job_id);
                }
                Record::StageStarted {
                    job_id,
                    stage_id,
                    kind,
                    rdd_id,
                    shuffle_id,
                    tasks,
                } => {
                    let s = m.stages.entry(*stage_id).or_default();
                    s.id = *stage_id;
                    s.job_id = *job_id;
                    m.stages_by_job.entry(*job_id).or_default().push(*stage_id);
                    s.kind = kind.clone();
                    s.rdd_id = *rdd_id;
                    s.shuffle_id = *shuffle_id;
                    s.tasks = *tasks;
                    s.start_t = Some(t);
                }
                Record::StageEnded {
                    job_id,
                    stage_id,
                    succeeded,
                    elapsed_us,
                } => {
                    let s = m.stages.entry(*stage_id).or_default();
                    s.id = *stage_id;
                    s.job_id = *job_id;
                    s.end_t = Some(t);
                    s.elapsed_us = Some(*elapsed_us);
                    s.succeeded = Some(*succeeded);
                }
                Record::TaskStarted {
                    stage_id,
                    partition,
                } => {
                    open_tasks
                        .entry((*stage_id, *partition))
                        .or_default()
                        .push(m.tasks.len());
                    m.tasks.push(Task {
                        stage_id: *stage_id,
                        partition: *partition,
                        worker: line.worker,
                        start_t: t,
                        end_t: None,
                        succeeded: None,
                        error: None,
                    });
                }
                Record::TaskFailed {
                    stage_id,
                    partition,
                    error,
                } => {
                    let open = open_tasks.get(&(*stage_id, *partition));
                    if let Some(&k) = open.and_then(|v| v.last()) {
                        m.tasks[k].error = Some(error.clone());
                    }
                    m.notes.push((
                        t,
                        "task failed",
                        format!("stage {stage_id} partition {partition}: {error}"),
                    ));
                }
                Record::TaskEnded {
                    stage_id,
                    partition,
                    succeeded,
                    elapsed_us,
                } => {
                    let open = open_tasks.get_mut(&(*stage_id, *partition));
                    match open.and_then(Vec::pop) {
                        Some(k) => {
                            m.tasks[k].end_t = Some(t.max(m.tasks[k].start_t));
                            m.tasks[k].succeeded = Some(*succeeded);
                        }
                        None => m.tasks.push(Task {
                            stage_id: *stage_id,
                            partition: *partition,
                            worker: line.worker,
                            start_t: t.saturating_sub(*elapsed_us),
                            end_t: Some(t),
                            succeeded: Some(*succeeded),
                            error: None,
                        }),
                    }
                }
                Record::CheckpointStateChanged { rdd_id, to, .. } => {
                    states.insert(*rdd_id, to.clone());
                    if to == "InProgress" {
                        let c = ckpt_entry(&mut m.checkpoints, *rdd_id);
                        c.started_t.get_or_insert(t);
                    }
                }
                Record::CheckpointPartitionWritten {
                    rdd_id,
                    records,
                    bytes,
                    ..
                } => {
                    let c = ckpt_entry(&mut m.checkpoints, *rdd_id);
                    c.parts = c.parts.saturating_add(1);
                    c.records = c.records.saturating_add(*records);
                    c.part_bytes = c.part_bytes.saturating_add(*bytes);
                }
                Record::CheckpointCommitted {
                    rdd_id,
                    path,
                    bytes,
                } => {
                    let c = ckpt_entry(&mut m.checkpoints, *rdd_id);
                    c.path = Some(path.clone());
                    c.committed_bytes = Some(*bytes);
                    c.committed_t = Some(t);
                }
                Record::LineageTruncated {
                    rdd_id,
                    checkpoint_rdd_id,
                    checkpoint_kind,
                    released_parents,
                } => {
                    ckpt_entry(&mut m.checkpoints, *rdd_id).kind = Some(checkpoint_kind.clone());
                    let truncation = Truncation {
                        rdd: *rdd_id,
                        checkpoint: *checkpoint_rdd_id,
                        kind: checkpoint_kind.clone(),
                        released: released_parents.clone(),
                    };
                    for j in &open {
                        if let Some(job) = jobs.get_mut(j)
                            && job.ids.contains(rdd_id)
                        {
                            job.truncations.push(truncation.clone());
                        }
                    }
                }
                Record::CheckpointRequestIgnored { rdd_id, reason } => m.notes.push((
                    t,
                    "checkpoint request ignored",
                    format!("rdd {rdd_id}: {reason}"),
                )),
                Record::CheckpointSkipped {
                    series,
                    path,
                    reason,
                } => m.notes.push((
                    t,
                    "checkpoint skipped",
                    format!("series {series:?}, {path}: {reason}"),
                )),
                Record::CheckpointReleased {
                    series,
                    step,
                    path,
                    deleted_now,
                } => m.notes.push((
                    t,
                    "checkpoint released",
                    format!(
                        "series {series:?} step {step}, {path}: {}",
                        if *deleted_now {
                            "removal started"
                        } else {
                            "removal starts when its last reader goes"
                        }
                    ),
                )),
                Record::PartitionerDropped { rdd_id, reason } => {
                    m.notes
                        .push((t, "partitioner dropped", format!("rdd {rdd_id}: {reason}")))
                }
                Record::LogStart { .. } => {}
            }
        }
        // Jobs the log does not see end (a killed process): states as the log ends.
        for job in jobs.values_mut() {
            if job.end_t.is_none() {
                close_job(job, &states);
            }
        }
        m.jobs = jobs.into_values().collect();
        m
    }

    /// The stages of `job`, by id.
    pub(crate) fn stages_of(&self, job: u64) -> Vec<&Stage> {
        let mut ids: Vec<u64> = self.stages_by_job.get(&job).cloned().unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.stages.get(id))
            .filter(|s| s.job_id == job)
            .collect()
    }
}

fn job_entry(jobs: &mut BTreeMap<u64, Job>, id: u64) -> &mut Job {
    jobs.entry(id).or_insert_with(|| Job {
        id,
        ..Job::default()
    })
}

fn ckpt_entry(c: &mut BTreeMap<u64, CheckpointWrite>, rdd: u64) -> &mut CheckpointWrite {
    c.entry(rdd).or_insert_with(|| CheckpointWrite {
        rdd_id: rdd,
        ..CheckpointWrite::default()
    })
}

/// The states of the job's RDDs when it ended (or when the log ends).
fn close_job(job: &mut Job, states: &HashMap<u64, String>) {
    job.end_states = job
        .ids
        .iter()
        .filter_map(|id| states.get(id).map(|s| (*id, s.clone())))
        .collect();
}
