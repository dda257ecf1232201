//! The streamed weighted sum: one tensor at a time, read from every checkpoint, accumulated in
//! f32 and written to the output file in the first checkpoint's layout.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use half::{bf16, f16};
use rayon::prelude::*;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};

use burn_store::pytorch::PytorchReader;

use super::layout::{
    INDEX_FILE, Layout, PICKLE_INDEX_FILE, open_pickle, read_pickled, read_tensor,
};
use super::{CheckpointSet, MergeError, Result};
use crate::rundir::StagedDir;

/// Elements per parallel chunk of the accumulation.
const CHUNK: usize = 1 << 15;

/// The dtype of the fused floating-point tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutDtype {
    /// Each tensor's input dtype.
    #[default]
    Same,
    F32,
    F16,
    BF16,
}

impl OutDtype {
    fn resolve(self, input: Dtype) -> Dtype {
        match self {
            Self::Same => input,
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::BF16 => Dtype::BF16,
        }
    }
}

impl std::str::FromStr for OutDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "same" => Ok(Self::Same),
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(format!(
                "unknown dtype {other:?}; one of same, f32, f16, bf16"
            )),
        }
    }
}

/// How to write the fused model.
#[derive(Debug, Clone, Default)]
pub struct MergeOptions {
    pub dtype: OutDtype,
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    /// Floating-point tensors fused.
    pub fused: usize,
    /// Other tensors copied from the first checkpoint.
    pub copied: usize,
    /// Bytes of weight files written.
    pub bytes: u64,
    /// The weight files written (and the index, when sharded).
    pub files: Vec<String>,
    /// The other files copied from the first checkpoint's folder.
    pub side_files: Vec<String>,
}

/// Files of a training checkpoint that are not part of the model: optimiser and scheduler
/// state, RNG state, the Trainer's logs and arguments. Weights are written, not copied.
pub fn is_training_state(name: &str) -> bool {
    matches!(
        name,
        "optimizer.pt"
            | "optimizer.bin"
            | "scheduler.pt"
            | "scaler.pt"
            | "trainer_state.json"
            | "training_args.bin"
            | INDEX_FILE
            | PICKLE_INDEX_FILE
    ) || (name.starts_with("rng_state") && name.ends_with(".pth"))
        || name.ends_with(".safetensors")
        || name.ends_with(".bin")
        || name.starts_with('.')
}

/// Writes θ(w) = Σ_k w_k θ_k of `set` to the folder `out` (replaced whole, or left as it was on
/// error). `weights` has one finite entry per checkpoint; they need not sum to one.
pub fn merge(
    set: &CheckpointSet,
    weights: &[f64],
    out: &Path,
    options: &MergeOptions,
) -> Result<MergeSummary> {
    if weights.len() != set.len() {
        return Err(MergeError::Weights(format!(
            "{} weights for {} checkpoints",
            weights.len(),
            set.len()
        )));
    }
    if let Some(bad) = weights.iter().find(|w| !w.is_finite()) {
        return Err(MergeError::Weights(format!("weight {bad} is not finite")));
    }
    let staged = StagedDir::new(out)?;
    let reference = &set.checkpoints[0].layout;
    let mut readers = Readers::new(set);
    let mut summary = MergeSummary {
        fused: 0,
        copied: 0,
        bytes: 0,
        files: Vec::new(),
        side_files: Vec::new(),
    };
    let mut weight_map = BTreeMap::new();
    for file in &reference.files {
        let header = output_header(reference, &file.order, file.metadata.clone(), options)?;
        let path = staged.path().join(&file.output_name);
        let written = write_file(&path, &header, &file.order, |name, out| {
            readers.produce(name, weights, options, out)
        })?;
        for name in &file.order {
            weight_map.insert(name.clone(), file.output_name.clone());
        }
        summary.bytes += written;
        summary.files.push(file.output_name.clone());
    }
    summary.fused = readers.fused;
    summary.copied = readers.copied;
    if reference.sharded {
        write_index(staged.path(), reference, weight_map, summary.bytes)?;
        summary.files.push(INDEX_FILE.to_owned());
    }
    summary.side_files = copy_side_files(&set.checkpoints[0].dir, staged.path())?;
    staged.publish()?;
    Ok(summary)
}

/// The output header of one file: its tensors in order, with the output dtypes and offsets.
/// Written from the layout rather than with `safetensors::serialize`, which needs every tensor's
/// data in memory at once; the header only needs shapes, so the data can follow tensor by tensor.
fn output_header(
    layout: &Layout,
    order: &[String],
    metadata: Option<HashMap<String, String>>,
    options: &MergeOptions,
) -> Result<Vec<u8>> {
    let mut offset = 0usize;
    let mut tensors = Vec::with_capacity(order.len());
    for name in order {
        let entry = &layout.tensors[name];
        let dtype = if is_fused(entry.dtype) {
            options.dtype.resolve(entry.dtype)
        } else {
            entry.dtype
        };
        let numel: usize = entry.shape.iter().product();
        let size = numel * dtype.bitsize() / 8;
        tensors.push((
            name.clone(),
            TensorInfo {
                dtype,
                shape: entry.shape.clone(),
                data_offsets: (offset, offset + size),
            },
        ));
        offset += size;
    }
    let metadata = Metadata::new(metadata, tensors).map_err(|e| MergeError::BadHeader {
        path: layout.files[0].path.clone(),
        reason: e.to_string(),
    })?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| MergeError::BadHeader {
        path: layout.files[0].path.clone(),
        reason: e.to_string(),
    })?;
    // safetensors pads the header with spaces so that the data starts 8-byte aligned.
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok(header)
}

/// Writes `len(header)`, the header, then each tensor's bytes as `produce` makes them.
fn write_file(
    path: &Path,
    header: &[u8],
    order: &[String],
    mut produce: impl FnMut(&str, &mut Vec<u8>) -> Result<()>,
) -> Result<u64> {
    let file = File::create(path).map_err(|e| MergeError::io(path, e))?;
    let mut writer = BufWriter::with_capacity(1 << 23, file);
    let io = |e| MergeError::io(path, e);
    writer
        .write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    writer.write_all(header).map_err(io)?;
    let mut written = 8 + header.len() as u64;
    let mut bytes = Vec::new();
    for name in order {
        produce(name, &mut bytes)?;
        writer.write_all(&bytes).map_err(io)?;
        written += bytes.len() as u64;
    }
    writer.flush().map_err(io)?;
    Ok(written)
}

fn write_index(
    dir: &Path,
    layout: &Layout,
    weight_map: BTreeMap<String, String>,
    total_size: u64,
) -> Result<()> {
    let mut metadata = layout.index_metadata.clone().unwrap_or_default();
    metadata.insert("total_size".into(), total_size.into());
    let index = serde_json::json!({ "metadata": metadata, "weight_map": weight_map });
    let path = dir.join(INDEX_FILE);
    let text = serde_json::to_string_pretty(&index).map_err(|e| MergeError::BadHeader {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, text + "\n").map_err(|e| MergeError::io(&path, e))
}

/// Copies every regular file of `from` that is neither weights nor training state.
fn copy_side_files(from: &Path, to: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(from).map_err(|e| MergeError::io(from, e))? {
        let path = entry.map_err(|e| MergeError::io(from, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() && !is_training_state(name) {
            std::fs::copy(&path, to.join(name)).map_err(|e| MergeError::io(&path, e))?;
            copied.push(name.to_owned());
        }
    }
    copied.sort();
    Ok(copied)
}

fn is_fused(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

fn is_copied(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::I16
            | Dtype::U16
            | Dtype::I32
            | Dtype::U32
            | Dtype::I64
            | Dtype::U64
    )
}

/// An open weight file.
enum Source {
    Safetensors(File),
    Pickle(PytorchReader),
}

/// Open files of every checkpoint and the buffers one tensor needs.
struct Readers<'a> {
    set: &'a CheckpointSet,
    /// `files[k][f]`: checkpoint k's weight file f, opened on first use.
    files: Vec<Vec<Option<Source>>>,
    acc: Vec<f32>,
    buf: Vec<u8>,
    other: Vec<u8>,
    fused: usize,
    copied: usize,
}

impl<'a> Readers<'a> {
    fn new(set: &'a CheckpointSet) -> Self {
        let files = set
            .checkpoints
            .iter()
            .map(|c| c.layout.files.iter().map(|_| None).collect())
            .collect();
        Self {
            set,
            files,
            acc: Vec::new(),
            buf: Vec::new(),
            other: Vec::new(),
            fused: 0,
            copied: 0,
        }
    }

    /// Reads tensor `name` of checkpoint `k` into `buf` (or `other`).
    fn read(&mut self, k: usize, name: &str, into_other: bool) -> Result<()> {
        let set = self.set;
        let layout = &set.checkpoints[k].layout;
        let entry = &layout.tensors[name];
        let file = &layout.files[entry.file];
        let path = &file.path;
        let slot = &mut self.files[k][entry.file];
        if slot.is_none() {
            *slot = Some(if file.pickle {
                Source::Pickle(open_pickle(path)?)
            } else {
                Source::Safetensors(File::open(path).map_err(|e| MergeError::io(path, e))?)
            });
        }
        let buf = if into_other {
            &mut self.other
        } else {
            &mut self.buf
        };
        match slot.as_mut().expect("opened above") {
            Source::Safetensors(f) => read_tensor(f, path, entry, buf),
            Source::Pickle(reader) => read_pickled(reader, path, name, buf),
        }
    }

    /// The output bytes of tensor `name`: fused, or copied after checking it is the same in
    /// every checkpoint.
    fn produce(
        &mut self,
        name: &str,
        weights: &[f64],
        options: &MergeOptions,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let dtype = self.set.checkpoints[0].layout.tensors[name].dtype;
        if is_fused(dtype) {
            self.fuse(name, dtype, weights)?;
            let out_dtype = options.dtype.resolve(dtype);
            encode(&self.acc, out_dtype, out).map_err(|()| MergeError::Overflow {
                tensor: name.to_owned(),
                dtype: format!("{out_dtype:?}"),
            })?;
            self.fused += 1;
        } else if is_copied(dtype) {
            self.copy_equal(name, dtype)?;
            out.clear();
            out.extend_from_slice(&self.buf);
            self.copied += 1;
        } else {
            return Err(MergeError::UnsupportedDtype {
                tensor: name.to_owned(),
                dtype: format!("{dtype:?}"),
            });
        }
        Ok(())
    }

    fn fuse(&mut self, name: &str, dtype: Dtype, weights: &[f64]) -> Result<()> {
        for (k, &w) in weights.iter().enumerate() {
            self.read(k, name, false)?;
            if k == 0 {
                let numel = self.buf.len() * 8 / dtype.bitsize();
                self.acc.clear();
                self.acc.resize(numel, 0.0);
            }
            if !accumulate(&mut self.acc, &self.buf, dtype, w as f32) {
                let layout = &self.set.checkpoints[k].layout;
                return Err(MergeError::NonFinite {
                    tensor: name.to_owned(),
                    path: layout.files[layout.tensors[name].file].path.clone(),
                });
            }
        }
        Ok(())
    }

    fn copy_equal(&mut self, name: &str, dtype: Dtype) -> Result<()> {
        self.read(0, name, false)?;
        for k in 1..self.set.len() {
            self.read(k, name, true)?;
            if self.other != self.buf {
                return Err(MergeError::NonFloatDiffers {
                    tensor: name.to_owned(),
                    dtype: format!("{dtype:?}"),
                    first: self.set.checkpoints[0].dir.clone(),
                    other: self.set.checkpoints[k].dir.clone(),
                });
            }
        }
        Ok(())
    }
}

/// `acc += w · decode(bytes)`; false when an input value is not finite.
fn accumulate(acc: &mut [f32], bytes: &[u8], dtype: Dtype, w: f32) -> bool {
    let es = dtype.bitsize() / 8;
    acc.par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(CHUNK * es))
        .map(|(acc, bytes)| {
            let mut finite = true;
            for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(es)) {
                let x = decode(b, dtype);
                finite &= x.is_finite();
                *a += w * x;
            }
            finite
        })
        .reduce(|| true, |a, b| a && b)
}

#[inline]
fn decode(b: &[u8], dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
        Dtype::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
    }
}

/// Writes `acc` as `dtype` (round to nearest even); `Err` when a value overflows it.
fn encode(acc: &[f32], dtype: Dtype, out: &mut Vec<u8>) -> std::result::Result<(), ()> {
    out.clear();
    let mut finite = true;
    match dtype {
        Dtype::F16 => acc.iter().for_each(|&x| {
            let y = f16::from_f32(x);
            finite &= y.is_finite();
            out.extend_from_slice(&y.to_le_bytes());
        }),
        Dtype::BF16 => acc.iter().for_each(|&x| {
            let y = bf16::from_f32(x);
            finite &= y.is_finite();
            out.extend_from_slice(&y.to_le_bytes());
        }),
        _ => acc.iter().for_each(|&x| {
            finite &= x.is_finite();
            out.extend_from_slice(&x.to_le_bytes());
        }),
    }
    if finite { Ok(()) } else { Err(()) }
}
