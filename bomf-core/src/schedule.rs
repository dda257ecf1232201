//! Learning-rate schedules with linear warmup, as `transformers` defines them
//! (`get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup`,
//! `get_cosine_schedule_with_warmup`). The `k`-th optimiser update (0-based) uses
//! `lr · factor(k)`, so with warmup the very first update has learning rate 0, exactly as a
//! PyTorch loop that calls `scheduler.step()` after `optimizer.step()`.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The shape of the schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant after warmup (the paper's GLUE setting, warmup 20%).
    Constant,
    /// Linear decay to 0 at the last step (the paper's T5 setting, warmup 10%).
    Linear,
    /// Half-cosine decay to 0 at the last step.
    Cosine,
}

/// How long the warmup lasts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    Steps(usize),
    /// A fraction of the total number of optimiser steps, rounded up (HF's `warmup_ratio`).
    Ratio(f64),
}

/// A schedule resolved for a known number of optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// Resolves `warmup` against `total_steps` (which must be positive).
    pub fn new(kind: ScheduleKind, warmup: Warmup, total_steps: usize) -> Result<Self> {
        if total_steps == 0 {
            return Err(CoreError::config("total_steps", "must be at least 1"));
        }
        let warmup_steps = match warmup {
            Warmup::Steps(n) => n,
            Warmup::Ratio(r) => {
                if !(0.0..=1.0).contains(&r) {
                    return Err(CoreError::config(
                        "warmup_ratio",
                        format!("{r} is not in [0, 1]"),
                    ));
                }
                (r * total_steps as f64).ceil() as usize
            }
        };
        Ok(Self {
            kind,
            warmup_steps,
            total_steps,
        })
    }

    /// The multiplier of the base learning rate for the `step`-th update (0-based).
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_span;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => {
                ((self.total_steps as f64 - step as f64) / decay_span).clamp(0.0, 1.0)
            }
            ScheduleKind::Cosine => {
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}
