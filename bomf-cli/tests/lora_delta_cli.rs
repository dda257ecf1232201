//! `[fusion] lora = "delta"` and `bomf fuse --lora delta` on the tiny LLaMA fixtures
//! (`fixtures/tiny_gen`, see `generative_cli.rs`): the updates of K rank-r adapters are fused
//! exactly into one adapter of rank K·r. A run exports that adapter and the merged model, and
//! both reproduce the test loss the run reported for its chosen fusion (the export fuses as
//! stage 3 evaluated); `bomf fuse` writes the adapter whose update is Σ_k w_k s·B_k A_k.

use std::collections::BTreeMap;
use std::path::Path;

use bomf_models::HfTensor;
use bomf_models::weights::read_safetensors;
use bomf_tests::cli::{close, fail, fuse_args, json, succeed};
use serde_json::Value;

bomf_tests::bomf_cli!();

mod common;

use common::{Data, LORA, eval_with, fixtures};

/// `bomf eval` of `model` (with `extra` flags) on the test split, as JSON.
fn eval(dir: &Path, model: &Path, extra: &[&str]) -> Value {
    eval_with(dir, model, Data::Generation, "test", extra)
}

#[test]
fn a_delta_run_exports_the_rank_kr_adapter_and_the_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_run_config(
        dir.path(),
        ("llama", LORA),
        Data::Generation,
        "budget = 4\nlora = \"delta\"\nkernel = \"matern52_gamma\"\n",
        "greedy_soup = false\nloss_only_bo = true\n",
    );
    succeed(&bomf(
        &["run", config.to_str().unwrap(), "--out", "run"],
        dir.path(),
    ));
    let run = dir.path().join("run");
    let chosen = json(&run.join("results.json"))["methods"][0]["test"].clone();
    let reported = chosen["loss"].as_f64().unwrap();

    // peft folder: rank K·r = 12 at the update scale 8 / 4 = 2.
    let adapter = run.join("fused-adapter");
    let adapter_config = json(&adapter.join("adapter_config.json"));
    assert_eq!(adapter_config["r"], 12);
    assert!(close(
        adapter_config["lora_alpha"].as_f64().unwrap(),
        24.0,
        1e-12
    ));
    // Both exports evaluate as the run's chosen fusion did.
    let merged = eval(dir.path(), &run.join("fused"), &[]);
    let base = fixtures().join("llama");
    let adapted = eval(dir.path(), &base, &["--adapter", adapter.to_str().unwrap()]);
    for (name, got) in [("fused/", &merged), ("fused-adapter/", &adapted)] {
        let loss = got["loss"].as_f64().unwrap();
        assert!(close(loss, reported, 1e-5), "{name}: {loss} vs {reported}");
    }
    // The kernel reached stage 3 and the loss-only BO baseline.
    for state in ["search-bomf", "search-loss-only-BO"] {
        let search = json(&run.join(format!("state/{state}.json")));
        assert_eq!(search["config"]["kernel"], "matern52_gamma", "{state}");
        assert_eq!(search["config"]["lora"], "delta", "{state}");
        let settings = &search["optimizer"]["settings"];
        assert_eq!(settings["gp_preset"], "MaternGamma", "{state}");
    }
}

fn tensors(dir: &Path) -> BTreeMap<String, HfTensor> {
    read_safetensors(&dir.join("adapter_model.safetensors"))
        .unwrap()
        .tensors
}

/// `s·B·A` of the projection with factors `<stem>lora_A.weight`, `<stem>lora_B.weight`.
fn update(t: &BTreeMap<String, HfTensor>, stem: &str, s: f64) -> Vec<f64> {
    let a = &t[&format!("{stem}lora_A.weight")];
    let b = &t[&format!("{stem}lora_B.weight")];
    let (r, d_in, d_out) = (a.shape[0], a.shape[1], b.shape[0]);
    let mut out = vec![0.0; d_out * d_in];
    for o in 0..d_out {
        for i in 0..d_in {
            out[o * d_in + i] = s
                * (0..r)
                    .map(|j| f64::from(b.data[o * r + j]) * f64::from(a.data[j * d_in + i]))
                    .sum::<f64>();
        }
    }
    out
}

#[test]
fn bomf_fuse_delta_writes_the_exact_update() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fixtures().join("adapter_a"), fixtures().join("adapter_b"));
    let base = fixtures().join("llama");
    let out = dir.path().join("delta");
    let fuse = |weights: &str, lora: &str, out: &Path, first: &Path| {
        let flags = ["--base", base.to_str().unwrap(), "--lora", lora];
        bomf(
            &fuse_args(&[first, b.as_path()], weights, out, &flags),
            dir.path(),
        )
    };
    succeed(&fuse("0.3,0.7", "delta", &out, &a));
    let config = json(&out.join("adapter_config.json"));
    assert_eq!(config["r"], 8);
    assert!(close(config["lora_alpha"].as_f64().unwrap(), 16.0, 1e-12));
    let (ta, tb, fused) = (tensors(&a), tensors(&b), tensors(&out));
    let stems: Vec<String> = fused
        .keys()
        .filter_map(|k| k.strip_suffix("lora_A.weight").map(str::to_string))
        .collect();
    assert!(!stems.is_empty());
    for stem in &stems {
        let (ua, ub, got) = (
            update(&ta, stem, 2.0),
            update(&tb, stem, 2.0),
            update(&fused, stem, 2.0),
        );
        for ((g, x), y) in got.iter().zip(&ua).zip(&ub) {
            let want = 0.3 * x + 0.7 * y;
            assert!(
                (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{stem}: {g} vs {want}"
            );
        }
    }
    // It loads as a peft adapter of the base model.
    let got = eval(dir.path(), &base, &["--adapter", out.to_str().unwrap()]);
    assert!(got["loss"].as_f64().unwrap().is_finite());

    // Off the simplex the rank-K·r form is not the weighted update: refused, not approximated.
    let err = fail(&fuse("0.5,0.6", "delta", &dir.path().join("bad1"), &a));
    assert!(err.contains("summing to 1"), "{err}");
    // `--lora` is for adapter folders.
    let err = fail(&fuse("0.5,0.5", "delta", &dir.path().join("bad2"), &base));
    assert!(
        err.contains("--lora applies to peft LoRA adapter folders"),
        "{err}"
    );
}
