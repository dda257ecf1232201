//! Where a run keeps its state between steps ([`RunStore`]), what it logs ([`RunEvent`]) and
//! what a caller sees and steers while it runs ([`RunHooks`]).

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::fusion_bo::FusionRecord;
use crate::hpbo::HpTrial;
use crate::rundir::{EventLog, RunDir};
use crate::trajectory::{KeptCheckpoint, Trajectory};

use super::MethodResult;

/// Where a run keeps its state between steps, so that it can resume after a crash, and where it
/// reports each evaluation as it happens. [`MemoryStore`] keeps nothing (one-shot runs, tests);
/// [`DirStore`] is the run directory.
pub trait RunStore {
    /// A state saved by [`RunStore::save_state`] under `name`, if any.
    fn load_state(&mut self, name: &str) -> Result<Option<serde_json::Value>>;
    /// Saves a state atomically (a crash leaves the old or the new one).
    fn save_state(&mut self, name: &str, state: &serde_json::Value) -> Result<()>;
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>>;
    fn save_trajectory(&mut self, trajectory: &Trajectory) -> Result<()>;
    /// Appends one event to the run's log (flushed before the next evaluation starts).
    fn record(&mut self, event: &RunEvent) -> Result<()>;
}

/// A [`RunStore`] that keeps nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl RunStore for MemoryStore {
    fn load_state(&mut self, _: &str) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
    fn save_state(&mut self, _: &str, _: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>> {
        Ok(None)
    }
    fn save_trajectory(&mut self, _: &Trajectory) -> Result<()> {
        Ok(())
    }
    fn record(&mut self, _: &RunEvent) -> Result<()> {
        Ok(())
    }
}

/// A [`RunStore`] in a run directory: states as `state/<name>.json` (atomic), the trajectory
/// under `checkpoints/`, events appended to `evaluations.jsonl`.
pub struct DirStore<'a> {
    dir: &'a RunDir,
    log: EventLog<RunEvent>,
}

impl<'a> DirStore<'a> {
    pub fn new(dir: &'a RunDir) -> Result<Self> {
        Ok(Self {
            log: dir.evaluations()?,
            dir,
        })
    }

    /// Every event logged so far (a torn last line from a crash is dropped).
    pub fn events(&self) -> Result<Vec<RunEvent>> {
        Ok(self.log.read_all()?)
    }
}

impl RunStore for DirStore<'_> {
    fn load_state(&mut self, name: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.dir.read_json(format!("state/{name}.json"))?)
    }
    fn save_state(&mut self, name: &str, state: &serde_json::Value) -> Result<()> {
        let path = self.dir.path("state")?;
        std::fs::create_dir_all(&path).map_err(|e| CoreError::file(&path, e))?;
        Ok(self
            .dir
            .write_json_atomic(format!("state/{name}.json"), state)?)
    }
    fn load_trajectory(&mut self) -> Result<Option<Trajectory>> {
        if self.dir.checkpoint_manifest_path().is_file() {
            Ok(Some(Trajectory::load(&self.dir.checkpoints_dir())?))
        } else {
            Ok(None)
        }
    }
    fn save_trajectory(&mut self, trajectory: &Trajectory) -> Result<()> {
        trajectory.save(&self.dir.checkpoints_dir())
    }
    fn record(&mut self, event: &RunEvent) -> Result<()> {
        Ok(self.log.append(event)?)
    }
}

/// One line of a run's evaluation log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum RunEvent {
    /// A hyperparameter trial (`search`: absent for stage 1, else the baseline's name).
    HpTrial {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        search: Option<String>,
        index: usize,
        trial: HpTrial,
    },
    Checkpoints {
        kept: Vec<KeptCheckpoint>,
        best_step: Option<usize>,
    },
    /// An evaluation of a fusion search (`search`: "bomf" or a single-objective baseline).
    Fusion {
        search: String,
        index: usize,
        record: FusionRecord,
    },
    Method(MethodResult),
}

/// Progress callback: `(stage, done, total)`.
pub type ProgressFn = dyn Fn(&str, usize, usize);

/// What a caller can see and steer while a run goes on.
#[derive(Default, Clone, Copy)]
pub struct RunHooks<'a> {
    /// Set (e.g. by Ctrl-C) to stop after the current evaluation, state saved.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// Called after each unit of work: `(stage, done, total)`.
    pub progress: Option<&'a ProgressFn>,
}

impl RunHooks<'_> {
    pub(super) fn check_stop(&self) -> Result<()> {
        match self.stop {
            Some(flag) if flag.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(CoreError::Interrupted)
            }
            _ => Ok(()),
        }
    }

    pub(super) fn progress(&self, stage: &str, done: usize, total: usize) {
        if let Some(p) = self.progress {
            p(stage, done, total);
        }
    }
}

pub(super) fn to_value<T: Serialize>(state: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(state)
        .map_err(|e| CoreError::InvalidInput(format!("cannot serialise {what}: {e}")))
}

pub(super) fn from_value<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
    what: &str,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        CoreError::InvalidInput(format!(
            "the saved {what} state does not match this version of bomf: {e}"
        ))
    })
}
