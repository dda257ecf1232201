//! SQuAD v1.1 / v2.0 JSON reader.
//!
//! Layout: `{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
//! "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`. v2.0 marks unanswerable
//! questions with `is_impossible: true` and no `answers` (their `plausible_answers` are ignored).
//! The version is taken from `version` (`v2.0`) or from the presence of `is_impossible`.
//! Every answer must lie inside its context (`answer_start` counts Unicode scalar values, as
//! Python string indices do); one that does not is an error naming its JSON path.

use std::path::Path;

use serde::Deserialize;

use crate::error::{DataError, Location, Result};
use crate::readers::parse_json_document;
use crate::task::{Dataset, Example, SpanAnswer, Target, Task};

#[derive(Deserialize)]
struct SquadFile {
    #[serde(default)]
    version: Option<String>,
    data: Vec<Article>,
}

#[derive(Deserialize)]
struct Article {
    paragraphs: Vec<Paragraph>,
}

#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}

#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<Answer>,
    #[serde(default)]
    is_impossible: Option<bool>,
}

#[derive(Deserialize)]
struct Answer {
    text: String,
    answer_start: usize,
}

/// Reads a SQuAD v1.1 or v2.0 file. Inputs are `[question, context]`.
pub fn read_squad(path: &Path) -> Result<Dataset> {
    let file: SquadFile = parse_json_document(path)?;
    let v2 = file
        .version
        .as_deref()
        .is_some_and(|v| v.trim_start_matches('v').starts_with('2'))
        || file
            .data
            .iter()
            .flat_map(|a| &a.paragraphs)
            .flat_map(|p| &p.qas)
            .any(|q| q.is_impossible.is_some());
    let mut examples = Vec::new();
    for (ai, article) in file.data.iter().enumerate() {
        for (pi, paragraph) in article.paragraphs.iter().enumerate() {
            let context_chars = paragraph.context.chars().count();
            for (qi, qa) in paragraph.qas.iter().enumerate() {
                let record = format!("data[{ai}].paragraphs[{pi}].qas[{qi}] id={}", qa.id);
                let impossible = qa.is_impossible.unwrap_or(false);
                if impossible && !qa.answers.is_empty() {
                    return Err(DataError::malformed(
                        Location::record(path, record),
                        "an unanswerable question (is_impossible) must have no answers",
                    ));
                }
                if !impossible && qa.answers.is_empty() {
                    return Err(DataError::malformed(
                        Location::record(path, record),
                        "an answerable question has no answers",
                    ));
                }
                let mut answers = Vec::with_capacity(qa.answers.len());
                for (k, answer) in qa.answers.iter().enumerate() {
                    let end = answer.answer_start + answer.text.chars().count();
                    if end > context_chars {
                        return Err(DataError::malformed(
                            Location::record(path, format!("{record} answers[{k}]")),
                            format!(
                                "answer {:?} at {} ends at {end}, past the context's {context_chars} characters",
                                answer.text, answer.answer_start
                            ),
                        ));
                    }
                    answers.push(SpanAnswer {
                        text: answer.text.clone(),
                        start_char: answer.answer_start,
                    });
                }
                examples.push(Example {
                    id: qa.id.clone(),
                    inputs: vec![qa.question.clone(), paragraph.context.clone()],
                    options: Vec::new(),
                    target: Some(Target::Span(answers)),
                });
            }
        }
    }
    let dataset = Dataset {
        task: Task::squad(v2),
        examples,
    };
    dataset.ensure_not_empty(&format!("{}", path.display()))?;
    Ok(dataset)
}
