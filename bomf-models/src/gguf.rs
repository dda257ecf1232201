//! llama.cpp's GGUF files: parsing, dequantisation to f32, HF names, LLaMA config and the embedded
//! tokenizer, so a quantised LLaMA-family model (SmolLM2 in the assets) loads like an HF folder.
//!
//! Layout of a GGUF file (v2/v3, little-endian): magic `GGUF`, version, tensor count, metadata
//! count; metadata key/value pairs (typed, arrays included); tensor infos (name, dims with the
//! fastest-varying first, ggml type, offset); then the tensor data, starting at the next multiple
//! of `general.alignment` (default 32).
//!
//! Two llama.cpp conventions are undone here, as `transformers`' GGUF loader does:
//! - names: `token_embd`, `blk.N.attn_q`, ... become `model.embed_tokens`, `model.layers.N.
//!   self_attn.q_proj`, ...;
//! - llama.cpp's converter permutes the rows of `attn_q`/`attn_k` within each head so its RoPE can
//!   rotate adjacent pairs; HF rotates the two halves of a head, so the rows are permuted back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};
use crate::llama::{LlamaConfig, LlamaForCausalLM, load_llama_checkpoint};
use crate::params::HfTensor;
use crate::weights::Checkpoint;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Any integer type as `i64` (GGUF writers differ in the integer width they use).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            GgufValue::U8(v) => v as i64,
            GgufValue::I8(v) => v as i64,
            GgufValue::U16(v) => v as i64,
            GgufValue::I16(v) => v as i64,
            GgufValue::U32(v) => v as i64,
            GgufValue::I32(v) => v as i64,
            GgufValue::U64(v) => i64::try_from(v).ok()?,
            GgufValue::I64(v) => v,
            _ => return None,
        })
    }

    /// Any numeric type as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The ggml storage types we can dequantise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    fn from_id(id: u32) -> std::result::Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            other => {
                let name = match other {
                    6 => "Q5_0",
                    7 => "Q5_1",
                    9 => "Q8_1",
                    10 => "Q2_K",
                    11 => "Q3_K",
                    12 => "Q4_K",
                    13 => "Q5_K",
                    14 => "Q6_K",
                    15 => "Q8_K",
                    _ => "unknown",
                };
                return Err(format!(
                    "ggml type {other} ({name}) is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
                ));
            }
        })
    }

    /// (values per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
        }
    }
}

/// One tensor's description. `dims` are in GGUF order (fastest-varying first), the reverse of
/// PyTorch's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The PyTorch/HF shape.
    pub fn hf_shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    fn num_values(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file, kept in memory.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    data_start: usize,
    bytes: Vec<u8>,
}

/// A little-endian cursor whose errors say what was being read and where.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!(
                "truncated file: needed {n} bytes for {what} at offset {}, file has {}",
                self.pos,
                self.bytes.len()
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: length {len} too large"))?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what}: not valid UTF-8"))
    }

    fn value(
        &mut self,
        type_id: u32,
        what: &str,
        depth: usize,
    ) -> std::result::Result<GgufValue, String> {
        Ok(match type_id {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(format!("{what}: invalid bool byte {b}")),
            },
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth > 4 {
                    return Err(format!("{what}: arrays nested too deeply"));
                }
                let item_type = self.u32(what)?;
                let count = self.u64(what)?;
                // Every item takes at least one byte: a count beyond the file is corrupt.
                if count > (self.bytes.len() - self.pos) as u64 {
                    return Err(format!(
                        "truncated file: {what} claims {count} items at offset {}",
                        self.pos
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_type, what, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(format!("{what}: unknown metadata value type {other}")),
        })
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file (tensor data is checked to lie within the file).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes; `path` only names the file in errors.
    pub fn parse(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |message: String| ModelError::WeightsFile {
            path: path.clone(),
            message,
        };
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        let magic = r.array::<4>("the magic number").map_err(err)?;
        if &magic != MAGIC {
            return Err(err(format!(
                "not a GGUF file (magic {magic:?}, expected \"GGUF\")"
            )));
        }
        let version = r.u32("the version").map_err(err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!(
                "GGUF version {version} is not supported (supported: 2, 3)"
            )));
        }
        let tensor_count = r.u64("the tensor count").map_err(err)?;
        let kv_count = r.u64("the metadata count").map_err(err)?;
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&format!("metadata key #{i}")).map_err(err)?;
            let type_id = r.u32(&format!("the type of `{key}`")).map_err(err)?;
            let value = r
                .value(type_id, &format!("metadata `{key}`"), 0)
                .map_err(err)?;
            metadata.insert(key, value);
        }
        if tensor_count > bytes.len() as u64 {
            return Err(err(format!("implausible tensor count {tensor_count}")));
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = r.string(&format!("tensor name #{i}")).map_err(err)?;
            let n_dims = r.u32(&format!("the rank of `{name}`")).map_err(err)?;
            if n_dims > 4 {
                return Err(err(format!("tensor `{name}`: rank {n_dims} > 4")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64(&format!("the dims of `{name}`")))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)?;
            let type_id = r.u32(&format!("the type of `{name}`")).map_err(err)?;
            let ggml_type =
                GgmlType::from_id(type_id).map_err(|m| err(format!("tensor `{name}`: {m}")))?;
            let offset = r.u64(&format!("the offset of `{name}`")).map_err(err)?;
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v
                .as_i64()
                .filter(|&a| a > 0)
                .map(|a| a as u64)
                .ok_or_else(|| err(format!("invalid general.alignment {v:?}")))?,
        };
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        for t in &tensors {
            let (per_block, block_bytes) = t.ggml_type.block();
            let n = t.num_values();
            if n % per_block as u64 != 0 {
                return Err(err(format!(
                    "tensor `{}`: {n} values is not a whole number of {:?} blocks",
                    t.name, t.ggml_type
                )));
            }
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(n / per_block as u64 * block_bytes as u64));
            if end.is_none_or(|e| e > bytes.len() as u64) {
                return Err(err(format!(
                    "truncated file: data of tensor `{}` runs past the end ({} bytes)",
                    t.name,
                    bytes.len()
                )));
            }
        }
        Ok(Self {
            path,
            version,
            metadata,
            tensors,
            data_start: data_start as usize,
            bytes,
        })
    }

    fn err(&self, message: String) -> ModelError {
        ModelError::WeightsFile {
            path: self.path.clone(),
            message,
        }
    }

    /// The tensor info by GGUF name.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's values as f32 in HF layout (row-major over [`GgufTensorInfo::hf_shape`]).
    pub fn dequantize(&self, info: &GgufTensorInfo) -> Result<Vec<f32>> {
        let (per_block, block_bytes) = info.ggml_type.block();
        let n = info.num_values() as usize;
        let start = self.data_start + info.offset as usize;
        let raw = &self.bytes[start..start + n / per_block * block_bytes];
        Ok(dequantize(info.ggml_type, raw))
    }

    fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The string metadata `key`; `None` when absent or not a string.
    fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(GgufValue::as_str)
    }

    fn meta_usize(&self, key: &str) -> Result<usize> {
        self.meta(key)
            .and_then(GgufValue::as_i64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                self.err(format!(
                    "metadata `{key}` missing or not a non-negative integer"
                ))
            })
    }

    /// The LLaMA config the file describes (`llama.*` keys; the architecture must be `llama`).
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let arch = self.meta_str("general.architecture").unwrap_or("");
        if arch != "llama" {
            return Err(self.err(format!(
                "general.architecture is `{arch}`; only `llama` is supported"
            )));
        }
        let heads = self.meta_usize("llama.attention.head_count")?;
        let hidden = self.meta_usize("llama.embedding_length")?;
        let vocab = match self.meta_usize("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => self
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).map(|&d| d as usize))
                .ok_or_else(|| self.err("no vocabulary size".into()))?,
        };
        let mut raw = Map::new();
        raw.insert("model_type".into(), json!("llama"));
        raw.insert("architectures".into(), json!(["LlamaForCausalLM"]));
        raw.insert("vocab_size".into(), json!(vocab));
        raw.insert("hidden_size".into(), json!(hidden));
        raw.insert(
            "intermediate_size".into(),
            json!(self.meta_usize("llama.feed_forward_length")?),
        );
        raw.insert(
            "num_hidden_layers".into(),
            json!(self.meta_usize("llama.block_count")?),
        );
        raw.insert("num_attention_heads".into(), json!(heads));
        raw.insert(
            "num_key_value_heads".into(),
            json!(
                self.meta_usize("llama.attention.head_count_kv")
                    .unwrap_or(heads)
            ),
        );
        if let Ok(dim) = self.meta_usize("llama.rope.dimension_count")
            && dim != hidden / heads.max(1)
        {
            raw.insert("head_dim".into(), json!(dim));
        }
        let f = |key: &str| self.meta(key).and_then(GgufValue::as_f64);
        raw.insert(
            "rms_norm_eps".into(),
            json!(f("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-6)),
        );
        let theta = f("llama.rope.freq_base").unwrap_or(10_000.0);
        let scaling = self.meta_str("llama.rope.scaling.type");
        let rope = match scaling {
            None | Some("none") => json!({"rope_type": "default", "rope_theta": theta}),
            Some("linear") => json!({
                "rope_type": "linear",
                "rope_theta": theta,
                "factor": f("llama.rope.scaling.factor").unwrap_or(1.0),
            }),
            Some(other) => {
                return Err(self.err(format!(
                    "llama.rope.scaling.type `{other}` is not supported (none, linear)"
                )));
            }
        };
        raw.insert("rope_parameters".into(), rope);
        raw.insert(
            "max_position_embeddings".into(),
            json!(self.meta_usize("llama.context_length").unwrap_or(2048)),
        );
        raw.insert(
            "tie_word_embeddings".into(),
            json!(self.tensor("output.weight").is_none()),
        );
        raw.insert("hidden_act".into(), json!("silu"));
        for (hf, key) in [
            ("bos_token_id", "tokenizer.ggml.bos_token_id"),
            ("eos_token_id", "tokenizer.ggml.eos_token_id"),
            ("pad_token_id", "tokenizer.ggml.padding_token_id"),
        ] {
            if let Some(id) = self.meta(key).and_then(GgufValue::as_i64) {
                raw.insert(hf.into(), json!(id));
            }
        }
        let config: LlamaConfig =
            serde_json::from_value(Value::Object(raw)).map_err(|source| ModelError::Json {
                path: self.path.clone(),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Every tensor dequantised, under its HF name and in HF layout, with Q/K rows un-permuted.
    pub fn hf_checkpoint(&self, config: &LlamaConfig) -> Result<Checkpoint> {
        let mut tensors = BTreeMap::new();
        for info in &self.tensors {
            let name = hf_name(&info.name).ok_or_else(|| {
                self.err(format!("tensor `{}` has no LLaMA counterpart", info.name))
            })?;
            let shape = info.hf_shape();
            let mut data = self.dequantize(info)?;
            if info.name.ends_with(".attn_q.weight") {
                data = unpermute_rope_rows(&data, &shape, config.num_attention_heads);
            } else if info.name.ends_with(".attn_k.weight") {
                data = unpermute_rope_rows(&data, &shape, config.num_key_value_heads());
            }
            tensors.insert(name, HfTensor::new(shape, data)?);
        }
        Ok(Checkpoint { tensors })
    }

    /// The embedded tokenizer as a Hugging Face `tokenizer.json` (GPT-2 style byte-level BPE,
    /// `tokenizer.ggml.model == "gpt2"`). Tokens marked control (type 3) become special added
    /// tokens and user-defined ones (type 4) plain added tokens, as `transformers` does.
    pub fn tokenizer_json(&self) -> Result<Value> {
        let model = self.meta_str("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(self.err(format!(
                "tokenizer.ggml.model `{model}`: only GPT-2 style BPE (`gpt2`) can be exported"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            self.meta(key)
                .and_then(GgufValue::as_array)
                .ok_or_else(|| self.err(format!("metadata `{key}` missing or not an array")))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.err(format!("`{key}` holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = self
            .meta("tokenizer.ggml.token_type")
            .and_then(GgufValue::as_array)
            .map(|a| a.iter().map(|v| v.as_i64().unwrap_or(1)).collect())
            .unwrap_or_default();
        let mut vocab = Map::new();
        for (id, token) in tokens.iter().enumerate() {
            vocab.insert(token.clone(), json!(id));
        }
        let added: Vec<Value> = tokens
            .iter()
            .enumerate()
            .filter_map(|(id, token)| {
                let kind = types.get(id).copied()?;
                (kind == 3 || kind == 4).then(|| {
                    json!({
                        "id": id, "content": token, "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": kind == 4, "special": kind == 3,
                    })
                })
            })
            .collect();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// Writes [`Self::tokenizer_json`] to `path`.
    pub fn write_tokenizer_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = serde_json::to_string(&self.tokenizer_json()?)
            .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
    }
}

/// llama.cpp tensor name → HF name.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (module, suffix) = rest.split_once('.')?;
    let hf = match module {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undoes llama.cpp's RoPE row permutation of a `[heads * head_dim, ...]` matrix: within a head,
/// GGUF row `2j + t` is HF row `t * head_dim / 2 + j`.
fn unpermute_rope_rows(data: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    let head_dim = rows / heads.max(1);
    let half = head_dim / 2;
    let mut out = vec![0.0; data.len()];
    for h in 0..heads {
        for j in 0..half {
            for t in 0..2 {
                let src = h * head_dim + 2 * j + t;
                let dst = h * head_dim + t * half + j;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantises raw ggml blocks (length already checked) to f32.
pub fn dequantize(ty: GgmlType, raw: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => raw.chunks_exact(2).map(f16).collect(),
        GgmlType::BF16 => raw
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        // d: f16 scale, then 32 signed bytes.
        GgmlType::Q8_0 => raw
            .chunks_exact(34)
            .flat_map(|b| {
                let d = f16(&b[0..2]);
                b[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        // d: f16 scale, then 16 bytes: low nibbles are values 0..16, high nibbles 16..32, offset 8.
        GgmlType::Q4_0 => raw
            .chunks_exact(18)
            .flat_map(|b| {
                let d = f16(&b[0..2]);
                let qs = &b[2..18];
                let low = qs.iter().map(move |&q| ((q & 0x0F) as f32 - 8.0) * d);
                let high = qs.iter().map(move |&q| ((q >> 4) as f32 - 8.0) * d);
                low.chain(high)
            })
            .collect(),
        // d, m: f16 scale and minimum, then nibbles as in Q4_0 without offset: x = q·d + m.
        GgmlType::Q4_1 => raw
            .chunks_exact(20)
            .flat_map(|b| {
                let d = f16(&b[0..2]);
                let m = f16(&b[2..4]);
                let qs = &b[4..20];
                let low = qs.iter().map(move |&q| (q & 0x0F) as f32 * d + m);
                let high = qs.iter().map(move |&q| (q >> 4) as f32 * d + m);
                low.chain(high)
            })
            .collect(),
    }
}

/// Loads a LLaMA-architecture GGUF file (dequantised to f32) with its config.
pub fn load_llama_gguf<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(LlamaForCausalLM<B>, LlamaConfig, GgufFile)> {
    let file = GgufFile::open(path)?;
    let config = file.llama_config()?;
    let checkpoint = file.hf_checkpoint(&config)?;
    let model = load_llama_checkpoint(&config, checkpoint, device)?;
    Ok((model, config, file))
}
