//! BOMF end to end through the libraries, as a library user runs it without the CLI: a JSONL file
//! read and split by `bomf-data`, a Hugging Face folder loaded by `bomf-models`, the three
//! stages of `bomf-core`, searched by `bomf-bo`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bomf_core::eval::EvalSet;
use bomf_core::fusion_bo::FusionBoConfig;
use bomf_core::hpbo::{HpSpace, HpboConfig};
use bomf_core::pipeline::{BaselinesConfig, BomfConfig, ModelRequest, PipelineData, run_bomf};
use bomf_core::train::{Budget, TrainConfig};
use bomf_core::trajectory::{KeepRule, TrajectoryConfig};
use bomf_data::batch::items_for_dataset;
use bomf_data::spec::DataSpec;
use bomf_data::task::TaskKind;
use bomf_data::tokenize::{EncoderConfig, ModelFamily, TextEncoder};
use bomf_models::weights::{load_bert_checkpoint, read_checkpoint};
use bomf_models::{BertConfig, BertWithHead, CpuAutodiffBackend as AB, Task};
use burn::tensor::backend::Backend;

/// The tiny BERT folder and review file the CLI tests use.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bomf-cli/tests/fixtures/tiny")
}

#[test]
fn three_stages_on_a_file_and_a_model_folder() {
    let spec = DataSpec::from_toml_str(
        &format!(
            "format = \"jsonl\"\npath = {:?}\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
             [split]\nkind = \"by_rank\"\ntrain = 24\nvalidation = 12\ntest = 12\nseed = 0\n",
            fixtures().join("train.jsonl").display().to_string()
        ),
        "e2e",
    )
    .unwrap();
    let splits = spec.load().unwrap();
    let TaskKind::Classification { labels } = &splits.train.task.kind else {
        panic!("a classification file")
    };
    let model_dir = fixtures().join("a");
    let config = BertConfig::from_file(model_dir.join("config.json"))
        .unwrap()
        .with_labels(labels);
    let encoder = TextEncoder::from_file(
        &model_dir.join("tokenizer.json"),
        EncoderConfig::new(ModelFamily::Bert, 32),
    )
    .unwrap();
    let checkpoint = read_checkpoint(&model_dir).unwrap();
    let device = Default::default();
    let make_model = |request: ModelRequest| -> bomf_core::Result<BertWithHead<AB>> {
        request.reject_lora_rank()?;
        let config = if request.dropout {
            config.clone()
        } else {
            config.clone().without_dropout()
        };
        AB::seed(&device, 3);
        let model = BertWithHead::new(&config, Task::SequenceClassification, &device);
        Ok(load_bert_checkpoint(model, checkpoint.clone(), &device)?.0)
    };
    let eval_set = |split: &bomf_data::task::Dataset| {
        let items = items_for_dataset(&encoder, split).unwrap();
        EvalSet::new(split.task.clone(), items, encoder.pad_id(), 8).unwrap()
    };
    let (validation, test) = (eval_set(&splits.validation), eval_set(&splits.test));
    let test_examples = splits.test.len();
    assert!(test_examples > 0);
    let train_items = items_for_dataset(&encoder, &splits.train).unwrap();
    let bomf = BomfConfig {
        train: TrainConfig {
            learning_rate: 1e-2,
            budget: Budget::Epochs(3),
            ..TrainConfig::default()
        },
        batch_size: 8,
        hpbo: Some(HpboConfig {
            space: HpSpace {
                learning_rate: (1e-3, 3e-2),
                batch_size: Some((4, 12)),
                ..HpSpace::default()
            },
            n_initial: 2,
            budget: 3,
            ..HpboConfig::default()
        }),
        trajectory: TrajectoryConfig {
            rule: KeepRule::LastK,
            k: 3,
            every: 1,
            patience: 5,
        },
        fusion: FusionBoConfig {
            budget: Some(6),
            ..FusionBoConfig::default()
        },
        baselines: BaselinesConfig::default(),
    };
    let data = PipelineData {
        train_items: &train_items,
        pad_id: encoder.pad_id(),
        validation: &validation,
        test: &test,
    };
    let report = run_bomf::<AB, _>(&make_model, data, &bomf, &device).unwrap();

    assert_eq!(report.hpbo_trials.len(), 3, "stage 1 ran its budget");
    assert_eq!(report.kept.len(), 3, "stage 2 kept K checkpoints");
    assert_eq!(report.fusion_records.len(), 6, "stage 3 ran its budget");
    for method in &report.methods {
        assert_eq!(method.test.num_examples, test_examples, "{}", method.method);
        assert!(method.test.loss.is_finite(), "{}", method.method);
        if !method.weights.is_empty() {
            let sum: f64 = method.weights.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-9,
                "{}: weights sum to {sum}",
                method.method
            );
        }
    }
    let names: BTreeSet<&str> = report.methods.iter().map(|m| m.method.as_str()).collect();
    let expected = [
        "BOMF (posterior mean)",
        "best checkpoint",
        "SWA",
        "greedy soup",
    ];
    assert!(names.is_superset(&BTreeSet::from(expected)), "{names:?}");
}
