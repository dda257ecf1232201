//! Length-bucketed dynamic padding with deterministic shuffling.
//!
//! The reference code pads every input to 512 tokens; most GLUE and BIG-bench inputs are a few
//! dozen tokens long, so most of its compute goes into padding. Here a [`Batcher`] pads each
//! batch only to its own longest row, and (optionally) groups rows of similar length:
//!
//! 1. shuffle the example order with a seeded ChaCha8 stream per epoch (same seed and epoch,
//!    same order, on every machine);
//! 2. [`Bucketing::MegaBatch`]: cut the order into mega-batches of `factor × batch_size`, sort
//!    each by length (longest first) and cut it into batches, then shuffle the batch order; this
//!    keeps most of the randomness of a shuffle while rows in a batch have similar lengths.
//!    [`Bucketing::SortAll`] sorts the whole set (best for evaluation, where order is free);
//! 3. collate: pad ids with the tokenizer's pad id, build the attention mask (1 = real token),
//!    carry the targets, and record which example each row is ([`Batch::example_indices`]) so
//!    predictions map back to the dataset.
//!
//! Tensors are plain row-major `Vec<i64>` with their shape (no deep-learning dependency here).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::task::{Dataset, Target, TaskKind};
use crate::tokenize::{Encoded, IGNORE_INDEX, TextEncoder};

/// How rows are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Bucketing {
    /// Batches follow the (shuffled) example order.
    None,
    /// Sort by length within windows of `factor` batches, then shuffle the batches.
    MegaBatch { factor: usize },
    /// Sort the whole set by length (longest first); for evaluation.
    SortAll,
}

/// Length every row of a batch is padded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum PadTo {
    /// The longest row of the batch.
    Longest,
    /// The longest row rounded up to a multiple (e.g. 8 for tensor cores).
    MultipleOf(usize),
    /// A fixed length for every batch (the reference's pad-to-max); longer rows are an error.
    Fixed(usize),
}

/// Batching configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub batch_size: usize,
    /// Shuffle the example order every epoch (training) or keep it (evaluation).
    pub shuffle: bool,
    pub seed: u64,
    pub bucketing: Bucketing,
    pub pad_to: PadTo,
}

impl BatchConfig {
    /// Training defaults: shuffled, mega-batch bucketing over 50 batches, pad to longest.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        Self {
            batch_size,
            shuffle: true,
            seed,
            bucketing: Bucketing::MegaBatch { factor: 50 },
            pad_to: PadTo::Longest,
        }
    }

    /// Evaluation defaults: no shuffle, whole set sorted by length, pad to longest.
    pub fn eval(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: false,
            seed: 0,
            bucketing: Bucketing::SortAll,
            pad_to: PadTo::Longest,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(DataError::InvalidConfig(
                "batch_size must be at least 1".into(),
            ));
        }
        if let Bucketing::MegaBatch { factor: 0 } = self.bucketing {
            return Err(DataError::InvalidConfig(
                "mega-batch factor must be at least 1".into(),
            ));
        }
        match self.pad_to {
            PadTo::MultipleOf(0) | PadTo::Fixed(0) => Err(DataError::InvalidConfig(
                "pad length must be at least 1".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// The target an item carries into its batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemTarget {
    None,
    Class(usize),
    Score(f64),
    /// Seq2seq decoder labels (any length; padded with [`IGNORE_INDEX`] to the batch's longest).
    Labels(Vec<i64>),
    /// Causal-LM labels aligned with the input ids (same length); padded like the inputs.
    AlignedLabels(Vec<i64>),
}

impl ItemTarget {
    /// Class or score targets of an example (text targets need [`crate::tokenize`] first).
    pub fn from_target(target: Option<&Target>) -> Self {
        match target {
            Some(Target::Class(c)) => ItemTarget::Class(*c),
            Some(Target::Score(s)) => ItemTarget::Score(*s),
            _ => ItemTarget::None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ItemTarget::None => "none",
            ItemTarget::Class(_) => "class",
            ItemTarget::Score(_) => "score",
            ItemTarget::Labels(_) => "labels",
            ItemTarget::AlignedLabels(_) => "aligned labels",
        }
    }
}

/// One tokenised example ready for batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub ids: Vec<u32>,
    /// Segment ids; empty means all zeros.
    pub type_ids: Vec<u32>,
    pub target: ItemTarget,
}

impl Item {
    pub fn new(encoded: Encoded, target: ItemTarget) -> Self {
        Self {
            ids: encoded.ids,
            type_ids: encoded.type_ids,
            target,
        }
    }
}

/// Tokenises a dataset into batch items: inputs with the encoder's template and truncation;
/// class/score targets for classification/regression; decoder labels of the first reference for
/// generation (seq2seq; needs `max_target_length`). Unlabelled examples get [`ItemTarget::None`],
/// so a dataset mixing labelled and unlabelled rows is rejected by [`Batcher::new`].
/// Span-QA and multiple-choice tasks need a task-specific prompt format and are not handled here.
pub fn items_for_dataset(encoder: &TextEncoder, dataset: &Dataset) -> Result<Vec<Item>> {
    dataset.ensure_not_empty("the dataset to tokenise")?;
    let (encoded, _report) = encoder.encode_examples(&dataset.examples)?;
    let mut items = Vec::with_capacity(encoded.len());
    for (enc, example) in encoded.into_iter().zip(&dataset.examples) {
        let target = match (&dataset.task.kind, &example.target) {
            (_, None) => ItemTarget::None,
            (TaskKind::Classification { .. } | TaskKind::Regression, target) => {
                ItemTarget::from_target(target.as_ref())
            }
            (TaskKind::Generation, Some(Target::Text(references))) => {
                let first = references.first().ok_or_else(|| {
                    DataError::InconsistentTargets(format!(
                        "example {} has no reference text",
                        example.id
                    ))
                })?;
                ItemTarget::Labels(encoder.encode_target(first)?.0)
            }
            (kind, Some(target)) => {
                return Err(DataError::Unsupported(format!(
                    "batching {kind:?} examples with {} targets (example {}); format them as \
                     prompts first",
                    target.kind_name(),
                    example.id
                )));
            }
        };
        items.push(Item::new(enc, target));
    }
    Ok(items)
}

/// Targets of a batch, one per row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BatchTargets {
    None,
    Classes(Vec<i64>),
    Scores(Vec<f32>),
    /// Token labels, row-major `[rows, len]`, padded with [`IGNORE_INDEX`].
    Tokens {
        labels: Vec<i64>,
        len: usize,
    },
}

/// A padded batch: row-major `[rows, seq_len]` tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub rows: usize,
    pub seq_len: usize,
    /// Row `r` is item `example_indices[r]` of the batcher's items.
    pub example_indices: Vec<usize>,
    pub targets: BatchTargets,
}

impl Batch {
    /// `[rows, seq_len]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.seq_len]
    }

    /// Number of token slots (real + padding) the model processes.
    pub fn slots(&self) -> usize {
        self.rows * self.seq_len
    }
}

/// Real tokens versus the slots a batching plan pads them to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaddingStats {
    pub real_tokens: usize,
    pub padded_slots: usize,
    pub batches: usize,
}

impl PaddingStats {
    /// Fraction of slots that are padding.
    pub fn padding_fraction(&self) -> f64 {
        if self.padded_slots == 0 {
            0.0
        } else {
            1.0 - self.real_tokens as f64 / self.padded_slots as f64
        }
    }
}

/// Uniform integer in `0..n` from 64-bit draws by rejection (no modulo bias). Written out here,
/// not taken from `rand`, so the shuffle cannot change with a `rand` upgrade.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let zone = (u64::MAX / n) * n;
    loop {
        let x = rng.next_u64();
        if x < zone {
            return (x % n) as usize;
        }
    }
}

/// Fisher–Yates shuffle driven by [`below`].
fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// The epoch's random stream: ChaCha8 seeded by `seed`, stream number `epoch`.
fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng
}

/// Which items go into which batch, in order, for one epoch. Every index `0..lengths.len()`
/// appears exactly once. Depends only on the lengths, the config and the epoch.
pub fn plan_batches(
    lengths: &[usize],
    config: &BatchConfig,
    epoch: u64,
) -> Result<Vec<Vec<usize>>> {
    config.validate()?;
    let mut rng = epoch_rng(config.seed, epoch);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    if config.shuffle {
        shuffle(&mut order, &mut rng);
    }
    let by_length_desc = |a: &usize, b: &usize| lengths[*b].cmp(&lengths[*a]);
    let mut batches: Vec<Vec<usize>> = match config.bucketing {
        Bucketing::None => order
            .chunks(config.batch_size)
            .map(<[usize]>::to_vec)
            .collect(),
        Bucketing::SortAll => {
            order.sort_by(by_length_desc);
            order
                .chunks(config.batch_size)
                .map(<[usize]>::to_vec)
                .collect()
        }
        Bucketing::MegaBatch { factor } => {
            let window = config.batch_size.saturating_mul(factor);
            let mut batches = Vec::new();
            for mega in order.chunks_mut(window) {
                mega.sort_by(by_length_desc);
                batches.extend(mega.chunks(config.batch_size).map(<[usize]>::to_vec));
            }
            batches
        }
    };
    if config.shuffle && config.bucketing != Bucketing::None {
        shuffle(&mut batches, &mut rng);
    }
    Ok(batches)
}

/// Turns tokenised items into padded batches.
#[derive(Debug, Clone)]
pub struct Batcher {
    items: Vec<Item>,
    pad_id: u32,
    config: BatchConfig,
}

impl Batcher {
    /// Checks the config and that every item carries the same kind of target.
    pub fn new(items: Vec<Item>, pad_id: u32, config: BatchConfig) -> Result<Self> {
        config.validate()?;
        if items.is_empty() {
            return Err(DataError::Empty {
                what: "the items to batch".into(),
            });
        }
        let kind = items[0].target.kind();
        for (i, item) in items.iter().enumerate() {
            if item.target.kind() != kind {
                return Err(DataError::InconsistentTargets(format!(
                    "item {i} has a {} target but item 0 has a {kind} target",
                    item.target.kind()
                )));
            }
            if !item.type_ids.is_empty() && item.type_ids.len() != item.ids.len() {
                return Err(DataError::InvalidConfig(format!(
                    "item {i} has {} ids but {} type ids",
                    item.ids.len(),
                    item.type_ids.len()
                )));
            }
            if let ItemTarget::AlignedLabels(labels) = &item.target
                && labels.len() != item.ids.len()
            {
                return Err(DataError::InvalidConfig(format!(
                    "item {i} has {} ids but {} aligned labels",
                    item.ids.len(),
                    labels.len()
                )));
            }
            if let PadTo::Fixed(len) = config.pad_to
                && item.ids.len() > len
            {
                return Err(DataError::InvalidConfig(format!(
                    "item {i} has {} tokens, more than the fixed pad length {len}",
                    item.ids.len()
                )));
            }
        }
        Ok(Self {
            items,
            pad_id,
            config,
        })
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Item lengths in tokens.
    pub fn lengths(&self) -> Vec<usize> {
        self.items.iter().map(|i| i.ids.len()).collect()
    }

    /// The epoch's batch plan (see [`plan_batches`]).
    pub fn plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        // The config was validated in `new`, so planning cannot fail.
        plan_batches(&self.lengths(), &self.config, epoch).unwrap_or_default()
    }

    /// The padded batches of one epoch.
    pub fn epoch(&self, epoch: u64) -> Vec<Batch> {
        self.plan(epoch)
            .iter()
            .map(|rows| self.collate_planned(rows))
            .collect()
    }

    /// Real tokens and padded slots of one epoch's plan, without building tensors.
    pub fn padding_stats(&self, epoch: u64) -> PaddingStats {
        let mut stats = PaddingStats::default();
        for rows in self.plan(epoch) {
            let longest = rows
                .iter()
                .map(|&r| self.items[r].ids.len())
                .max()
                .unwrap_or(0);
            stats.real_tokens += rows.iter().map(|&r| self.items[r].ids.len()).sum::<usize>();
            stats.padded_slots += rows.len() * self.padded_len(longest);
            stats.batches += 1;
        }
        stats
    }

    fn padded_len(&self, longest: usize) -> usize {
        match self.config.pad_to {
            PadTo::Longest => longest,
            PadTo::MultipleOf(m) => longest.div_ceil(m) * m,
            PadTo::Fixed(len) => len,
        }
    }

    /// Pads the given items (any subset, e.g. a custom plan) into one batch.
    pub fn collate(&self, rows: &[usize]) -> Result<Batch> {
        if rows.is_empty() {
            return Err(DataError::Empty {
                what: "the rows of a batch".into(),
            });
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.items.len()) {
            return Err(DataError::InvalidConfig(format!(
                "row {bad} is out of range for {} items",
                self.items.len()
            )));
        }
        Ok(self.collate_planned(rows))
    }

    /// [`Self::collate`] for rows from [`plan_batches`], which are non-empty and in range.
    fn collate_planned(&self, rows: &[usize]) -> Batch {
        let longest = rows
            .iter()
            .map(|&r| self.items[r].ids.len())
            .max()
            .unwrap_or(0);
        let seq_len = self.padded_len(longest);
        let n = rows.len();
        let mut input_ids = vec![i64::from(self.pad_id); n * seq_len];
        let mut attention_mask = vec![0i64; n * seq_len];
        let mut token_type_ids = vec![0i64; n * seq_len];
        for (r, &item_index) in rows.iter().enumerate() {
            let item = &self.items[item_index];
            let row = r * seq_len;
            for (k, &id) in item.ids.iter().enumerate() {
                input_ids[row + k] = i64::from(id);
                attention_mask[row + k] = 1;
            }
            for (k, &t) in item.type_ids.iter().enumerate() {
                token_type_ids[row + k] = i64::from(t);
            }
        }
        let targets = self.collate_targets(rows, seq_len);
        Batch {
            input_ids,
            attention_mask,
            token_type_ids,
            rows: n,
            seq_len,
            example_indices: rows.to_vec(),
            targets,
        }
    }

    fn collate_targets(&self, rows: &[usize], seq_len: usize) -> BatchTargets {
        let items = || rows.iter().map(|&r| &self.items[r].target);
        match self.items[0].target {
            ItemTarget::None => BatchTargets::None,
            ItemTarget::Class(_) => BatchTargets::Classes(
                items()
                    .map(|t| {
                        if let ItemTarget::Class(c) = t {
                            *c as i64
                        } else {
                            IGNORE_INDEX
                        }
                    })
                    .collect(),
            ),
            ItemTarget::Score(_) => BatchTargets::Scores(
                items()
                    .map(|t| {
                        if let ItemTarget::Score(s) = t {
                            *s as f32
                        } else {
                            f32::NAN
                        }
                    })
                    .collect(),
            ),
            ItemTarget::Labels(_) | ItemTarget::AlignedLabels(_) => {
                let label_rows: Vec<&[i64]> = items()
                    .map(|t| match t {
                        ItemTarget::Labels(l) | ItemTarget::AlignedLabels(l) => l.as_slice(),
                        _ => &[],
                    })
                    .collect();
                let len = if matches!(self.items[0].target, ItemTarget::AlignedLabels(_)) {
                    seq_len
                } else {
                    label_rows.iter().map(|l| l.len()).max().unwrap_or(0)
                };
                let mut labels = vec![IGNORE_INDEX; rows.len() * len];
                for (r, row) in label_rows.iter().enumerate() {
                    labels[r * len..r * len + row.len()].copy_from_slice(row);
                }
                BatchTargets::Tokens { labels, len }
            }
        }
    }
}
