//! BERT/RoBERTa against `transformers`: outputs of every head, losses, and two AdamW steps,
//! compared with the fixtures written by `tests/fixtures/gen_encoder.py`.

mod common;

use bomf_models::bert::Task;
use bomf_models::params::named_gradients;
use bomf_models::weights::load_bert;
use bomf_models::{BertConfig, BertWithHead, SequenceClassifier, params, weights};
use common::*;

/// fp32 logits tolerance required by the issue.
const TOL: f32 = 1e-4;

fn load<Bk: burn::tensor::backend::Backend>(folder: &str, task: Task) -> BertWithHead<Bk> {
    let device = Default::default();
    let (model, _, report) = load_bert::<Bk>(fixtures().join(folder), task, &device).unwrap();
    assert!(
        report.freshly_initialised.is_empty(),
        "{folder}: {report:?}"
    );
    model
}

fn check_base(flavor: &str, folder: &str) {
    let e = expected(flavor);
    let model = load::<B>(folder, Task::Base);
    let out = model
        .base
        .forward(&input(&e["inputs"], &Default::default()));
    assert_base_outputs(
        folder,
        out.last_hidden_state,
        out.pooled.unwrap(),
        &e["base"],
        TOL,
    );
}

tests_of!(check_base {
    bert_base_matches_transformers("bert", "bert_base"),
    roberta_base_matches_transformers("roberta", "roberta_base"),
    pytorch_bin_checkpoint_loads_like_safetensors("bert", "bert_base_bin"),
});

fn check_seqcls(flavor: &str, folder: &str) {
    let e = expected(flavor);
    let device = Default::default();
    let model = load::<B>(folder, Task::SequenceClassification);
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_logits_and_loss(logits, &e["seqcls"], TOL, |logits, labels| {
        model.classification_loss(logits, int_tensor(labels, &device))
    });
}

tests_of!(check_seqcls {
    bert_sequence_classification_matches_transformers("bert", "bert_seqcls"),
    roberta_sequence_classification_matches_transformers("roberta", "roberta_seqcls"),
    sharded_safetensors_load_like_a_single_file("bert", "bert_seqcls_sharded"),
});

#[test]
fn roberta_regression_matches_transformers() {
    let e = expected("roberta");
    let device = Default::default();
    let model = load::<B>("roberta_regression", Task::SequenceClassification);
    assert_eq!(
        model.problem_type(),
        bomf_models::bert::ProblemType::Regression
    );
    let logits = model
        .sequence_logits(&input(&e["inputs"], &device))
        .unwrap();
    assert_logits_and_loss(logits, &e["regression"], TOL, |logits, labels| {
        model.regression_loss(logits, float_tensor(labels, &device))
    });
}

fn check_qa(flavor: &str) {
    let e = expected(flavor);
    let q = &e["qa"];
    let device = Default::default();
    let model = load::<B>(&format!("{flavor}_qa"), Task::QuestionAnswering);
    let logits = model.span_logits(&input(&e["inputs"], &device)).unwrap();
    assert_close("start", logits.start.clone(), &q["start_logits"], TOL);
    assert_close("end", logits.end.clone(), &q["end_logits"], TOL);
    let loss = model.span_loss(
        &logits,
        int_tensor(&q["start_positions"], &device),
        int_tensor(&q["end_positions"], &device),
    );
    assert_scalar("span loss", loss, &q["loss"], TOL);
}

tests_of!(check_qa {
    bert_question_answering_matches_transformers("bert"),
    roberta_question_answering_matches_transformers("roberta"),
});

fn check_mc(flavor: &str) {
    let e = expected(flavor);
    let m = &e["mc"];
    let device = Default::default();
    let model = load::<B>(&format!("{flavor}_mc"), Task::MultipleChoice);
    let choices = m["num_choices"].as_u64().unwrap() as usize;
    let logits = model
        .multiple_choice_logits(&input(&m["inputs"], &device), choices)
        .unwrap();
    assert_logits_and_loss(logits, m, TOL, |logits, labels| {
        model.classification_loss(logits, int_tensor(labels, &device))
    });
}

tests_of!(check_mc {
    bert_multiple_choice_matches_transformers("bert"),
    roberta_multiple_choice_matches_transformers("roberta"),
});

/// Fine-tuning starts from a base checkpoint: the head is fresh, the encoder is the checkpoint's.
fn check_head_from_base(flavor: &str) {
    let dir = fixtures().join(format!("{flavor}_base"));
    let device = Default::default();
    let config = BertConfig::from_file(dir.join("config.json"))
        .unwrap()
        .with_num_labels(3);
    let (model, report) =
        weights::load_bert_with_config::<B>(&dir, &config, Task::SequenceClassification, &device)
            .unwrap();
    let fresh: Vec<&str> = report
        .freshly_initialised
        .iter()
        .map(String::as_str)
        .collect();
    let prefix = flavor;
    if flavor == "bert" {
        assert_eq!(fresh, ["classifier.bias", "classifier.weight"]);
        assert!(report.ignored.is_empty(), "{report:?}");
    } else {
        assert_eq!(
            fresh,
            [
                "classifier.dense.bias",
                "classifier.dense.weight",
                "classifier.out_proj.bias",
                "classifier.out_proj.weight"
            ]
        );
        // RobertaForSequenceClassification has no pooler.
        assert_eq!(report.ignored, ["pooler.dense.bias", "pooler.dense.weight"]);
    }
    let e = expected(flavor);
    let hidden = model
        .base
        .forward(&input(&e["inputs"], &device))
        .last_hidden_state;
    assert_close(
        "encoder from base checkpoint",
        hidden,
        &e["base"]["last_hidden_state"],
        TOL,
    );
    let names: Vec<String> = params::param_shapes(&model)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&format!("{prefix}.embeddings.word_embeddings.weight")));
}

tests_of!(check_head_from_base {
    bert_head_from_base_checkpoint_is_fresh("bert"),
    roberta_head_from_base_checkpoint_is_fresh("roberta"),
});

/// Two AdamW steps (no dropout) against PyTorch: losses, first-step gradients and the weights
/// after the second step.
fn check_training(flavor: &str) {
    let e = expected(flavor);
    let device = Default::default();
    let dir = fixtures().join(format!("{flavor}_seqcls"));
    let config = BertConfig::from_file(dir.join("config.json"))
        .unwrap()
        .without_dropout();
    let (model, _) =
        weights::load_bert_with_config::<AB>(&dir, &config, Task::SequenceClassification, &device)
            .unwrap();
    check_classifier_training(
        flavor,
        model,
        &e,
        TOL,
        |model: &BertWithHead<AB>, inputs, labels| {
            model.classification_loss(model.sequence_logits(inputs).unwrap(), labels)
        },
    );
}

tests_of!(check_training {
    bert_training_steps_match_pytorch("bert"),
    roberta_training_steps_match_pytorch("roberta"),
});

/// Span-QA loss reaches the embeddings at padded positions: like PyTorch's `padding_idx`, the
/// padding rows must get no gradient (and the other rows exactly PyTorch's).
fn check_qa_embedding_gradients(flavor: &str) {
    let e = expected(flavor);
    let q = &e["qa"];
    let device = Default::default();
    let dir = fixtures().join(format!("{flavor}_qa"));
    let config = BertConfig::from_file(dir.join("config.json"))
        .unwrap()
        .without_dropout();
    let (model, _) =
        weights::load_bert_with_config::<AB>(&dir, &config, Task::QuestionAnswering, &device)
            .unwrap();
    let logits = model.span_logits(&input(&e["inputs"], &device)).unwrap();
    let loss = model.span_loss(
        &logits,
        int_tensor(&q["start_positions"], &device),
        int_tensor(&q["end_positions"], &device),
    );
    let named = named_gradients(&model, &loss.backward()).unwrap();
    assert_tensors_close("grads", &named, &json_tensors(&q["grads"]), TOL);
    let pad = config.pad_token_id;
    let (_, word) = named
        .iter()
        .find(|(n, _)| n.ends_with("word_embeddings.weight"))
        .unwrap();
    let hidden = config.hidden_size;
    assert!(
        word.data[pad * hidden..(pad + 1) * hidden]
            .iter()
            .all(|&g| g == 0.0)
    );
}

tests_of!(check_qa_embedding_gradients {
    bert_embedding_gradients_skip_the_padding_row("bert"),
    roberta_embedding_gradients_skip_the_padding_row("roberta"),
});
