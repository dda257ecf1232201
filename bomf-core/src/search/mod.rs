//! `bomf search`: BOMF's stage 3 on checkpoints the user already has, of any architecture,
//! scored by any evaluator, with evaluations in parallel.
//!
//! 1. The checkpoints ([`crate::merge::resolve`]) are checked against each other before any
//!    work ([`crate::merge::CheckpointSet::open`]).
//! 2. Each checkpoint is evaluated as it is; their values set the objectives' normalisation and
//!    the hypervolume's reference point, as in `bomf run` (0 = worst checkpoint, 1 = best).
//! 3. [`FusionSearch`] (qNEHVI over simplex weights, one GP per objective) asks for fusions;
//!    each is streamed into a scratch folder ([`crate::merge::merge`]) and evaluated by the
//!    command ([`evaluator`]). With N workers, N evaluations run at once: every point being
//!    evaluated is a *pending* point of the optimiser, so a new ask never returns it (or a
//!    point the acquisition already credits to it) again.
//! 4. The rule of `[search] selection` picks a fusion, which is written to `fused/` in the
//!    inputs' layout with their side files; `report/` has the Pareto front, the hypervolume
//!    per evaluation and every candidate.
//!
//! The run folder is a [`RunDir`]: locked, every evaluation appended to `evaluations.jsonl`,
//! the search state rewritten after each; a killed search resumes, evaluating again only the
//! points that were running. A failed evaluation is recorded (with its stderr tail in
//! `logs/`) and the search goes on.

pub mod config;
pub mod evaluator;
pub mod pool;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use config::{Direction, ObjectiveSpec, SearchConfig};
pub use evaluator::{CommandEvaluator, Outcome, Slot};
pub use pool::{Candidate, Done, Job, JobSource, Workers};

use crate::error::{CoreError, Result};
use crate::eval::Evaluation;
use crate::fusion_bo::FusionSearch;
use crate::merge::{self, CheckpointSet, MergeOptions, MergeSummary};
use crate::rundir::{EventLog, Inputs, RunDir};

/// The search state, rewritten after every evaluation.
pub const STATE_FILE: &str = "bo_state.json";
/// Stderr tails of failed evaluations.
pub const LOGS_DIR: &str = "logs";
/// Scratch folders of the candidates being evaluated.
pub const SCRATCH_DIR: &str = "candidates";
/// The summary of a finished search.
pub const RESULTS_FILE: &str = "results.json";

/// One line of `evaluations.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    pub id: usize,
    /// `Some(k)`: checkpoint k itself; `None`: a fusion.
    pub checkpoint: Option<usize>,
    pub weights: Vec<f64>,
    pub outcome: Outcome,
    pub worker: usize,
    pub seconds: f64,
}

/// What a finished search found (also `results.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub checkpoints: Vec<String>,
    pub objectives: Vec<ObjectiveSpec>,
    /// Each checkpoint's objective values.
    pub checkpoint_values: Vec<BTreeMap<String, f64>>,
    /// Index into the fusion records of the chosen fusion.
    pub chosen: usize,
    pub chosen_weights: Vec<f64>,
    pub chosen_values: BTreeMap<String, f64>,
    /// Indices of the Pareto-optimal fusions.
    pub pareto: Vec<usize>,
    /// Hypervolume of the normalised front after each fusion evaluation.
    pub hypervolume: Vec<f64>,
    pub evaluations: usize,
    pub failed: usize,
    pub fused_files: Vec<String>,
}

/// An external evaluator reports objectives only: they all go in `metrics` (a `loss` objective
/// too, read by name like the others), and `loss` is 0 and never read, since every objective
/// of a search reads `metrics` ([`SearchConfig::fusion_config`]).
pub fn evaluation_of(values: &BTreeMap<String, f64>) -> Evaluation {
    Evaluation {
        loss: 0.0,
        metrics: values.clone(),
        num_examples: 0,
    }
}

/// Runs (or resumes) the search of `config` in `run`; `progress` hears of every evaluation.
pub fn run_search(
    config: &SearchConfig,
    run: &RunDir,
    progress: &mut dyn FnMut(&EvaluationRecord),
) -> Result<SearchResults> {
    let dirs = merge::resolve(&config.checkpoints)?;
    let set = CheckpointSet::open(&dirs)?;
    if set.len() < 2 {
        return Err(CoreError::InvalidInput(format!(
            "fusion needs at least 2 checkpoints; {} stands for {}",
            config
                .checkpoints
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            set.len()
        )));
    }
    run.check_inputs(&Inputs::of(&input_files(&set))?)?;
    let names = config.objective_names();
    let workers = Workers {
        set: &set,
        evaluator: &config.evaluator,
        objectives: &names,
        slots: (0..config.workers)
            .map(|worker| Slot {
                worker,
                device: config.device(worker),
            })
            .collect(),
        scratch: run.path(SCRATCH_DIR)?,
        merge: MergeOptions {
            dtype: config.output.dtype,
        },
    };
    let mut log: EventLog<EvaluationRecord> = run.evaluations()?;
    let records = log.read_all()?;
    let mut phase = CheckpointPhase::new(&set, records.clone(), &mut log, run, progress);
    workers.run(&mut phase)?;
    let checkpoint_values = phase.values()?;
    let evaluations: Vec<Evaluation> = checkpoint_values.iter().map(evaluation_of).collect();
    let search = match run.read_json::<FusionSearch>(STATE_FILE)? {
        Some(state) => state,
        None => FusionSearch::from_evaluations(config.fusion_config(), &evaluations, &names[0])?,
    };
    let first_id = phase.next_id;
    let mut phase = FusionPhase::new(search, &records, first_id, &mut log, run, progress)?;
    workers.run(&mut phase)?;
    let search = phase.search;
    let chosen = search.select(config.search.selection)?;
    let chosen_weights = search.records[chosen].weights.clone();
    let summary = merge::merge(&set, &chosen_weights, &run.fused_dir(), &workers.merge)?;
    let results = results(&set, config, &search, checkpoint_values, chosen, &summary)?;
    report::write(run, config, &search, &results)?;
    run.write_json_atomic(RESULTS_FILE, &results)?;
    Ok(results)
}

/// The files whose change would invalidate a resumed search: every weight file and the index.
fn input_files(set: &CheckpointSet) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for c in &set.checkpoints {
        files.extend(c.layout.files.iter().map(|f| f.path.clone()));
        for index in [merge::INDEX_FILE, merge::PICKLE_INDEX_FILE] {
            let index = c.dir.join(index);
            if index.is_file() {
                files.push(index);
            }
        }
    }
    files
}

fn results(
    set: &CheckpointSet,
    config: &SearchConfig,
    search: &FusionSearch,
    checkpoint_values: Vec<BTreeMap<String, f64>>,
    chosen: usize,
    summary: &MergeSummary,
) -> Result<SearchResults> {
    let record = &search.records[chosen];
    Ok(SearchResults {
        checkpoints: set.checkpoints.iter().map(|c| c.label.clone()).collect(),
        objectives: config.objectives.clone(),
        checkpoint_values,
        chosen,
        chosen_weights: record.weights.clone(),
        chosen_values: record
            .validation
            .as_ref()
            .map(|e| e.metrics.clone())
            .unwrap_or_default(),
        pareto: search.pareto_indices(),
        hypervolume: search.hypervolume_trace()?,
        evaluations: search.records.len(),
        failed: search
            .records
            .iter()
            .filter(|r| r.validation.is_none())
            .count(),
        fused_files: summary.files.clone(),
    })
}

/// Appends `record`, keeps a failed evaluation's stderr tail in `logs/`, and reports it.
fn record_done(
    log: &mut EventLog<EvaluationRecord>,
    run: &RunDir,
    record: &EvaluationRecord,
    progress: &mut dyn FnMut(&EvaluationRecord),
) -> Result<()> {
    if let Outcome::Failed { stderr_tail, .. } = &record.outcome {
        let rel = PathBuf::from(LOGS_DIR).join(format!("evaluation-{}.stderr", record.id));
        run.write_atomic(rel, stderr_tail.as_bytes())?;
    }
    log.append(record)?;
    progress(record);
    Ok(())
}

/// Step 2: every checkpoint evaluated as it is (those the log has a value for are not
/// evaluated again).
struct CheckpointPhase<'a> {
    todo: Vec<usize>,
    values: Vec<Option<Outcome>>,
    next_id: usize,
    log: &'a mut EventLog<EvaluationRecord>,
    run: &'a RunDir,
    progress: &'a mut dyn FnMut(&EvaluationRecord),
    labels: Vec<String>,
}

impl<'a> CheckpointPhase<'a> {
    fn new(
        set: &CheckpointSet,
        records: Vec<EvaluationRecord>,
        log: &'a mut EventLog<EvaluationRecord>,
        run: &'a RunDir,
        progress: &'a mut dyn FnMut(&EvaluationRecord),
    ) -> Self {
        // A checkpoint whose evaluation failed is evaluated again (the evaluator may have been
        // fixed since); one that succeeded is not.
        let mut values: Vec<Option<Outcome>> = vec![None; set.len()];
        for r in &records {
            if let Some(k) = r.checkpoint.filter(|&k| k < set.len())
                && matches!(r.outcome, Outcome::Ok { .. })
            {
                values[k] = Some(r.outcome.clone());
            }
        }
        let todo = (0..set.len())
            .rev()
            .filter(|&k| values[k].is_none())
            .collect();
        Self {
            todo,
            values,
            next_id: records.iter().map(|r| r.id + 1).max().unwrap_or(0),
            log,
            run,
            progress,
            labels: set.checkpoints.iter().map(|c| c.label.clone()).collect(),
        }
    }

    /// Every checkpoint's values; a checkpoint whose evaluation failed stops the search, since
    /// the normalisation needs them all.
    fn values(&self) -> Result<Vec<BTreeMap<String, f64>>> {
        self.values
            .iter()
            .enumerate()
            .map(|(k, v)| match v {
                Some(Outcome::Ok { values }) => Ok(values.clone()),
                Some(Outcome::Failed { reason, .. }) => Err(CoreError::InvalidInput(format!(
                    "the evaluation of {} failed ({reason}; its stderr is in \
                     {LOGS_DIR}/); the search needs every checkpoint's values: fix the \
                     evaluator and continue with --resume, which evaluates it again",
                    self.labels[k]
                ))),
                None => Err(CoreError::InvalidInput(format!(
                    "checkpoint {} was not evaluated",
                    self.labels[k]
                ))),
            })
            .collect()
    }
}

impl JobSource for CheckpointPhase<'_> {
    fn next(&mut self, _in_flight: usize) -> Result<Option<Job>> {
        Ok(self.todo.pop().map(|k| {
            self.next_id += 1;
            Job {
                id: self.next_id - 1,
                candidate: Candidate::Checkpoint(k),
            }
        }))
    }

    fn done(&mut self, done: Done) -> Result<()> {
        let Candidate::Checkpoint(k) = done.job.candidate else {
            return Err(CoreError::InvalidInput(
                "a fusion in the checkpoint phase".into(),
            ));
        };
        let mut weights = vec![0.0; self.values.len()];
        weights[k] = 1.0;
        let record = EvaluationRecord {
            id: done.job.id,
            checkpoint: Some(k),
            weights,
            outcome: done.outcome.clone(),
            worker: done.worker,
            seconds: done.seconds,
        };
        record_done(self.log, self.run, &record, self.progress)?;
        self.values[k] = Some(done.outcome);
        Ok(())
    }
}

/// Step 3: the BO loop, N points pending at a time.
struct FusionPhase<'a> {
    search: FusionSearch,
    /// Points pending in a resumed state (asked before a crash): evaluated first.
    resumed: Vec<Vec<f64>>,
    next_id: usize,
    log: &'a mut EventLog<EvaluationRecord>,
    run: &'a RunDir,
    progress: &'a mut dyn FnMut(&EvaluationRecord),
}

impl<'a> FusionPhase<'a> {
    /// Replays fusions that the log has but the saved state lacks (a crash between the two
    /// writes), then queues the points that were pending.
    fn new(
        mut search: FusionSearch,
        records: &[EvaluationRecord],
        first_id: usize,
        log: &'a mut EventLog<EvaluationRecord>,
        run: &'a RunDir,
        progress: &'a mut dyn FnMut(&EvaluationRecord),
    ) -> Result<Self> {
        let fusions: Vec<&EvaluationRecord> =
            records.iter().filter(|r| r.checkpoint.is_none()).collect();
        for r in fusions.iter().skip(search.records.len()) {
            search.tell(&r.weights, evaluation_outcome(&r.outcome))?;
        }
        if search.records.len() > fusions.len() {
            return Err(CoreError::InvalidInput(format!(
                "{STATE_FILE} has {} fusions but evaluations.jsonl only {}: the run folder was \
                 edited; start a new search",
                search.records.len(),
                fusions.len()
            )));
        }
        let resumed = search.pending().iter().rev().cloned().collect();
        Ok(Self {
            search,
            resumed,
            next_id: first_id,
            log,
            run,
            progress,
        })
    }
}

/// The evaluation a [`FusionSearch`] is told for an outcome (`None`: failed).
fn evaluation_outcome(outcome: &Outcome) -> Option<Evaluation> {
    match outcome {
        Outcome::Ok { values } => Some(evaluation_of(values)),
        Outcome::Failed { .. } => None,
    }
}

impl JobSource for FusionPhase<'_> {
    fn next(&mut self, in_flight: usize) -> Result<Option<Job>> {
        if self.search.records.len() + in_flight >= self.search.budget() {
            return Ok(None);
        }
        let weights = match self.resumed.pop() {
            Some(w) => w,
            None => {
                let w = self.search.ask_new()?;
                // Saved before the evaluation starts: a crash leaves it pending, not lost.
                self.run.write_json_atomic(STATE_FILE, &self.search)?;
                w
            }
        };
        self.next_id += 1;
        Ok(Some(Job {
            id: self.next_id - 1,
            candidate: Candidate::Fusion(weights),
        }))
    }

    fn done(&mut self, done: Done) -> Result<()> {
        let Candidate::Fusion(weights) = &done.job.candidate else {
            return Err(CoreError::InvalidInput(
                "a checkpoint in the fusion phase".into(),
            ));
        };
        let record = EvaluationRecord {
            id: done.job.id,
            checkpoint: None,
            weights: weights.clone(),
            outcome: done.outcome,
            worker: done.worker,
            seconds: done.seconds,
        };
        record_done(self.log, self.run, &record, self.progress)?;
        self.search
            .tell(&record.weights, evaluation_outcome(&record.outcome))?;
        self.run.write_json_atomic(STATE_FILE, &self.search)?;
        Ok(())
    }
}
