//! What a task is: the kind of problem, its input fields, its label set and its metrics.
//!
//! A [`Task`] is the one description the rest of the pipeline looks at to decide which model
//! head to build, how to tokenise an [`Example`] and which metrics to report. A [`Dataset`] is a
//! task plus its examples. Readers (see [`crate::readers`]) produce datasets; presets for the
//! paper's tasks live here ([`GlueTask`], [`Task::squad`], [`Task::samsum`], ...).

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::metrics::Metric;

/// The kind of problem, which decides the head, the loss and the target type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskKind {
    /// Pick one of a fixed label set; targets are [`Target::Class`] indices into `labels`.
    Classification { labels: Vec<String> },
    /// Predict a real number (STS-B similarity); targets are [`Target::Score`].
    Regression,
    /// Extractive question answering over a context (SQuAD); targets are [`Target::Span`].
    /// `unanswerable` is true when questions may have no answer (SQuAD v2.0).
    SpanQa { unanswerable: bool },
    /// Generate text (summaries, data-to-text, BIG-bench generative); targets are
    /// [`Target::Text`] with one or more references.
    Generation,
    /// Choose among per-example options (KorMedMCQA, BIG-bench `target_scores`); targets are
    /// [`Target::Choice`] scores aligned with [`Example::options`].
    MultipleChoice,
}

/// A task: what the pipeline needs to know about a dataset besides its examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Short stable name, e.g. `glue/mrpc` or `bigbench/multiemo/all_sentence_en`.
    pub name: String,
    pub kind: TaskKind,
    /// Names of the input fields, in the order they appear in [`Example::inputs`]: one for single
    /// text, two for paired text (e.g. `["sentence1", "sentence2"]` or `["question", "context"]`).
    pub input_fields: Vec<String>,
    /// The metrics this task reports, the first being the one model selection uses.
    pub metrics: Vec<Metric>,
}

impl Task {
    /// The label names of a classification task, or an empty slice for other kinds.
    pub fn labels(&self) -> &[String] {
        match &self.kind {
            TaskKind::Classification { labels } => labels,
            _ => &[],
        }
    }

    /// Whether the inputs are a pair of texts (sentence-pair classification, QA).
    pub fn is_pair(&self) -> bool {
        self.input_fields.len() == 2
    }

    /// SQuAD v1.1 (`unanswerable = false`) or v2.0 (`unanswerable = true`): EM and F1.
    pub fn squad(unanswerable: bool) -> Self {
        Self {
            name: if unanswerable {
                "squad_v2"
            } else {
                "squad_v1.1"
            }
            .to_string(),
            kind: TaskKind::SpanQa { unanswerable },
            input_fields: vec!["question".into(), "context".into()],
            metrics: vec![Metric::SquadExactMatch, Metric::SquadF1],
        }
    }

    /// SAMSum dialogue summarisation: ROUGE-1/2/L/Lsum.
    pub fn samsum() -> Self {
        Self {
            name: "samsum".into(),
            kind: TaskKind::Generation,
            input_fields: vec!["dialogue".into()],
            metrics: vec![
                Metric::Rouge1,
                Metric::Rouge2,
                Metric::RougeL,
                Metric::RougeLsum,
            ],
        }
    }

    /// E2E NLG (meaning representation to text), scored against all references of an MR.
    pub fn e2e_nlg() -> Self {
        Self {
            name: "e2e_nlg".into(),
            kind: TaskKind::Generation,
            input_fields: vec!["mr".into()],
            metrics: vec![Metric::Bleu, Metric::RougeL],
        }
    }

    /// KorMedMCQA-style multiple-choice QA: accuracy.
    pub fn mcqa(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: TaskKind::MultipleChoice,
            input_fields: vec!["question".into()],
            metrics: vec![Metric::Accuracy],
        }
    }

    /// A BIG-bench JSON task: multiple choice (accuracy) or generative (BLEU, ROUGE-L, exact match
    /// is left to the caller).
    pub fn bigbench(name: impl Into<String>, multiple_choice: bool) -> Self {
        let (kind, metrics) = if multiple_choice {
            (TaskKind::MultipleChoice, vec![Metric::Accuracy])
        } else {
            (TaskKind::Generation, vec![Metric::Bleu, Metric::RougeL])
        };
        Self {
            name: format!("bigbench/{}", name.into()),
            kind,
            input_fields: vec!["input".into()],
            metrics,
        }
    }
}

/// The GLUE tasks the paper fine-tunes on (WNLI and AX are left out, as in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlueTask {
    Cola,
    Sst2,
    Mrpc,
    Stsb,
    Qqp,
    Mnli,
    Qnli,
    Rte,
}

impl GlueTask {
    /// All eight tasks, in the GLUE paper's order.
    pub const ALL: [GlueTask; 8] = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Stsb,
        GlueTask::Qqp,
        GlueTask::Mnli,
        GlueTask::Qnli,
        GlueTask::Rte,
    ];

    /// Lower-case name as used by the HF `glue` dataset (`cola`, `sst2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Stsb => "stsb",
            GlueTask::Qqp => "qqp",
            GlueTask::Mnli => "mnli",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
        }
    }

    /// Parses `cola`, `SST-2`, `sts-b`, ... (case and dashes ignored).
    pub fn parse(name: &str) -> Result<Self> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        GlueTask::ALL
            .into_iter()
            .find(|t| t.name() == key)
            .ok_or_else(|| DataError::InvalidConfig(format!("unknown GLUE task `{name}`")))
    }

    /// Directory name in the official GLUE download (`CoLA`, `SST-2`, ...).
    pub fn dir_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Stsb => "STS-B",
            GlueTask::Qqp => "QQP",
            GlueTask::Mnli => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
        }
    }

    /// Label names in the order of the HF `glue` dataset's class indices, which is also the
    /// order of the model's output logits. Empty for STS-B (regression).
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            GlueTask::Cola => &["unacceptable", "acceptable"],
            GlueTask::Sst2 => &["negative", "positive"],
            GlueTask::Mrpc => &["not_equivalent", "equivalent"],
            GlueTask::Stsb => &[],
            GlueTask::Qqp => &["not_duplicate", "duplicate"],
            GlueTask::Mnli => &["entailment", "neutral", "contradiction"],
            GlueTask::Qnli | GlueTask::Rte => &["entailment", "not_entailment"],
        }
    }

    /// Names of the input fields of the HF `glue` dataset (and of JSONL/CSV exports of it).
    pub fn input_fields(self) -> &'static [&'static str] {
        match self {
            GlueTask::Cola | GlueTask::Sst2 => &["sentence"],
            GlueTask::Mrpc | GlueTask::Stsb | GlueTask::Rte => &["sentence1", "sentence2"],
            GlueTask::Qqp => &["question1", "question2"],
            GlueTask::Mnli => &["premise", "hypothesis"],
            GlueTask::Qnli => &["question", "sentence"],
        }
    }

    /// Metrics GLUE reports for the task; the first is the model-selection metric used by the
    /// paper's code (accuracy, or F1 for MRPC/QQP).
    pub fn metrics(self) -> Vec<Metric> {
        match self {
            GlueTask::Cola => vec![Metric::MatthewsCorrelation],
            GlueTask::Sst2 | GlueTask::Mnli | GlueTask::Qnli | GlueTask::Rte => {
                vec![Metric::Accuracy]
            }
            GlueTask::Mrpc | GlueTask::Qqp => vec![Metric::F1Binary, Metric::Accuracy],
            GlueTask::Stsb => vec![Metric::Pearson, Metric::Spearman],
        }
    }

    /// "Large" tasks in the paper authors' protocol: they hold out training examples for
    /// validation and use the whole dev set as test; small tasks split the dev set 50/50.
    pub fn is_large(self) -> bool {
        matches!(
            self,
            GlueTask::Mnli | GlueTask::Qqp | GlueTask::Qnli | GlueTask::Sst2
        )
    }

    /// The task description.
    pub fn task(self) -> Task {
        let kind = match self {
            GlueTask::Stsb => TaskKind::Regression,
            _ => TaskKind::Classification {
                labels: self.label_names().iter().map(|s| s.to_string()).collect(),
            },
        };
        Task {
            name: format!("glue/{}", self.name()),
            kind,
            input_fields: self.input_fields().iter().map(|s| s.to_string()).collect(),
            metrics: self.metrics(),
        }
    }
}

/// One gold answer of an extractive QA example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanAnswer {
    pub text: String,
    /// Offset of the answer in the context, in Unicode scalar values (Python `str` indices,
    /// as SQuAD's `answer_start`).
    pub start_char: usize,
}

/// The gold output of an example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Index into the task's label set.
    Class(usize),
    /// Regression target.
    Score(f64),
    /// Gold answers; empty means "no answer" (SQuAD v2.0).
    Span(Vec<SpanAnswer>),
    /// One or more reference texts.
    Text(Vec<String>),
    /// One score per option in [`Example::options`]; the highest score is correct (KorMedMCQA:
    /// one-hot; BIG-bench: the task's `target_scores`).
    Choice(Vec<f64>),
}

impl Target {
    /// Short name of the target kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Target::Class(_) => "class",
            Target::Score(_) => "score",
            Target::Span(_) => "span",
            Target::Text(_) => "text",
            Target::Choice(_) => "choice",
        }
    }
}

/// One example: its inputs, its options (multiple choice only) and its gold target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id from the source file (or `<line>`/`<index>` when the file has none).
    pub id: String,
    /// Input texts, aligned with [`Task::input_fields`].
    pub inputs: Vec<String>,
    /// Answer options of a multiple-choice example; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The gold target; `None` for unlabelled data (e.g. GLUE test files).
    pub target: Option<Target>,
}

impl Example {
    /// Index of the correct option (the first highest-scoring one) of a multiple-choice example.
    pub fn correct_choice(&self) -> Option<usize> {
        match &self.target {
            Some(Target::Choice(scores)) => {
                let mut best: Option<(usize, f64)> = None;
                for (i, &s) in scores.iter().enumerate() {
                    if best.is_none_or(|(_, b)| s > b) {
                        best = Some((i, s));
                    }
                }
                best.map(|(i, _)| i)
            }
            _ => None,
        }
    }
}

/// A task and its examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub task: Task,
    pub examples: Vec<Example>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Fails with [`DataError::Empty`] when there are no examples; `what` names the split.
    pub fn ensure_not_empty(&self, what: &str) -> Result<()> {
        if self.examples.is_empty() {
            return Err(DataError::Empty {
                what: format!("{what} of {}", self.task.name),
            });
        }
        Ok(())
    }

    /// The same task with a subset of the examples, by index (order kept as given).
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            task: self.task.clone(),
            examples: indices
                .iter()
                .filter_map(|&i| self.examples.get(i).cloned())
                .collect(),
        }
    }

    /// Turns a multiple-choice dataset whose examples all offer the same options (in any order,
    /// e.g. BIG-bench `multiemo`: positive/negative/neutral/ambivalent) into a classification
    /// dataset whose labels are the options in the first example's order. This lets a
    /// sequence-classification model train on it.
    pub fn to_classification(&self) -> Result<Dataset> {
        if self.task.kind != TaskKind::MultipleChoice {
            return Err(DataError::Unsupported(format!(
                "{} is not a multiple-choice task, cannot turn it into classification",
                self.task.name
            )));
        }
        let first = self.examples.first().ok_or_else(|| DataError::Empty {
            what: self.task.name.clone(),
        })?;
        let labels = first.options.clone();
        let mut sorted_labels = labels.clone();
        sorted_labels.sort();
        let mut examples = Vec::with_capacity(self.examples.len());
        for ex in &self.examples {
            let mut opts = ex.options.clone();
            opts.sort();
            if opts != sorted_labels {
                return Err(DataError::InconsistentTargets(format!(
                    "example {} of {} offers options {:?}, not the shared set {:?}",
                    ex.id, self.task.name, ex.options, labels
                )));
            }
            let target = match ex.correct_choice() {
                Some(i) => {
                    let label = &ex.options[i];
                    let class = labels.iter().position(|l| l == label).unwrap_or_default();
                    Some(Target::Class(class))
                }
                None => None,
            };
            examples.push(Example {
                id: ex.id.clone(),
                inputs: ex.inputs.clone(),
                options: Vec::new(),
                target,
            });
        }
        let mut metrics = self.task.metrics.clone();
        if metrics.is_empty() {
            metrics.push(Metric::Accuracy);
        }
        Ok(Dataset {
            task: Task {
                name: self.task.name.clone(),
                kind: TaskKind::Classification { labels },
                input_fields: self.task.input_fields.clone(),
                metrics,
            },
            examples,
        })
    }
    /// A classification dataset as text-to-text generation, the way T5 casts classification:
    /// each labelled example's target becomes its label's text (the one reference), an
    /// unlabelled example stays unlabelled. The task keeps its name and inputs; its metrics
    /// become `exact_match` (SQuAD normalisation: case, punctuation and articles do not count),
    /// which is the accuracy of the generated labels.
    pub fn classification_as_generation(&self) -> Result<Dataset> {
        let TaskKind::Classification { labels } = &self.task.kind else {
            return Err(DataError::Unsupported(format!(
                "{} is not a classification task, cannot write its labels as text",
                self.task.name
            )));
        };
        let mut examples = Vec::with_capacity(self.examples.len());
        for ex in &self.examples {
            let target = match &ex.target {
                None => None,
                Some(Target::Class(c)) => {
                    let label = labels.get(*c).ok_or_else(|| {
                        DataError::InconsistentTargets(format!(
                            "example {} of {} has class {c} of {} labels",
                            ex.id,
                            self.task.name,
                            labels.len()
                        ))
                    })?;
                    Some(Target::Text(vec![label.clone()]))
                }
                Some(other) => {
                    return Err(DataError::InconsistentTargets(format!(
                        "example {} of {} has a {} target in a classification task",
                        ex.id,
                        self.task.name,
                        other.kind_name()
                    )));
                }
            };
            examples.push(Example {
                target,
                ..ex.clone()
            });
        }
        Ok(Dataset {
            task: Task {
                name: self.task.name.clone(),
                kind: TaskKind::Generation,
                input_fields: self.task.input_fields.clone(),
                metrics: vec![Metric::SquadExactMatch],
            },
            examples,
        })
    }
}
