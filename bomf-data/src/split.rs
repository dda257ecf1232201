//! Deterministic train/validation/test splits.
//!
//! Membership is decided by a stable hash of the example's *input texts* and a seed (SHA-256,
//! so it is the same on every machine, Rust version and run, and independent of file order).
//! Examples with identical inputs hash alike and always land in the same split, so a duplicated
//! sentence cannot leak from train into test.
//!
//! Two ways to cut:
//! - [`split_by_hash`]: each example independently, by where its hash falls in `[0, 1)`. Split
//!   sizes are close to, not exactly, the fractions; adding examples never moves old ones.
//! - [`split_by_rank`]: examples ranked by hash and cut at exact counts (duplicate groups are
//!   never cut, so a part can exceed its count by less than one group). Used for the paper's
//!   GLUE protocol ([`glue_protocol`]), which needs exact halves.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::task::{Dataset, Example, GlueTask};

/// Fractions of the data that go to each split; validated to be finite, `>= 0` and sum `<= 1`.
/// When they sum to less than 1, the rest of the data is left out of all three splits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    /// Changing the seed reshuffles which examples go where.
    #[serde(default)]
    pub seed: u64,
}

impl SplitConfig {
    /// A validated configuration.
    pub fn new(train: f64, validation: f64, test: f64, seed: u64) -> Result<Self> {
        let config = Self {
            train,
            validation,
            test,
            seed,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every fraction is finite and non-negative and that they sum to at most 1.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("train", self.train),
            ("validation", self.validation),
            ("test", self.test),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(DataError::InvalidConfig(format!(
                    "split fraction `{name}` must be >= 0, got {value}"
                )));
            }
        }
        let sum = self.train + self.validation + self.test;
        // Allow for decimal fractions such as 0.7 + 0.2 + 0.1 not summing to exactly 1.0.
        if sum > 1.0 + 1e-9 {
            return Err(DataError::InvalidConfig(format!(
                "split fractions sum to {sum}, more than 1"
            )));
        }
        Ok(())
    }
}

/// Which split an example belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
    /// Left out (fractions summing to less than 1).
    Unused,
}

/// The three splits of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Splits {
    pub train: Dataset,
    pub validation: Dataset,
    pub test: Dataset,
}

/// SHA-256 of the seed and the example's input texts (length-prefixed, so `["ab", "c"]` and
/// `["a", "bc"]` differ), truncated to its first 8 bytes.
pub fn input_hash(inputs: &[String], seed: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    for text in inputs {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Maps a hash to `[0, 1)` using its top 53 bits (exactly representable in an `f64`).
fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The split an example falls in under [`split_by_hash`].
pub fn assign(example: &Example, config: &SplitConfig) -> Part {
    let u = unit(input_hash(&example.inputs, config.seed));
    if u < config.train {
        Part::Train
    } else if u < config.train + config.validation {
        Part::Validation
    } else if u < config.train + config.validation + config.test {
        Part::Test
    } else {
        Part::Unused
    }
}

fn collect(dataset: &Dataset, parts: &[Part]) -> Splits {
    let pick = |want: Part| -> Dataset {
        let indices: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == want)
            .map(|(i, _)| i)
            .collect();
        dataset.select(&indices)
    };
    Splits {
        train: pick(Part::Train),
        validation: pick(Part::Validation),
        test: pick(Part::Test),
    }
}

/// Splits each example independently by its hash. Examples keep their file order in each split.
pub fn split_by_hash(dataset: &Dataset, config: &SplitConfig) -> Result<Splits> {
    config.validate()?;
    dataset.ensure_not_empty("the dataset to split")?;
    let parts: Vec<Part> = dataset.examples.iter().map(|e| assign(e, config)).collect();
    Ok(collect(dataset, &parts))
}

/// The split of every example when examples are ranked by hash and the first `counts[0]` go to
/// train, the next `counts[1]` to validation, the next `counts[2]` to test, the rest unused.
/// A group of examples with identical inputs is never cut: it goes whole into the first part
/// that is not yet full.
pub fn rank_parts(examples: &[Example], counts: [usize; 3], seed: u64) -> Vec<Part> {
    let hashes: Vec<u64> = examples
        .iter()
        .map(|e| input_hash(&e.inputs, seed))
        .collect();
    let mut order: Vec<usize> = (0..examples.len()).collect();
    // Ties only between identical inputs (or a 64-bit collision); break them by the inputs so
    // the order never depends on the file order.
    order.sort_by(|&a, &b| {
        hashes[a]
            .cmp(&hashes[b])
            .then_with(|| examples[a].inputs.cmp(&examples[b].inputs))
    });
    let mut parts = vec![Part::Unused; examples.len()];
    let mut filled = [0usize; 3];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && hashes[order[end]] == hashes[order[start]] {
            end += 1;
        }
        let group = &order[start..end];
        let part = (0..3).find(|&k| filled[k] < counts[k]);
        if let Some(k) = part {
            filled[k] += group.len();
            let p = [Part::Train, Part::Validation, Part::Test][k];
            for &i in group {
                parts[i] = p;
            }
        }
        start = end;
    }
    parts
}

/// Splits by hash rank with exact counts (see [`rank_parts`]).
pub fn split_by_rank(dataset: &Dataset, counts: [usize; 3], seed: u64) -> Result<Splits> {
    dataset.ensure_not_empty("the dataset to split")?;
    let total: usize = counts.iter().sum();
    if total > dataset.len() {
        return Err(DataError::InvalidConfig(format!(
            "asked for {total} examples ({counts:?}) from {} with only {}",
            dataset.task.name,
            dataset.len()
        )));
    }
    Ok(collect(
        dataset,
        &rank_parts(&dataset.examples, counts, seed),
    ))
}

/// Splits by hash rank into sizes proportional to the fractions (rounded; validation and test
/// are rounded first so that small dev sets still get both).
pub fn split_exact(dataset: &Dataset, config: &SplitConfig) -> Result<Splits> {
    config.validate()?;
    let n = dataset.len();
    let validation = ((n as f64) * config.validation).round() as usize;
    let test = (((n as f64) * config.test).round() as usize).min(n - validation.min(n));
    let train = (((n as f64) * config.train).round() as usize).min(n - validation.min(n) - test);
    split_by_rank(dataset, [train, validation.min(n), test], config.seed)
}

/// The paper authors' GLUE protocol (their earlier RoBERTa-GLUE code; BOMF's own code has no
/// test split):
/// - small tasks (CoLA, MRPC, STS-B, RTE): train on the GLUE train set; split the dev set 50/50
///   into validation and test;
/// - large tasks (MNLI, QQP, QNLI, SST-2): hold `large_holdout` training examples out as
///   validation (1,000 in their code) and use the whole dev set as test.
///
/// The cut is by hash rank ([`split_by_rank`]) instead of their torch generator, so it is
/// reproducible without PyTorch, and duplicated inputs never straddle two splits.
pub fn glue_protocol(
    task: GlueTask,
    train: &Dataset,
    dev: &Dataset,
    seed: u64,
    large_holdout: usize,
) -> Result<Splits> {
    train.ensure_not_empty("the GLUE train set")?;
    dev.ensure_not_empty("the GLUE dev set")?;
    if task.is_large() {
        if large_holdout == 0 || large_holdout >= train.len() {
            return Err(DataError::InvalidConfig(format!(
                "cannot hold out {large_holdout} of {} training examples as validation",
                train.len()
            )));
        }
        let cut = split_by_rank(train, [train.len() - large_holdout, large_holdout, 0], seed)?;
        Ok(Splits {
            train: cut.train,
            validation: cut.validation,
            test: dev.clone(),
        })
    } else {
        if dev.len() < 2 {
            return Err(DataError::InvalidConfig(format!(
                "the dev set of {} has {} example(s); halving it needs at least 2",
                dev.task.name,
                dev.len()
            )));
        }
        let half = dev.len() / 2;
        let cut = split_by_rank(dev, [0, half, dev.len() - half], seed)?;
        Ok(Splits {
            train: train.clone(),
            validation: cut.validation,
            test: cut.test,
        })
    }
}
