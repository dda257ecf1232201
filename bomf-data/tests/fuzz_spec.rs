//! Fuzzing the data-spec parser: random text and random edits of valid specs must give a spec or
//! an error, never a panic.

use bomf_data::spec::DataSpec;
use proptest::prelude::*;

/// Valid specs to mutate: the shapes users write (tabular, mcqa with a filter, files splits).
const SEEDS: [&str; 3] = [
    "format = \"jsonl\"\npath = \"d.jsonl\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\n\
     [split]\nkind = \"fractions\"\ntrain = 0.8\nvalidation = 0.1\ntest = 0.1\nseed = 0\n",
    "[data]\nformat = \"mcqa\"\npath = \"m.jsonl\"\nkeep = { field = \"subject\", values = [\"a\"] }\n\
     [data.mcqa]\nquestion_field = \"q\"\noption_fields = [\"a\", \"b\"]\nanswer_field = \"ans\"\n\
     [data.split]\nkind = \"by_rank\"\ntrain = 10\nvalidation = 2\ntest = 2\n",
    "format = \"tsv\"\ntext_fields = [\"text\"]\nlabel_field = \"label\"\nas_generation = true\n\
     [split]\nkind = \"files\"\ntrain = \"t.tsv\"\nvalidation = \"v.tsv\"\ntest = \"x.tsv\"\n",
];

/// One edit of a text: delete, insert or replace a span.
fn mutate(text: &str, at: usize, len: usize, insert: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    let mut out: String = chars[..at].iter().collect();
    out.push_str(insert);
    out.extend(&chars[end..]);
    out
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = DataSpec::from_toml_str(&text, "fuzz");
    }

    #[test]
    fn edited_specs_never_panic(
        seed in 0usize..SEEDS.len(),
        edits in prop::collection::vec((0usize..400, 0usize..12, "[a-z0-9=\\[\\]\"{}., \n_-]{0,12}"), 1..6),
    ) {
        let mut text = SEEDS[seed].to_string();
        for (at, len, insert) in &edits {
            text = mutate(&text, *at, *len, insert);
        }
        if let Ok(spec) = DataSpec::from_toml_str(&text, "fuzz") {
            let _ = spec.input_paths();
        }
    }
}

#[test]
fn the_seed_specs_parse() {
    for seed in SEEDS {
        DataSpec::from_toml_str(seed, "seed").unwrap();
    }
}
