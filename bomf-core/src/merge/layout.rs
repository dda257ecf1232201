//! The safetensors files of one checkpoint folder: which files hold which tensors, and each
//! file's header (read without reading the data).
//!
//! A safetensors file is `u64 n` (little endian), `n` bytes of JSON header (for every tensor its
//! dtype, shape and `[begin, end)` byte range within the data that follows, plus an optional
//! `__metadata__` map of strings), then the data. A sharded model adds
//! `model.safetensors.index.json`, whose `weight_map` names the shard of every tensor.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use serde::Deserialize;

use super::{MergeError, Result};

/// The single-file weights of a model folder.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded model folder.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The weights of a peft adapter folder.
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// The index of a sharded folder of PyTorch (pickle) weights.
pub const PICKLE_INDEX_FILE: &str = "pytorch_model.bin.index.json";
/// PyTorch (pickle) weights of a model and of a peft adapter, read with burn-store's reader
/// (a Rust unpickler that rebuilds tensors and runs no code), one tensor at a time.
const PICKLE_FILES: [&str; 2] = ["pytorch_model.bin", "adapter_model.bin"];

/// The largest header bomf reads (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of a checkpoint: where it lives and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// Index into [`Layout::files`].
    pub file: usize,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range within the file (header included).
    pub begin: u64,
    pub end: u64,
}

/// One safetensors file of a checkpoint.
#[derive(Debug, Clone)]
pub struct WeightFile {
    /// The file name inside the checkpoint folder (the output uses the same name).
    pub name: String,
    pub path: PathBuf,
    /// The header's `__metadata__` map (`{"format": "pt"}` from transformers).
    pub metadata: Option<HashMap<String, String>>,
    /// A pickle (`.bin`) file rather than safetensors.
    pub pickle: bool,
    /// The name of the output file that holds these tensors: the same name for safetensors,
    /// the safetensors name transformers would use for a `.bin` file.
    pub output_name: String,
    /// The file's tensors in the order of their data.
    pub order: Vec<String>,
}

/// The weight files of one checkpoint folder and the tensors in them.
#[derive(Debug, Clone)]
pub struct Layout {
    pub files: Vec<WeightFile>,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// The index file's `metadata` (other than `total_size`), written back for a sharded output.
    pub index_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Whether the weights were sharded behind an index (the output is too).
    pub sharded: bool,
}

#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: BTreeMap<String, String>,
}

/// Whether `dir` holds weights bomf can stream (or pickled ones it names in an error).
pub fn has_weights(dir: &Path) -> bool {
    [SINGLE_FILE, INDEX_FILE, ADAPTER_FILE, PICKLE_INDEX_FILE]
        .iter()
        .chain(PICKLE_FILES.iter())
        .any(|name| dir.join(name).is_file())
}

impl Layout {
    /// Reads the headers of the weights in `dir`: safetensors first (the index's shards, else
    /// `model.safetensors`, else `adapter_model.safetensors`), then pickles in the same order.
    pub fn read(dir: &Path) -> Result<Self> {
        for (index, pickle) in [(INDEX_FILE, false), (PICKLE_INDEX_FILE, true)] {
            let index_path = dir.join(index);
            if index_path.is_file() {
                return Self::read_sharded(dir, &index_path, pickle);
            }
            let singles: &[&str] = if pickle {
                &PICKLE_FILES
            } else {
                &[SINGLE_FILE, ADAPTER_FILE]
            };
            if let Some(name) = singles.iter().find(|n| dir.join(n).is_file()) {
                let mut layout = Self::empty(None, false);
                layout.add_file(dir, name, None, pickle)?;
                return Ok(layout);
            }
        }
        Err(MergeError::NoWeights {
            dir: dir.to_path_buf(),
        })
    }

    fn empty(
        index_metadata: Option<serde_json::Map<String, serde_json::Value>>,
        sharded: bool,
    ) -> Self {
        Self {
            files: Vec::new(),
            tensors: BTreeMap::new(),
            index_metadata,
            sharded,
        }
    }

    fn read_sharded(dir: &Path, index_path: &Path, pickle: bool) -> Result<Self> {
        let text =
            std::fs::read_to_string(index_path).map_err(|e| MergeError::io(index_path, e))?;
        let index: IndexFile = serde_json::from_str(&text).map_err(|e| MergeError::BadHeader {
            path: index_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut metadata = index.metadata;
        if let Some(map) = metadata.as_mut() {
            map.remove("total_size");
        }
        let mut layout = Self::empty(metadata, true);
        let shards: std::collections::BTreeSet<&String> = index.weight_map.values().collect();
        for shard in shards {
            if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                return Err(MergeError::BadHeader {
                    path: index_path.to_path_buf(),
                    reason: format!("shard name {shard:?} is not a file name in the folder"),
                });
            }
            layout.add_file(dir, shard, Some(&index.weight_map), pickle)?;
        }
        for (name, shard) in &index.weight_map {
            if !layout.tensors.contains_key(name) {
                return Err(MergeError::MissingTensor {
                    tensor: name.clone(),
                    path: dir.join(shard),
                });
            }
        }
        Ok(layout)
    }

    /// Adds one file's tensors; with an index, every tensor of the file must be mapped to it.
    fn add_file(
        &mut self,
        dir: &Path,
        name: &str,
        weight_map: Option<&BTreeMap<String, String>>,
        pickle: bool,
    ) -> Result<()> {
        let path = dir.join(name);
        let (tensors, metadata) = if pickle {
            (pickle_tensors(&path)?, None)
        } else {
            safetensors_tensors(&path)?
        };
        let index = self.files.len();
        let mut order = Vec::with_capacity(tensors.len());
        for (key, mut entry) in tensors {
            if let Some(map) = weight_map
                && map.get(&key).map(String::as_str) != Some(name)
            {
                return Err(MergeError::BadHeader {
                    path: path.clone(),
                    reason: format!(
                        "holds tensor {key}, which the index does not map to this file"
                    ),
                });
            }
            entry.file = index;
            if self.tensors.insert(key.clone(), entry).is_some() {
                return Err(MergeError::BadHeader {
                    path: path.clone(),
                    reason: format!("tensor {key} is stored twice"),
                });
            }
            order.push(key);
        }
        self.files.push(WeightFile {
            name: name.to_owned(),
            path,
            metadata,
            pickle,
            output_name: output_name(name),
            order,
        });
        Ok(())
    }
}

/// The safetensors file name transformers gives the weights of `name` (`pytorch_model.bin` →
/// `model.safetensors`, `pytorch_model-00001-of-00002.bin` → `model-00001-of-00002.safetensors`,
/// `adapter_model.bin` → `adapter_model.safetensors`).
fn output_name(name: &str) -> String {
    match name.strip_suffix(".bin") {
        Some(stem) => {
            let stem = stem.strip_prefix("pytorch_").unwrap_or(stem);
            format!("{stem}.safetensors")
        }
        None => name.to_owned(),
    }
}

type Entries = Vec<(String, TensorEntry)>;

/// A safetensors file's tensors in data order, and its `__metadata__`.
fn safetensors_tensors(path: &Path) -> Result<(Entries, Option<HashMap<String, String>>)> {
    let (metadata, header_end) = read_header(path)?;
    let mut tensors = Vec::new();
    for key in metadata.offset_keys() {
        let info: &TensorInfo = metadata.info(&key).ok_or_else(|| MergeError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("tensor {key} is listed without its entry"),
        })?;
        let entry = TensorEntry {
            file: 0,
            dtype: info.dtype,
            shape: info.shape.clone(),
            begin: header_end + info.data_offsets.0 as u64,
            end: header_end + info.data_offsets.1 as u64,
        };
        tensors.push((key, entry));
    }
    Ok((tensors, metadata.metadata().clone()))
}

/// A pickle file's tensors by name (their data stays in the file until read).
fn pickle_tensors(path: &Path) -> Result<Entries> {
    let reader = open_pickle(path)?;
    let mut tensors: Entries = Vec::new();
    for (name, snapshot) in reader.tensors() {
        let dtype = pickle_dtype(name, snapshot.dtype)?;
        let shape = snapshot.shape.to_vec();
        let bytes = (shape.iter().product::<usize>() * dtype.bitsize() / 8) as u64;
        let entry = TensorEntry {
            file: 0,
            dtype,
            shape,
            begin: 0,
            end: bytes,
        };
        tensors.push((name.clone(), entry));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// burn-store's reader over a pickle file.
pub fn open_pickle(path: &Path) -> Result<PytorchReader> {
    PytorchReader::new(path).map_err(|e| MergeError::BadHeader {
        path: path.to_path_buf(),
        reason: format!("not a PyTorch checkpoint bomf can read: {e}"),
    })
}

/// The safetensors dtype of a pickled tensor's dtype.
fn pickle_dtype(name: &str, dtype: DType) -> Result<Dtype> {
    Ok(match dtype {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        other => {
            return Err(MergeError::UnsupportedDtype {
                tensor: name.to_owned(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// Reads tensor `name` of a pickle file into `buf` as little-endian bytes of `entry.dtype`.
pub fn read_pickled(
    reader: &PytorchReader,
    path: &Path,
    name: &str,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let bad = |reason: String| MergeError::BadHeader {
        path: path.to_path_buf(),
        reason: format!("tensor {name}: {reason}"),
    };
    let snapshot = reader
        .get(name)
        .ok_or_else(|| bad("listed but not found".into()))?;
    let data = snapshot.to_data().map_err(|e| bad(format!("{e:?}")))?;
    buf.clear();
    buf.extend_from_slice(data.as_bytes());
    Ok(())
}

/// Reads and validates the header of a safetensors file: its metadata and where the data starts.
/// A file shorter than its header says (a truncated download or copy) is an error here.
pub fn read_header(path: &Path) -> Result<(Metadata, u64)> {
    let mut file = File::open(path).map_err(|e| MergeError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MergeError::io(path, e))?.len();
    let bad = |reason: String| MergeError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| {
        bad(format!(
            "{file_len} bytes is too short for a safetensors file"
        ))
    })?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER || n + 8 > file_len {
        return Err(bad(format!(
            "header length {n} does not fit the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header)
        .map_err(|e| MergeError::io(path, e))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let expected = 8 + n + metadata.data_len() as u64;
    if expected != file_len {
        return Err(MergeError::Truncated {
            path: path.to_path_buf(),
            expected,
            actual: file_len,
        });
    }
    Ok((metadata, 8 + n))
}

/// Reads `entry`'s bytes from its file into `buf` (resized to fit).
pub fn read_tensor(
    file: &mut File,
    path: &Path,
    entry: &TensorEntry,
    buf: &mut Vec<u8>,
) -> Result<()> {
    buf.resize((entry.end - entry.begin) as usize, 0);
    file.seek(SeekFrom::Start(entry.begin))
        .and_then(|_| file.read_exact(buf))
        .map_err(|e| MergeError::io(path, e))
}
