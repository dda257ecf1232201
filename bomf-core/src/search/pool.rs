//! Evaluations in parallel: up to N jobs at once, one scoped thread each, results handed back
//! to the single thread that owns the search state (so the optimiser needs no lock, and the
//! points being evaluated are exactly its pending points).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use super::evaluator::{CommandEvaluator, Outcome, Slot};
use crate::merge::{self, CheckpointSet, MergeError, MergeOptions};

/// What a job evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum Candidate {
    /// Checkpoint `k` itself, from its own folder (no fusion needed).
    Checkpoint(usize),
    /// θ(w) for these weights, fused into a scratch folder first.
    Fusion(Vec<f64>),
}

/// One evaluation to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique within the run: names the scratch folder and the stderr log.
    pub id: usize,
    pub candidate: Candidate,
}

/// A finished job.
#[derive(Debug)]
pub struct Done {
    pub job: Job,
    pub worker: usize,
    pub outcome: Outcome,
    pub seconds: f64,
}

/// Where jobs come from and where their results go; both run on the calling thread.
pub trait JobSource {
    /// The next job, or `None` when no more should start now (`in_flight` are running).
    fn next(&mut self, in_flight: usize) -> crate::Result<Option<Job>>;
    /// Records a finished job.
    fn done(&mut self, done: Done) -> crate::Result<()>;
}

/// What every worker shares.
pub struct Workers<'a> {
    pub set: &'a CheckpointSet,
    pub evaluator: &'a CommandEvaluator,
    pub objectives: &'a [String],
    /// One slot (index, device) per worker.
    pub slots: Vec<Slot>,
    /// Where candidates are fused before their evaluation (removed after).
    pub scratch: PathBuf,
    pub merge: MergeOptions,
}

impl Workers<'_> {
    /// Runs jobs from `source` until it has none and none is running. A source error stops
    /// new jobs; it is returned once the running ones have finished.
    pub fn run(&self, source: &mut dyn JobSource) -> crate::Result<()> {
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<std::result::Result<Done, MergeError>>();
            let mut free: Vec<usize> = (0..self.slots.len()).rev().collect();
            let mut in_flight = 0usize;
            let mut failure = None;
            loop {
                while failure.is_none() && !free.is_empty() {
                    match source.next(in_flight) {
                        Ok(Some(job)) => {
                            let worker = free.pop().expect("checked non-empty");
                            let tx = tx.clone();
                            in_flight += 1;
                            scope.spawn(move || {
                                let _ = tx.send(self.execute(job, worker));
                            });
                        }
                        Ok(None) => break,
                        Err(e) => failure = Some(e),
                    }
                }
                if in_flight == 0 {
                    break;
                }
                let finished = rx.recv().expect("a running worker holds a sender");
                in_flight -= 1;
                match finished {
                    Ok(done) => {
                        free.push(done.worker);
                        if failure.is_none()
                            && let Err(e) = source.done(done)
                        {
                            failure = Some(e);
                        }
                    }
                    Err(e) => failure = failure.or(Some(e.into())),
                }
            }
            failure.map_or(Ok(()), Err)
        })
    }

    /// Fuses (for a fusion) and evaluates one job on `worker`'s slot.
    fn execute(&self, job: Job, worker: usize) -> std::result::Result<Done, MergeError> {
        let started = Instant::now();
        let slot = &self.slots[worker];
        let outcome = match &job.candidate {
            Candidate::Checkpoint(k) => {
                let dir = &self.set.checkpoints[*k].dir;
                self.evaluator.evaluate(dir, slot, self.objectives)
            }
            Candidate::Fusion(weights) => {
                let dir = self.scratch.join(format!("candidate-{}", job.id));
                merge::merge(self.set, weights, &dir, &self.merge)?;
                let outcome = self.evaluator.evaluate(&dir, slot, self.objectives);
                remove_scratch(&dir);
                outcome
            }
        };
        Ok(Done {
            job,
            worker,
            outcome,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Removes a candidate's scratch folder; a failure only costs disk space, so it is logged.
fn remove_scratch(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a candidate's folder");
    }
}
