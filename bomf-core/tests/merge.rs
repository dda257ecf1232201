//! Streamed fusion of checkpoints of an architecture bomf does not implement: a tiny
//! Qwen2-shaped model, written here tensor by tensor with the safetensors crate, in the layouts
//! users have (a Trainer output folder, shards with an index, bf16/f16/f32).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bomf_core::merge::{self, CheckpointSet, MergeError, MergeOptions, OutDtype};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};

/// Qwen2-shaped tensors of a 2-layer model with hidden size 8 (names as transformers writes
/// them), split over two shards.
fn qwen2_tensors() -> Vec<(&'static str, Vec<usize>, usize)> {
    let mut t = vec![("model.embed_tokens.weight", vec![32, 8], 0)];
    for (layer, shard) in [(0, 0), (1, 1)] {
        let names: [(&str, Vec<usize>); 6] = [
            ("self_attn.q_proj.weight", vec![8, 8]),
            ("self_attn.q_proj.bias", vec![8]),
            ("self_attn.k_proj.weight", vec![4, 8]),
            ("mlp.gate_proj.weight", vec![16, 8]),
            ("mlp.down_proj.weight", vec![8, 16]),
            ("input_layernorm.weight", vec![8]),
        ];
        for (name, shape) in names {
            let full: &'static str =
                Box::leak(format!("model.layers.{layer}.{name}").into_boxed_str());
            t.push((full, shape, shard));
        }
    }
    t.push(("model.norm.weight", vec![8], 1));
    t
}

/// A deterministic value for element `i` of tensor `name` in checkpoint `k`.
fn value(name: &str, k: usize, i: usize) -> f32 {
    let h = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    ((h as usize + 13 * i + 101 * k) % 97) as f32 / 48.0 - 1.0
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&x| match dtype {
            Dtype::BF16 => bf16::from_f32(x).to_le_bytes().to_vec(),
            Dtype::F16 => f16::from_f32(x).to_le_bytes().to_vec(),
            _ => x.to_le_bytes().to_vec(),
        })
        .collect()
}

fn decode(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// What a checkpoint folder holds beyond the generated values.
struct Spec {
    dtype: Dtype,
    sharded: bool,
    /// Overrides: tensor name → values.
    edits: BTreeMap<&'static str, Vec<f32>>,
    /// Overrides: tensor name → shape (same element count).
    reshape: BTreeMap<&'static str, Vec<usize>>,
    /// A tensor left out.
    drop: Option<&'static str>,
    /// Added to the integer buffer's values.
    id_shift: i64,
}

/// A tensor as written: name, shape, little-endian bytes.
type Stored = (String, Vec<usize>, Vec<u8>);

fn write_checkpoint(dir: &Path, k: usize, spec: &Spec) {
    fs::create_dir_all(dir).unwrap();
    let mut shards: [Vec<Stored>; 2] = [Vec::new(), Vec::new()];
    for (name, shape, shard) in qwen2_tensors() {
        if spec.drop == Some(name) {
            continue;
        }
        let shape = spec.reshape.get(name).cloned().unwrap_or(shape);
        let n: usize = shape.iter().product();
        let values = spec
            .edits
            .get(name)
            .cloned()
            .unwrap_or_else(|| (0..n).map(|i| value(name, k, i)).collect());
        let shard = if spec.sharded { shard } else { 0 };
        shards[shard].push((name.to_owned(), shape, encode(&values, spec.dtype)));
    }
    // An integer buffer, equal in every checkpoint.
    let ids: Vec<u8> = (0..6i64)
        .flat_map(|i| (i + spec.id_shift).to_le_bytes())
        .collect();
    shards[0].push(("model.position_ids".into(), vec![1, 6], ids));
    let files = if spec.sharded {
        vec![
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ]
    } else {
        vec!["model.safetensors"]
    };
    let mut weight_map = BTreeMap::new();
    for (file, tensors) in files.iter().zip(&shards) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(name, shape, data)| {
                let dtype = if name.ends_with("position_ids") {
                    Dtype::I64
                } else {
                    spec.dtype
                };
                weight_map.insert(name.clone(), file.to_string());
                (
                    name.clone(),
                    TensorView::new(dtype, shape.clone(), data).unwrap(),
                )
            })
            .collect();
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        safetensors::serialize_to_file(views, Some(meta), &dir.join(file)).unwrap();
    }
    if spec.sharded {
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
        fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    fs::write(
        dir.join("config.json"),
        r#"{"model_type": "qwen2", "hidden_size": 8}"#,
    )
    .unwrap();
    fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    fs::write(dir.join("generation_config.json"), "{}").unwrap();
    for state in [
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "training_args.bin",
    ] {
        fs::write(dir.join(state), "training state").unwrap();
    }
}

fn spec(dtype: Dtype, sharded: bool) -> Spec {
    Spec {
        dtype,
        sharded,
        edits: BTreeMap::new(),
        reshape: BTreeMap::new(),
        drop: None,
        id_shift: 0,
    }
}

/// A Trainer output folder with checkpoints at steps 30, 10 and 200 (written out of order).
fn trainer_folder(root: &Path, spec: &Spec) -> PathBuf {
    let out = root.join("trainer-output");
    for (k, step) in [(2, 200), (0, 10), (1, 30)] {
        write_checkpoint(&out.join(format!("checkpoint-{step}")), k, spec);
    }
    fs::create_dir_all(out.join("runs")).unwrap();
    out
}

fn read_all(dir: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let mut all = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes = fs::read(&path).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                all.insert(
                    name,
                    (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
                );
            }
        }
    }
    all
}

#[test]
fn a_trainer_folder_fuses_shard_by_shard_in_step_order() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(Dtype::BF16, true);
    let dirs = merge::resolve(&[trainer_folder(tmp.path(), &spec)]).unwrap();
    let names: Vec<_> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["checkpoint-10", "checkpoint-30", "checkpoint-200"]);
    let set = CheckpointSet::open(&dirs).unwrap();
    let weights = [0.5, 0.3, 0.2];
    let out = tmp.path().join("fused");
    let summary = merge::merge(&set, &weights, &out, &MergeOptions::default()).unwrap();
    assert_eq!((summary.fused, summary.copied), (14, 1));
    assert_eq!(
        summary.side_files,
        ["config.json", "generation_config.json", "tokenizer.json"]
    );
    for absent in [
        "optimizer.pt",
        "trainer_state.json",
        "rng_state.pth",
        "runs",
    ] {
        assert!(!out.join(absent).exists(), "{absent} copied");
    }
    let fused = read_all(&out);
    for (name, shape, _) in qwen2_tensors() {
        let (dtype, got_shape, data) = &fused[name];
        assert_eq!((*dtype, got_shape), (Dtype::BF16, &shape));
        let got = decode(data, Dtype::BF16);
        for (i, g) in got.iter().enumerate() {
            // The checkpoints hold bf16(value); the sum is in f32, then rounded to bf16 once.
            let want: f32 = (0..3)
                .map(|k| weights[k] as f32 * bf16::from_f32(value(name, k, i)).to_f32())
                .sum();
            assert_eq!(*g, bf16::from_f32(want).to_f32(), "{name}[{i}]");
        }
    }
    assert_eq!(fused["model.position_ids"].0, Dtype::I64);
    let index: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let total: u64 = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    .iter()
    .map(|f| fs::metadata(out.join(f)).unwrap().len())
    .sum();
    assert_eq!(index["metadata"]["total_size"], total);
    assert_eq!(
        index["weight_map"]["model.norm.weight"],
        "model-00002-of-00002.safetensors"
    );
}

#[test]
fn the_output_dtype_can_differ_from_the_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(Dtype::F16, false);
    let dirs: Vec<PathBuf> = (0..2)
        .map(|k| {
            let dir = tmp.path().join(format!("m{k}"));
            write_checkpoint(&dir, k, &spec);
            dir
        })
        .collect();
    let set = CheckpointSet::open(&dirs).unwrap();
    let out = tmp.path().join("fused");
    let options = MergeOptions {
        dtype: OutDtype::F32,
    };
    merge::merge(&set, &[1.5, -0.5], &out, &options).unwrap();
    let fused = read_all(&out);
    let (dtype, _, data) = &fused["model.norm.weight"];
    assert_eq!(*dtype, Dtype::F32);
    let want: Vec<f32> = (0..8)
        .map(|i| {
            1.5 * f16::from_f32(value("model.norm.weight", 0, i)).to_f32()
                - 0.5 * f16::from_f32(value("model.norm.weight", 1, i)).to_f32()
        })
        .collect();
    assert_eq!(decode(data, Dtype::F32), want);
}

fn two_checkpoints(tmp: &Path, second: Spec) -> Vec<PathBuf> {
    let first = tmp.join("a");
    write_checkpoint(&first, 0, &spec(Dtype::F32, false));
    let other = tmp.join("b");
    let _ = fs::remove_dir_all(&other);
    write_checkpoint(&other, 1, &second);
    vec![first, other]
}

#[test]
fn mismatched_checkpoints_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = two_checkpoints(tmp.path(), spec(Dtype::BF16, false));
    let err = CheckpointSet::open(&dirs).unwrap_err();
    assert!(matches!(err, MergeError::Mismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("model.embed_tokens.weight"),
        "{err}"
    );

    let mut reshaped = spec(Dtype::F32, false);
    reshaped
        .reshape
        .insert("model.layers.1.mlp.down_proj.weight", vec![16, 8]);
    let mut missing = spec(Dtype::F32, false);
    missing.drop = Some("model.layers.0.self_attn.q_proj.bias");
    let mismatch: fn(&MergeError) -> bool = |e| matches!(e, MergeError::Mismatch { .. });
    let absent: fn(&MergeError) -> bool = |e| matches!(e, MergeError::MissingTensor { .. });
    for (second, tensor, expected) in [
        (reshaped, "model.layers.1.mlp.down_proj.weight", mismatch),
        (missing, "model.layers.0.self_attn.q_proj.bias", absent),
    ] {
        let err = CheckpointSet::open(&two_checkpoints(tmp.path(), second)).unwrap_err();
        assert!(expected(&err), "{err}");
        assert!(err.to_string().contains(tensor), "{err}");
    }

    // The same tensors, one copy sharded and one not, agree.
    let dirs = two_checkpoints(tmp.path(), spec(Dtype::F32, true));
    assert_eq!(CheckpointSet::open(&dirs).unwrap().len(), 2);
}

#[test]
fn a_truncated_file_pickles_and_empty_folders_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = two_checkpoints(tmp.path(), spec(Dtype::F32, false));
    let file = dirs[1].join("model.safetensors");
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let err = CheckpointSet::open(&dirs).unwrap_err();
    assert!(matches!(err, MergeError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let p = tmp.path().join("pickled");
    fs::create_dir_all(&p).unwrap();
    fs::write(p.join("pytorch_model.bin"), "pickle").unwrap();
    let err = CheckpointSet::open(&[p]).unwrap_err();
    assert!(matches!(err, MergeError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("pytorch_model.bin"), "{err}");

    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let err = merge::resolve(&[empty]).unwrap_err();
    assert!(matches!(err, MergeError::NoWeights { .. }), "{err}");
}

#[test]
fn nan_inputs_and_overflow_fail_and_leave_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nan = spec(Dtype::F32, false);
    nan.edits.insert("model.norm.weight", vec![f32::NAN; 8]);
    let dirs = two_checkpoints(tmp.path(), nan);
    let set = CheckpointSet::open(&dirs).unwrap();
    let out = tmp.path().join("fused");
    let err = merge::merge(&set, &[0.5, 0.5], &out, &MergeOptions::default()).unwrap_err();
    assert!(matches!(err, MergeError::NonFinite { .. }), "{err}");
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        2,
        "staging left behind"
    );

    let mut big = spec(Dtype::F32, false);
    big.edits.insert("model.norm.weight", vec![60000.0; 8]);
    let dirs = two_checkpoints(tmp.path(), big);
    let set = CheckpointSet::open(&dirs).unwrap();
    let options = MergeOptions {
        dtype: OutDtype::F16,
    };
    let err = merge::merge(&set, &[0.0, 2.0], &out, &options).unwrap_err();
    assert!(matches!(err, MergeError::Overflow { .. }), "{err}");
    let err = merge::merge(&set, &[1.0], &out, &options).unwrap_err();
    assert!(matches!(err, MergeError::Weights(_)), "{err}");
}

#[test]
fn integer_buffers_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let mut shifted = spec(Dtype::F32, false);
    shifted.id_shift = 1;
    let set = CheckpointSet::open(&two_checkpoints(tmp.path(), shifted)).unwrap();
    let out = tmp.path().join("f");
    let err = merge::merge(&set, &[0.5, 0.5], &out, &MergeOptions::default()).unwrap_err();
    assert!(matches!(err, MergeError::NonFloatDiffers { .. }), "{err}");
    assert!(err.to_string().contains("model.position_ids"), "{err}");
}

/// A fixture of `fixtures/gen_qwen2_trainer.py`: checkpoints written by transformers (or
/// `torch.save`), the expected fusion computed by torch.
fn qwen2_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn transformers_checkpoints_fuse_bit_for_bit_as_torch() {
    fuse_like_torch("qwen2_trainer", &["config.json", "generation_config.json"]);
}

#[test]
fn sharded_pickles_fuse_bit_for_bit_as_torch_into_safetensors() {
    let files = fuse_like_torch("qwen2_bin", &["config.json"]);
    assert_eq!(
        files,
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
}

/// Fuses fixture `name` with its `weights.json`, checks the side files copied and every tensor
/// against torch's `expected_fused.safetensors`; returns the weight files written.
fn fuse_like_torch(name: &str, side_files: &[&str]) -> Vec<String> {
    let root = qwen2_fixture(name);
    let weights: Vec<f64> =
        serde_json::from_str(&fs::read_to_string(root.join("weights.json")).unwrap()).unwrap();
    let set = CheckpointSet::open(&merge::resolve(std::slice::from_ref(&root)).unwrap()).unwrap();
    assert_eq!(set.len(), weights.len());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fused");
    let summary = merge::merge(&set, &weights, &out, &MergeOptions::default()).unwrap();
    assert_eq!(
        summary.side_files, side_files,
        "training state must not be copied"
    );
    let fused = read_all(&out);
    let bytes = fs::read(root.join("expected_fused.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(fused.len(), expected.len());
    for (name, view) in expected.tensors() {
        let (dtype, shape, data) = &fused[&name];
        assert_eq!(
            (*dtype, shape.as_slice()),
            (view.dtype(), view.shape()),
            "{name}"
        );
        assert!(
            data == view.data(),
            "{name}: bytes differ from torch's fusion"
        );
    }
    // The output keeps the input's sharding and index.
    let index = fs::read_to_string(out.join("model.safetensors.index.json")).unwrap();
    for shard in &summary.files[..summary.files.len() - 1] {
        assert!(
            index.contains(shard.as_str()),
            "{shard} missing from the index"
        );
    }
    summary.files
}
