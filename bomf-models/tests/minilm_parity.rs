//! The real MiniLM (BERT architecture, from the assets folder) against `transformers`.
//! Skipped with a message when the assets are absent, unless `BOMF_REQUIRE_ASSETS=1`.

mod common;

use std::path::PathBuf;

use bomf_models::bert::Task;
use bomf_models::weights::load_bert;
use common::*;

fn minilm_dir() -> Option<PathBuf> {
    let root = std::env::var_os("BOMF_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.bomf/assets"));
    let dir = root.join("minilm");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    if std::env::var("BOMF_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!(
            "BOMF_REQUIRE_ASSETS=1 but MiniLM is not at {}",
            dir.display()
        );
    }
    println!(
        "skipped: MiniLM assets not found at {} (set BOMF_ASSETS or fetch the assets)",
        dir.display()
    );
    None
}

#[test]
fn minilm_hidden_states_match_transformers() {
    let Some(dir) = minilm_dir() else { return };
    let e = read_json(&fixtures().join("minilm_expected.json"));
    let device = Default::default();
    let (model, config, report) = load_bert::<B>(&dir, Task::Base, &device).unwrap();
    assert_eq!(config.hidden_size, 384);
    println!("MiniLM load report: {report:?}");
    let out = model.base.forward(&input(&e["inputs"], &device));
    let d = assert_close(
        "MiniLM last hidden state",
        out.last_hidden_state,
        &e["last_hidden_state"],
        1e-4,
    );
    let p = assert_close("MiniLM pooled", out.pooled.unwrap(), &e["pooled"], 1e-4);
    println!("MiniLM: max abs diff hidden {d:e}, pooled {p:e}");
}
