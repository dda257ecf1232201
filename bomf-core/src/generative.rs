//! The generative families behind [`TaskModel`]: T5 (seq2seq), LLaMA (causal LM) and LLaMA with
//! LoRA adapters ([`LoraLlama`]), plus the item builders that turn generation and
//! multiple-choice datasets into batches those models train and are scored on.
//!
//! Loss and logits: every family scores a batch the same way. The log-softmax of the logits is
//! gathered at each labelled position (labels `-100` are ignored), giving per-token
//! log-probabilities; the batch loss is their negated mean over all labelled tokens (HF's
//! `CrossEntropyLoss(ignore_index=-100)`, so it equals `lm_loss` / `causal_lm_loss` of
//! `bomf_models`), and the `[rows, 1]` logits are each row's *mean* token log-probability — the
//! score multiple-choice evaluation ranks options by (length-normalised log-likelihood).
//!
//! LoRA: [`LoraLlama`] is one burn module holding the trainable adapters and the frozen base. Its
//! module tree (what visitors, mappers, the optimiser, [`crate::fusion::CheckpointSet`] and
//! checkpoint files see) is the adapters alone, under peft's names
//! (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`): the base model is a
//! constant carried along (moved between devices and backends with the adapters, never
//! enumerated). So training steps only the adapters, a trajectory keeps K copies of the
//! adapters only, and θ(w) is loaded back into the adapters of the same wrapper: of the same
//! rank r when the factors are averaged, or of rank K·r at the same update scale when the updates
//! are (`[fusion] lora = "delta"`, see [`crate::fusion::LoraFusion`]); [`LoraLlama::merged`] and
//! the peft export then hold exactly Σ_k w_k s·B_k A_k.

use bomf_data::batch::{Batch, BatchTargets, Item, ItemTarget};
use bomf_data::task::{Dataset, Example, Target, TaskKind};
use bomf_data::tokenize::{IGNORE_INDEX, ModelFamily, TextEncoder};
use bomf_models::generation::{Generate, pad_to_longest};
use bomf_models::lora::{self, LlamaLoraAdapters};
use bomf_models::{
    CausalLmInput, HfNamed, LlamaForCausalLM, Seq2SeqInput, T5ForConditionalGeneration,
};
use burn::module::{AutodiffModule, Devices, Module, ModuleMapper, ModuleVisitor};
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{CoreError, Result};
use crate::model::{BatchOutput, GenerationConfig, TaskModel};

// ---------------------------------------------------------------------------------------------
// Batch → host rows
// ---------------------------------------------------------------------------------------------

/// The batch's input ids and attention mask as rows.
fn input_rows(batch: &Batch) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    let w = batch.seq_len;
    let rows = |flat: &[i64]| flat.chunks(w.max(1)).map(<[i64]>::to_vec).collect();
    (rows(&batch.input_ids), rows(&batch.attention_mask))
}

/// The batch's inputs as the encoder input of a seq2seq model.
fn seq2seq_input(batch: &Batch) -> Seq2SeqInput {
    let (input_ids, attention_mask) = input_rows(batch);
    Seq2SeqInput {
        input_ids,
        attention_mask,
    }
}

/// The batch's token labels as rows (`-100` where ignored).
fn label_rows(batch: &Batch) -> Result<Vec<Vec<i64>>> {
    match &batch.targets {
        BatchTargets::Tokens { labels, len } if *len > 0 && labels.len() == batch.rows * len => {
            Ok(labels.chunks(*len).map(<[i64]>::to_vec).collect())
        }
        BatchTargets::Tokens { labels, len } => Err(CoreError::InvalidInput(format!(
            "token labels of {} values do not make {} rows of {len}",
            labels.len(),
            batch.rows
        ))),
        _ => Err(CoreError::InvalidInput(
            "a generative model trains on token targets (seq2seq labels or causal-LM labels)"
                .into(),
        )),
    }
}

/// Per-token log-probabilities of `labels` under `logits` `[rows, len, vocab]`: the batch loss
/// (negated mean over labelled tokens) and each row's mean log-probability as `[rows, 1]`.
pub fn score_tokens<B: Backend>(
    logits: Tensor<B, 3>,
    labels: &[Vec<i64>],
) -> Result<BatchOutput<B>> {
    let [rows, len, vocab] = logits.dims();
    if labels.len() != rows || labels.iter().any(|r| r.len() != len) {
        return Err(CoreError::InvalidInput(format!(
            "labels must be {rows} rows of {len} tokens"
        )));
    }
    let mut safe = Vec::with_capacity(rows * len);
    let mut weight = Vec::with_capacity(rows * len);
    let mut counts = Vec::with_capacity(rows);
    for (r, row) in labels.iter().enumerate() {
        let mut count = 0usize;
        for &t in row {
            if t == IGNORE_INDEX {
                safe.push(0i64);
                weight.push(0.0f32);
            } else if t < 0 || t as usize >= vocab {
                return Err(CoreError::InvalidInput(format!(
                    "label row {r}: {t} is neither a token id (vocabulary {vocab}) nor -100"
                )));
            } else {
                safe.push(t);
                weight.push(1.0);
                count += 1;
            }
        }
        counts.push(count.max(1) as f32);
    }
    let total: f32 = weight.iter().sum();
    if total == 0.0 {
        return Err(CoreError::InvalidInput(
            "every label of the batch is -100: the mean loss is undefined".into(),
        ));
    }
    let device = logits.device();
    let index = Tensor::<B, 3, Int>::from_data(TensorData::new(safe, [rows, len, 1]), &device);
    let weight = Tensor::<B, 2>::from_data(TensorData::new(weight, [rows, len]), &device);
    let picked = log_softmax(logits, 2).gather(2, index).reshape([rows, len]) * weight;
    let row_sums = picked.sum_dim(1); // [rows, 1]
    let loss = row_sums.clone().sum().div_scalar(total).neg();
    let counts = Tensor::<B, 2>::from_data(TensorData::new(counts, [rows, 1]), &device);
    Ok(BatchOutput {
        loss,
        logits: row_sums.detach() / counts,
    })
}

// ---------------------------------------------------------------------------------------------
// Decoder-only helpers (plain and LoRA)
// ---------------------------------------------------------------------------------------------

/// The causal-LM forward of a batch through `logits_at` (plain or adapted model's logits at the
/// given flat positions): logits at `t` predict the label at `t + 1`, and only the positions
/// followed by a label are projected onto the vocabulary (the prompt's are not).
fn causal_forward<B: Backend>(
    batch: &Batch,
    logits_at: impl FnOnce(&CausalLmInput, &[usize]) -> bomf_models::Result<Tensor<B, 2>>,
) -> Result<BatchOutput<B>> {
    let labels = label_rows(batch)?;
    if batch.seq_len < 2 || labels.first().is_some_and(|r| r.len() != batch.seq_len) {
        return Err(CoreError::InvalidInput(format!(
            "causal-LM labels must be aligned with inputs of at least 2 tokens (inputs {}, labels \
             {})",
            batch.seq_len,
            labels.first().map_or(0, Vec::len)
        )));
    }
    let seq = batch.seq_len;
    let (mut index, mut targets, mut row_of) = (Vec::new(), Vec::new(), Vec::new());
    for (r, row) in labels.iter().enumerate() {
        for (t, &label) in row.iter().enumerate().skip(1) {
            if label != IGNORE_INDEX {
                index.push(r * seq + t - 1);
                targets.push(label);
                row_of.push(r);
            }
        }
    }
    if index.is_empty() {
        return Err(CoreError::InvalidInput(
            "every label of the batch is -100: the mean loss is undefined".into(),
        ));
    }
    let (input_ids, attention_mask) = input_rows(batch);
    let logits = logits_at(
        &CausalLmInput {
            input_ids,
            attention_mask,
        },
        &index,
    )?;
    score_positions(logits, &targets, &row_of, labels.len())
}

/// [`score_tokens`] on logits `[n, vocab]` already gathered at the labelled positions:
/// `targets[i]` is position `i`'s label, `row_of[i]` its row among `rows`.
fn score_positions<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[i64],
    row_of: &[usize],
    rows: usize,
) -> Result<BatchOutput<B>> {
    let [n, vocab] = logits.dims();
    if let Some(t) = targets.iter().find(|&&t| t < 0 || t as usize >= vocab) {
        return Err(CoreError::InvalidInput(format!(
            "label {t} is neither a token id (vocabulary {vocab}) nor -100"
        )));
    }
    let device = logits.device();
    let index = Tensor::<B, 2, Int>::from_data(TensorData::new(targets.to_vec(), [n, 1]), &device);
    let picked = log_softmax(logits, 1).gather(1, index); // [n, 1]
    // Per-row sums as a product with the rows' one-hot membership `[rows, n]`.
    let mut membership = vec![0.0f32; rows * n];
    let mut counts = vec![0.0f32; rows];
    for (i, &r) in row_of.iter().enumerate() {
        membership[r * n + i] = 1.0;
        counts[r] += 1.0;
    }
    let membership = Tensor::<B, 2>::from_data(TensorData::new(membership, [rows, n]), &device);
    let row_sums = membership.matmul(picked.clone()); // [rows, 1]
    let loss = picked.sum().div_scalar(n as f32).neg();
    let counts: Vec<f32> = counts.into_iter().map(|c| c.max(1.0)).collect();
    let counts = Tensor::<B, 2>::from_data(TensorData::new(counts, [rows, 1]), &device);
    Ok(BatchOutput {
        loss,
        logits: row_sums.detach() / counts,
    })
}

/// Left-padded prompts of a causal batch: each row's tokens before its first labelled position
/// (all its real tokens when it has no labels).
fn causal_prompts(batch: &Batch, pad: i64) -> Result<CausalLmInput> {
    let (ids, mask) = input_rows(batch);
    let labels = label_rows(batch).ok();
    let mut prompts = Vec::with_capacity(batch.rows);
    for (r, (ids, mask)) in ids.iter().zip(&mask).enumerate() {
        let real = mask.iter().filter(|&&m| m == 1).count();
        let end = labels
            .as_ref()
            .and_then(|l| l[r].iter().position(|&t| t != IGNORE_INDEX))
            .unwrap_or(real)
            .min(real);
        if end == 0 {
            return Err(CoreError::InvalidInput(format!(
                "batch row {r} (example {}) has an empty prompt",
                batch.example_indices.get(r).copied().unwrap_or(r)
            )));
        }
        prompts.push(ids[..end].to_vec());
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (input_ids, attention_mask) = prompts
        .into_iter()
        .map(|p| {
            let pad_n = width - p.len();
            let mask = std::iter::repeat_n(0, pad_n)
                .chain(std::iter::repeat_n(1, p.len()))
                .collect();
            let ids = std::iter::repeat_n(pad, pad_n).chain(p).collect();
            (ids, mask)
        })
        .unzip();
    Ok(CausalLmInput {
        input_ids,
        attention_mask,
    })
}

/// Generates continuations of the batch's prompts with `model` (plain or adapted), by beam
/// search when `config` asks for beams and greedily otherwise.
fn causal_generate<B: Backend>(
    model: &LlamaForCausalLM<B>,
    batch: &Batch,
    config: &GenerationConfig,
) -> Result<Vec<Vec<i64>>> {
    let pad = config.pad_token_id;
    let prompts = causal_prompts(batch, pad)?;
    Ok(match config.beam() {
        Some(beam) => pad_to_longest(
            model.generate_beam(&prompts, &beam, &config.eos_token_ids)?,
            pad,
        ),
        None => {
            model.generate_greedy(&prompts, config.max_new_tokens, &config.eos_token_ids, pad)?
        }
    })
}

// ---------------------------------------------------------------------------------------------
// TaskModel implementations
// ---------------------------------------------------------------------------------------------

impl<B: Backend> TaskModel<B> for T5ForConditionalGeneration<B> {
    /// Teacher-forced seq2seq loss: decoder inputs are `shift_right(labels)`, as
    /// `model(input_ids, attention_mask, labels=labels)`.
    fn forward_batch(&self, batch: &Batch, _device: &B::Device) -> Result<BatchOutput<B>> {
        let labels = label_rows(batch)?;
        let input = seq2seq_input(batch);
        let decoder_input_ids = self.shift_right(&labels)?;
        let logits = self.logits(&input, &decoder_input_ids)?;
        score_tokens(logits, &labels)
    }

    fn generate_batch(
        &self,
        batch: &Batch,
        config: &GenerationConfig,
        _device: &B::Device,
    ) -> Result<Vec<Vec<i64>>> {
        let input = seq2seq_input(batch);
        Ok(match config.beam() {
            Some(beam) => self.generate_beam(&input, &beam, &config.eos_token_ids)?,
            None => self.generate_greedy(
                &input,
                config.max_new_tokens,
                &config.eos_token_ids,
                config.pad_token_id,
            )?,
        })
    }
}

impl<B: Backend> TaskModel<B> for LlamaForCausalLM<B> {
    /// Causal-LM loss over the labelled (target) positions; the prompt is labelled `-100`.
    fn forward_batch(&self, batch: &Batch, _device: &B::Device) -> Result<BatchOutput<B>> {
        causal_forward(batch, |input, index| self.logits_at(input, index))
    }

    fn generate_batch(
        &self,
        batch: &Batch,
        config: &GenerationConfig,
        _device: &B::Device,
    ) -> Result<Vec<Vec<i64>>> {
        causal_generate(self, batch, config)
    }
}

// ---------------------------------------------------------------------------------------------
// LLaMA + LoRA as one module
// ---------------------------------------------------------------------------------------------

/// A frozen LLaMA with trainable LoRA adapters, as one burn module whose parameters are the
/// adapters only (see the module docs). Build it with [`LoraLlama::new`].
#[derive(Debug, Clone)]
pub struct LoraLlama<B: Backend> {
    pub adapters: LlamaLoraAdapters<B>,
    /// The base model: frozen, outside the module tree (never enumerated, fused or stepped).
    pub base: LlamaForCausalLM<B>,
}

impl<B: Backend> LoraLlama<B> {
    /// Checks the adapters fit `base` and freezes `base` (no gradient is computed for it).
    pub fn new(base: LlamaForCausalLM<B>, adapters: LlamaLoraAdapters<B>) -> Result<Self> {
        adapters.check_fits(&base)?;
        Ok(Self {
            adapters,
            base: lora::freeze(base),
        })
    }

    /// The plain model with the adapters folded into its weights (`W + s·B·A`), for export.
    pub fn merged(&self) -> Result<LlamaForCausalLM<B>> {
        Ok(self.adapters.merge_into(self.base.clone())?)
    }
}

impl<B: Backend> Module<B> for LoraLlama<B> {
    /// Only the adapters are state; the base model is loaded separately.
    type Record = <LlamaLoraAdapters<B> as Module<B>>::Record;

    fn collect_devices(&self, devices: Devices<B>) -> Devices<B> {
        let devices = self.adapters.collect_devices(devices);
        self.base.collect_devices(devices)
    }

    fn fork(self, device: &B::Device) -> Self {
        Self {
            adapters: self.adapters.fork(device),
            base: self.base.fork(device),
        }
    }

    fn to_device(self, device: &B::Device) -> Self {
        Self {
            adapters: self.adapters.to_device(device),
            base: self.base.to_device(device),
        }
    }

    /// Visits the adapters as if they were the root, so parameter names are peft's.
    fn visit<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        self.adapters.visit(visitor);
    }

    fn map<M: ModuleMapper<B>>(self, mapper: &mut M) -> Self {
        Self {
            adapters: self.adapters.map(mapper),
            base: self.base,
        }
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            adapters: self.adapters.load_record(record),
            base: self.base,
        }
    }

    fn into_record(self) -> Self::Record {
        self.adapters.into_record()
    }
}

impl<B: AutodiffBackend> AutodiffModule<B> for LoraLlama<B> {
    type InnerModule = LoraLlama<B::InnerBackend>;

    fn valid(&self) -> Self::InnerModule {
        LoraLlama {
            adapters: self.adapters.valid(),
            base: self.base.valid(),
        }
    }

    fn from_inner(module: Self::InnerModule) -> Self {
        Self {
            adapters: AutodiffModule::from_inner(module.adapters),
            base: AutodiffModule::from_inner(module.base),
        }
    }
}

impl<B: Backend> HfNamed<B> for LoraLlama<B> {
    /// The adapters' own prefix: names are exactly those of `adapter_model.safetensors`.
    fn hf_base_prefix(&self) -> &str {
        self.adapters.hf_base_prefix()
    }
}

/// The base model with the adapters attached, as [`LlamaForCausalLM`]'s implementation.
impl<B: Backend> TaskModel<B> for LoraLlama<B> {
    fn forward_batch(&self, batch: &Batch, device: &B::Device) -> Result<BatchOutput<B>> {
        self.adapters
            .attach(&self.base)?
            .forward_batch(batch, device)
    }

    fn generate_batch(
        &self,
        batch: &Batch,
        config: &GenerationConfig,
        device: &B::Device,
    ) -> Result<Vec<Vec<i64>>> {
        let adapted = self.adapters.attach(&self.base)?;
        adapted.generate_batch(batch, config, device)
    }
}

// ---------------------------------------------------------------------------------------------
// Items for generation and multiple-choice datasets
// ---------------------------------------------------------------------------------------------

/// A generation split, ready for [`crate::eval::EvalSet::generative`] or a
/// [`bomf_data::batch::Batcher`].
#[derive(Debug, Clone)]
pub struct GenerationItems {
    /// One item per example, trained on its first reference.
    pub items: Vec<Item>,
    /// Every reference of each example (E2E NLG has several per MR), for ROUGE/BLEU.
    pub references: Vec<Vec<String>>,
}

/// A multiple-choice split: one item per (example, option), labelled with the option's tokens.
#[derive(Debug, Clone)]
pub struct ChoiceItems {
    pub items: Vec<Item>,
    /// `item_examples[i]` is the example item `i` is an option of.
    pub item_examples: Vec<usize>,
    /// The correct option of each example, counted within that example's items.
    pub answers: Vec<usize>,
}

/// The prompt a decoder-only model continues: the example's inputs joined by newlines, then a
/// newline (override with your own closure for a chat or few-shot template).
pub fn default_prompt(example: &Example) -> String {
    format!("{}\n", example.inputs.join("\n"))
}

/// An item whose target is `target` given `prompt`, in the encoder's family layout: seq2seq
/// (T5: encoder input + decoder labels) or causal (prompt + target with the prompt masked).
fn prompt_target_item(encoder: &TextEncoder, prompt: &str, target: &str) -> Result<Item> {
    Ok(match encoder.config().family {
        ModelFamily::T5 => Item::new(
            encoder.encode(&[prompt.to_string()])?,
            ItemTarget::Labels(encoder.encode_target(target)?.0),
        ),
        _ => {
            let c = encoder.encode_causal(prompt, target)?;
            Item {
                ids: c.ids,
                type_ids: Vec::new(),
                target: ItemTarget::AlignedLabels(c.labels),
            }
        }
    })
}

/// Errors unless `dataset` is a non-empty split of a task of `kind` (`what` names the kind).
fn check_split(dataset: &Dataset, kind: TaskKind, what: &str) -> Result<()> {
    if dataset.task.kind != kind {
        return Err(CoreError::InvalidInput(format!(
            "{} is not a {what} task",
            dataset.task.name
        )));
    }
    Ok(dataset.ensure_not_empty(&format!("the {what} split"))?)
}

/// Items of a generation dataset (every example needs at least one reference). For T5 the
/// prompt is the encoder input; `prompt` builds it from an example (e.g. [`default_prompt`]).
pub fn generation_items(
    encoder: &TextEncoder,
    dataset: &Dataset,
    prompt: impl Fn(&Example) -> String,
) -> Result<GenerationItems> {
    check_split(dataset, TaskKind::Generation, "generation")?;
    let mut items = Vec::with_capacity(dataset.len());
    let mut references = Vec::with_capacity(dataset.len());
    for example in &dataset.examples {
        let refs = match &example.target {
            Some(Target::Text(refs)) if !refs.is_empty() => refs,
            _ => {
                return Err(CoreError::InvalidInput(format!(
                    "example {} of {} has no reference text",
                    example.id, dataset.task.name
                )));
            }
        };
        items.push(prompt_target_item(encoder, &prompt(example), &refs[0])?);
        references.push(refs.clone());
    }
    Ok(GenerationItems { items, references })
}

/// Extractive QA (SQuAD) as generation, the way the paper fine-tunes T5 on SQuAD 2.0: the model
/// reads the question and the context ([`default_prompt`], so `bomf predict` with the same two
/// fields asks the same way) and writes the answer. It trains on the first gold answer, or on the
/// empty text for an unanswerable question (the model learns to stop at once), and is scored with
/// the task's own metrics (exact match and F1 of the official script) against every gold answer;
/// the empty reference of an unanswerable question is the script's `[""]`.
pub fn span_qa_as_generation(dataset: &Dataset) -> Result<Dataset> {
    if !matches!(dataset.task.kind, TaskKind::SpanQa { .. }) {
        return Err(CoreError::InvalidInput(format!(
            "{} is not an extractive QA task",
            dataset.task.name
        )));
    }
    let mut generation = dataset.clone();
    generation.task.kind = TaskKind::Generation;
    for example in &mut generation.examples {
        let answers = match &example.target {
            Some(Target::Span(answers)) => answers,
            _ => {
                return Err(CoreError::InvalidInput(format!(
                    "example {} of {} has no gold answers",
                    example.id, dataset.task.name
                )));
            }
        };
        let references = if answers.is_empty() {
            vec![String::new()]
        } else {
            answers.iter().map(|a| a.text.clone()).collect()
        };
        example.target = Some(Target::Text(references));
    }
    Ok(generation)
}

/// Items of a multiple-choice dataset: each option is scored as the continuation of the prompt
/// (its mean token log-likelihood); the answer is the option with the highest gold score.
pub fn choice_items(
    encoder: &TextEncoder,
    dataset: &Dataset,
    prompt: impl Fn(&Example) -> String,
) -> Result<ChoiceItems> {
    check_split(dataset, TaskKind::MultipleChoice, "multiple-choice")?;
    let mut out = ChoiceItems {
        items: Vec::new(),
        item_examples: Vec::new(),
        answers: Vec::with_capacity(dataset.len()),
    };
    for (e, example) in dataset.examples.iter().enumerate() {
        let answer = example
            .correct_choice()
            .filter(|&a| a < example.options.len())
            .ok_or_else(|| {
                CoreError::InvalidInput(format!(
                    "example {} of {} has no correct option among its {} options",
                    example.id,
                    dataset.task.name,
                    example.options.len()
                ))
            })?;
        let text = prompt(example);
        for option in &example.options {
            out.items.push(prompt_target_item(encoder, &text, option)?);
            out.item_examples.push(e);
        }
        out.answers.push(answer);
    }
    Ok(out)
}

/// Decodes generated ids: cut at the first end-of-sequence id, special tokens skipped, trimmed.
pub fn decode_generation(
    encoder: &TextEncoder,
    tokens: &[i64],
    config: &GenerationConfig,
) -> Result<String> {
    let end = tokens
        .iter()
        .position(|t| config.eos_token_ids.contains(t))
        .unwrap_or(tokens.len());
    let ids: Vec<u32> = tokens[..end]
        .iter()
        .filter_map(|&t| u32::try_from(t).ok())
        .collect();
    let text = encoder.tokenizer().decode(&ids, true).map_err(|e| {
        CoreError::Data(bomf_data::DataError::Tokenizer {
            context: "decoding a generation".into(),
            message: e.to_string(),
        })
    })?;
    Ok(text.trim().to_string())
}
