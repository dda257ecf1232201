//! Data specs from TOML: every split kind, label sets across files, filters, and the errors
//! that name a misplaced key.

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The message of the error that parsing `text` as a spec gives.
fn parse_error(text: &str) -> String {
    DataSpec::from_toml_str(text, "spec.toml")
        .unwrap_err()
        .to_string()
}

/// Loads the spec `text`, which must parse.
fn load_toml(text: &str) -> Result<Splits> {
    DataSpec::from_toml_str(text, "spec.toml").unwrap().load()
}

fn jsonl_lines(n: usize) -> String {
    (0..n)
        .map(|i| {
            let label = ["neg", "pos", "neutral"][i % 3];
            format!("{{\"text\": \"sentence number {i}\", \"label\": \"{label}\"}}\n")
        })
        .collect()
}

fn class_label(d: &Dataset, i: usize) -> &str {
    match &d.examples[i].target {
        Some(Target::Class(c)) => &d.task.labels()[*c],
        other => panic!("not a class target: {other:?}"),
    }
}

#[test]
fn by_rank_toml_gives_exact_counts_and_sorted_labels_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "all.jsonl", &jsonl_lines(30));
    let spec_path = write(
        dir.path(),
        "data.toml",
        "format = \"jsonl\"\npath = \"all.jsonl\"\ntext_fields = [\"text\"]\n\
         label_field = \"label\"\n[split]\nkind = \"by_rank\"\ntrain = 20\n\
         validation = 5\ntest = 4\nseed = 3\n",
    );
    let spec = DataSpec::from_file(&spec_path).unwrap();
    let splits = spec.load().unwrap();
    assert_eq!(splits.train.len(), 20);
    assert_eq!(splits.validation.len(), 5);
    assert_eq!(splits.test.len(), 4);
    assert_eq!(splits.train.task.labels(), ["neg", "neutral", "pos"]);
    assert_eq!(
        splits.train.task.metrics,
        vec![Metric::Accuracy, Metric::F1Macro]
    );
    // Same spec, same splits; the one-split loader agrees with the full one.
    let again = spec.load().unwrap();
    assert_eq!(again, splits);
    let validation = spec.load_split(SplitName::Validation).unwrap();
    assert_eq!(validation, splits.validation);
    // Another seed reshuffles.
    let mut other = spec.clone();
    other.split = SplitSpec::ByRank {
        train: 20,
        validation: 5,
        test: 4,
        seed: 4,
    };
    assert_ne!(other.load().unwrap().validation, splits.validation);
}

#[test]
fn fractions_split_the_whole_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "all.csv", "text,label\na,0\nb,1\nc,0\nd,1\n");
    let mut spec = DataSpec::new(
        DataFormat::Csv,
        SplitSpec::Fractions {
            train: 0.5,
            validation: 0.25,
            test: 0.25,
            seed: 0,
        },
    );
    spec.path = Some(path);
    spec.text_fields = Some(vec!["text".into()]);
    spec.label_field = Some("label".into());
    let s = spec.load().unwrap();
    assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (2, 1, 1));
    // Integer labels sort numerically.
    assert_eq!(s.train.task.labels(), ["0", "1"]);
}

#[test]
fn split_files_share_one_label_set() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.jsonl",
        "{\"t\": \"x\", \"y\": \"b\"}\n{\"t\": \"y\", \"y\": \"c\"}\n",
    );
    write(dir.path(), "dev.jsonl", "{\"t\": \"z\", \"y\": \"a\"}\n");
    let spec = DataSpec::from_toml_str(
        "format = \"jsonl\"\ntext_fields = [\"t\"]\nlabel_field = \"y\"\n\
         [split]\nkind = \"files\"\ntrain = \"train.jsonl\"\nvalidation = \"dev.jsonl\"\n",
        "inline",
    )
    .map(|mut s| {
        s.resolve_paths(dir.path());
        s
    })
    .unwrap();
    let s = spec.load().unwrap();
    assert_eq!(s.train.task.labels(), ["a", "b", "c"]);
    assert_eq!(s.validation.task.labels(), ["a", "b", "c"]);
    assert_eq!(class_label(&s.train, 0), "b");
    assert_eq!(class_label(&s.train, 1), "c");
    assert_eq!(class_label(&s.validation, 0), "a");
    assert!(s.test.is_empty());
    // The one-split loader keeps the union (it reads every file).
    let v = spec.load_split(SplitName::Validation).unwrap();
    assert_eq!(v, s.validation);
    let err = spec.load_split(SplitName::Test).unwrap_err().to_string();
    assert!(err.contains("test split"), "{err}");
}

#[test]
fn hold_out_cuts_validation_from_the_train_file_and_tests_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.jsonl", &jsonl_lines(20));
    write(
        dir.path(),
        "dev.jsonl",
        "{\"text\": \"held out\", \"label\": \"other\"}\n",
    );
    let toml = |validation: usize| {
        format!(
            "format = \"jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
             [split]\nkind = \"hold_out\"\ntrain = \"train.jsonl\"\ntest = \"dev.jsonl\"\n\
             validation = {validation}\nseed = 1\n"
        )
    };
    let spec = |validation: usize| {
        let mut s = DataSpec::from_toml_str(&toml(validation), "inline").unwrap();
        s.resolve_paths(dir.path());
        s
    };
    let s = spec(5).load().unwrap();
    assert_eq!(
        (s.train.len(), s.validation.len(), s.test.len()),
        (15, 5, 1)
    );
    // The two parts of the train file are disjoint and cover it.
    let mut seen: Vec<&str> = s
        .train
        .examples
        .iter()
        .chain(&s.validation.examples)
        .map(|e| e.inputs[0].as_str())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20);
    // One label set over both files (the dev file's label is new to the train file).
    assert_eq!(s.train.task.labels(), ["neg", "neutral", "other", "pos"]);
    assert_eq!(s.test.task.labels(), s.train.task.labels());
    assert_eq!(class_label(&s.test, 0), "other");
    assert_eq!(spec(5).load_split(SplitName::Test).unwrap(), s.test);
    // Holding out all (or none) of the train file is an error that says so.
    let err = spec(20).load().unwrap_err().to_string();
    assert!(err.contains("cannot hold out 20 of the 20"), "{err}");
    let err = parse_error(&toml(0));
    assert!(err.contains("split.validation"), "{err}");
    // The files are given in [split]: a `path` too is a mistake.
    let mut both = spec(5);
    both.path = Some(dir.path().join("train.jsonl"));
    assert!(both.validate().unwrap_err().to_string().contains("path"));
}

#[test]
fn a_data_table_of_a_run_config_is_accepted() {
    let text = "seed = 1\n[data]\nformat = \"bigbench\"\npath = \"tasks/multiemo\"\n\
                [data.split]\nkind = \"by_rank\"\ntrain = 10\nvalidation = 2\ntest = 2\n";
    let spec = DataSpec::from_toml_str(text, "run.toml").unwrap();
    assert_eq!(spec.format, DataFormat::Bigbench);
    assert_eq!(spec.path.as_deref(), Some(Path::new("tasks/multiemo")));
    // BIG-bench is a reader for files users bring: an installed `asset` is not a source.
    let err = parse_error(&text.replace("path = \"tasks/multiemo\"", "asset = \"multiemo\""));
    assert!(err.contains("asset"), "{err}");
}

#[test]
fn keep_filters_rows_and_as_generation_writes_labels_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "reviews.csv",
        "category,text\nfresh,a fine film\nplot,a man walks\nrotten,dull\nfresh,lovely\n\
         rotten,too long\nplot,a woman runs\n",
    );
    let toml = |extra: &str| {
        format!(
            "format = \"csv\"\npath = \"{}\"\ntext_fields = [\"text\"]\n\
             label_field = \"category\"\n{extra}\n\
             [split]\nkind = \"by_rank\"\ntrain = 2\nvalidation = 1\ntest = 1\n",
            csv.display()
        )
    };
    let kept = toml("keep = { field = \"category\", values = [\"fresh\", \"rotten\"] }");
    let splits = load_toml(&kept).unwrap();
    assert_eq!(splits.train.task.labels(), ["fresh", "rotten"]);
    let n = splits.train.len() + splits.validation.len() + splits.test.len();
    assert_eq!(n, 4);
    // Without the filter the plot rows are a third class.
    let all = load_toml(&toml("")).unwrap();
    assert_eq!(all.train.task.labels(), ["fresh", "plot", "rotten"]);
    // A filter that keeps nothing, or names no value, says so.
    let none = toml("keep = { field = \"category\", values = [\"mixed\"] }");
    let err = load_toml(&none).unwrap_err();
    assert!(err.to_string().contains("mixed"), "{err}");
    let empty = toml("keep = { field = \"category\", values = [] }");
    assert!(DataSpec::from_toml_str(&empty, "inline").is_err());

    let keep = "keep = { field = \"category\", values = [\"fresh\", \"rotten\"] }";
    let generation = load_toml(&toml(&format!("{keep}\nas_generation = true"))).unwrap();
    assert_eq!(generation.train.task.kind, TaskKind::Generation);
    assert_eq!(generation.train.task.metrics, [Metric::SquadExactMatch]);
    for (text, class) in generation.test.examples.iter().zip(&splits.test.examples) {
        let label = &splits.test.task.labels()[match class.target {
            Some(Target::Class(c)) => c,
            _ => unreachable!(),
        }];
        assert_eq!(text.target, Some(Target::Text(vec![label.clone()])));
    }
}

/// Each spec is refused with a message holding every one of its words.
#[test]
fn unknown_keys_and_misplaced_fields_are_named() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "format = \"jsonl\"\npath = \"a.jsonl\"\ntext_feilds = [\"t\"]\n\
             [split]\nkind = \"by_rank\"\ntrain = 1\nvalidation = 1\ntest = 0\n",
            &["text_feilds", "line 3"],
        ),
        (
            "format = \"bigbench\"\npath = \"x\"\ntext_fields = [\"t\"]\n\
             [split]\nkind = \"by_rank\"\ntrain = 1\nvalidation = 1\ntest = 0\n",
            &["`text_fields`", "bigbench"],
        ),
        (
            "format = \"csv\"\npath = \"x.csv\"\n[split]\nkind = \"fractions\"\n\
             train = 0.9\nvalidation = 0.2\ntest = 0.0\n",
            &["text_fields"],
        ),
        (
            "format = \"csv\"\npath = \"x.csv\"\ntext_fields = [\"t\"]\n[split]\n\
             kind = \"fractions\"\ntrain = 0.9\nvalidation = 0.2\ntest = 0.0\n",
            &["more than 1"],
        ),
        (
            "format = \"glue\"\npath = \"glue\"\n[split]\nkind = \"glue_protocol\"\n",
            &["`task`"],
        ),
        // An unknown key of the split table.
        (
            "format = \"csv\"\npath = \"x.csv\"\ntext_fields = [\"t\"]\n[split]\n\
             kind = \"by_rank\"\ntrian = 1\nvalidation = 1\ntest = 0\n",
            &["trian"],
        ),
    ];
    for (toml, words) in cases {
        let err = parse_error(toml);
        for word in words {
            assert!(err.contains(word), "{word} not in: {err}");
        }
    }
}

#[test]
fn label_order_can_follow_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "d.jsonl", &jsonl_lines(6));
    let mut spec = DataSpec::new(
        DataFormat::Jsonl,
        SplitSpec::Files {
            train: None,
            validation: Some(path),
            test: None,
        },
    );
    spec.text_fields = Some(vec!["text".into()]);
    spec.label_field = Some("label".into());
    let d = spec.load_split(SplitName::Validation).unwrap();
    let order: Vec<String> = ["pos", "neutral", "neg"].map(String::from).to_vec();
    let r = with_label_order(d.clone(), &order).unwrap();
    assert_eq!(r.task.labels(), order.as_slice());
    for i in 0..d.len() {
        assert_eq!(class_label(&r, i), class_label(&d, i));
    }
    let err = with_label_order(d, &["a".into(), "b".into(), "c".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("label `neg`"), "{err}");
}

#[test]
fn missing_files_and_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = DataSpec::new(
        DataFormat::Jsonl,
        SplitSpec::ByRank {
            train: 1,
            validation: 1,
            test: 0,
            seed: 0,
        },
    );
    spec.path = Some(dir.path().join("absent.jsonl"));
    spec.text_fields = Some(vec!["text".into()]);
    let err = spec.load().unwrap_err().to_string();
    assert!(err.contains("absent.jsonl"), "{err}");

    spec.path = Some(write(
        dir.path(),
        "a.jsonl",
        "{\"txt\": \"hi\", \"label\": 1}\n",
    ));
    spec.label_field = Some("label".into());
    let err = spec.load().unwrap_err().to_string();
    assert!(err.contains("a.jsonl:1") && err.contains("`text`"), "{err}");
}

#[test]
fn glue_folder_splits_by_the_paper_protocol() {
    // The fixture folder has only MRPC's dev file: use it as the train file too.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/glue/MRPC");
    let dir = tempfile::tempdir().unwrap();
    let glue = dir.path().to_path_buf();
    std::fs::create_dir(glue.join("MRPC")).unwrap();
    for (from, to) in [("dev.tsv", "train.tsv"), ("dev.tsv", "dev.tsv")] {
        std::fs::copy(fixture.join(from), glue.join("MRPC").join(to)).unwrap();
    }
    let mut spec = DataSpec::new(
        DataFormat::Glue,
        SplitSpec::GlueProtocol {
            seed: 0,
            large_holdout: 1000,
        },
    );
    spec.path = Some(glue.clone());
    spec.task = Some("mrpc".into());
    let s = spec.load().unwrap();
    let dev = read_glue_dir(&glue, GlueTask::Mrpc, GlueSplit::Dev).unwrap();
    assert_eq!(s.validation.len() + s.test.len(), dev.len());
    assert_eq!(s.train.task.labels(), ["not_equivalent", "equivalent"]);
    assert_eq!(s.train.task.metrics, GlueTask::Mrpc.metrics());
}

#[test]
fn bigbench_folder_becomes_classification() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data/bigbench");
    // Find a fixture task whose examples share one option set.
    let mut found = false;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(d) = read_bigbench(&dir) else { continue };
        if d.task.kind != TaskKind::MultipleChoice || d.to_classification().is_err() {
            continue;
        }
        let mut spec = DataSpec::new(
            DataFormat::Bigbench,
            SplitSpec::Fractions {
                train: 0.5,
                validation: 0.5,
                test: 0.0,
                seed: 0,
            },
        );
        spec.path = Some(dir.clone());
        let s = spec.load().unwrap();
        assert!(matches!(s.train.task.kind, TaskKind::Classification { .. }));
        assert_eq!(s.train.len() + s.validation.len(), d.len());
        found = true;
    }
    assert!(
        found,
        "no shared-option BIG-bench fixture under {}",
        root.display()
    );
}

#[test]
fn split_names_parse() {
    assert_eq!("dev".parse::<SplitName>().unwrap(), SplitName::Validation);
    assert_eq!("Test".parse::<SplitName>().unwrap(), SplitName::Test);
    assert!("holdout".parse::<SplitName>().is_err());
}
