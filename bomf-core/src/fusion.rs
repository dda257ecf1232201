//! Fusion: θ(w) = Σ_k w_k θ_k over every parameter of K checkpoints of one architecture.
//!
//! Checkpoints are held in memory as one flat f32 buffer each, in a shared [`Layout`] (HF names,
//! shapes and offsets, checked identical across checkpoints). Keeping each checkpoint contiguous
//! turns fusion into a single streaming kernel: the output is cut into chunks that fit in the
//! cache, rayon spreads the chunks over threads, and each chunk is written once
//! (`out = w_0·x_0`) then updated in cache for the other K−1 inputs. Memory traffic is the
//! minimum, K reads and one write per value, which is what the bench compares to `memcpy`.
//! Checkpoints past the memory budget are memory-mapped files ([`crate::spill`]); the kernel
//! reads them the same way.
//!
//! LoRA checkpoints ([`LoraFusion`]): averaging the factors `A` and `B` of K adapters (the
//! default, `factors`) is not the average of their updates `s·B_k A_k`. The `delta` mode fuses
//! the updates exactly, ΔW(w) = Σ_k w_k s·B_k A_k, as one adapter of rank K·r:
//! `B_cat = [w_1 B_1 | … | w_K B_K]` (`[out, K·r]`) and `A_cat = [A_1; …; A_K]` (`[K·r, in]`),
//! at the same scale s. [`CheckpointSet::for_lora_fusion`] turns the K checkpoints into K
//! checkpoints of that rank-K·r layout whose weighted sum on the simplex is this adapter, so
//! every consumer of a set (host and device fusion, the learned soup's gradient, the export)
//! fuses updates without knowing it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bomf_models::params::{Coverage, named_tensors, param_shapes, set_tensors};
use bomf_models::{HfNamed, HfTensor, StackedParams};
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::spill::{FlatCheckpoint, SpillPolicy};

/// Values per chunk of the fusion kernel: 16 Ki f32 = 64 KiB of output, which stays in L2 while
/// the K inputs stream past it.
const CHUNK: usize = 16 * 1024;

/// Names, shapes and offsets of the tensors of a flattened checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    /// `offsets[i]..offsets[i + 1]` is tensor `i` in the flat buffer (`len = names.len() + 1`).
    pub offsets: Vec<usize>,
}

impl Layout {
    pub fn num_params(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    fn from_tensors(tensors: &[(String, HfTensor)]) -> Self {
        let mut offsets = Vec::with_capacity(tensors.len() + 1);
        offsets.push(0);
        for (_, t) in tensors {
            offsets.push(offsets.last().copied().unwrap_or(0) + t.data.len());
        }
        Self {
            names: tensors.iter().map(|(n, _)| n.clone()).collect(),
            shapes: tensors.iter().map(|(_, t)| t.shape.clone()).collect(),
            offsets,
        }
    }

    /// Checks that `tensors` has exactly this layout; the error names the first differing tensor.
    fn check(&self, index: usize, tensors: &[(String, HfTensor)]) -> Result<()> {
        let mismatch = |message: String| CoreError::CheckpointMismatch { index, message };
        for (i, (name, t)) in tensors.iter().enumerate() {
            let Some(expected) = self.names.get(i) else {
                return Err(mismatch(format!(
                    "has extra tensor `{name}` (checkpoint 0 has {} tensors)",
                    self.names.len()
                )));
            };
            if name != expected {
                return Err(mismatch(format!(
                    "tensor {i} is `{name}`, checkpoint 0 has `{expected}` there"
                )));
            }
            if t.shape != self.shapes[i] {
                return Err(mismatch(format!(
                    "tensor `{name}` has shape {:?}, checkpoint 0 has {:?}",
                    t.shape, self.shapes[i]
                )));
            }
        }
        if tensors.len() < self.names.len() {
            return Err(mismatch(format!(
                "lacks tensor `{}` (and {} more)",
                self.names[tensors.len()],
                self.names.len() - tensors.len() - 1
            )));
        }
        Ok(())
    }
}

/// How the adapters of LoRA checkpoints are fused (see the module docs). Checkpoints without
/// LoRA tensors fuse the same way in both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraFusion {
    /// Every tensor averaged on its own, `lora_A` and `lora_B` alike (rank r): what averaging
    /// the checkpoints' state dicts gives. The fused update is `s·(Σ w_k B_k)(Σ w_k A_k)`.
    #[default]
    Factors,
    /// The updates averaged exactly, `Σ w_k s·B_k A_k`, as one adapter of rank K·r.
    Delta,
}

/// K checkpoints of one architecture, each a flat f32 buffer in a shared [`Layout`], in memory
/// or memory-mapped from disk as its [`SpillPolicy`] decides.
#[derive(Debug, Clone)]
pub struct CheckpointSet {
    layout: Option<Layout>,
    checkpoints: Vec<Arc<FlatCheckpoint>>,
    policy: Arc<SpillPolicy>,
    /// Fusion weights must sum to 1 (a `delta` LoRA set, exact on the simplex only).
    simplex: bool,
}

impl Default for CheckpointSet {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckpointSet {
    /// An empty set under the process-wide [`SpillPolicy::global`].
    pub fn new() -> Self {
        Self::with_policy(SpillPolicy::global())
    }

    /// An empty set whose checkpoints stay in memory within `policy`'s budget.
    pub fn with_policy(policy: Arc<SpillPolicy>) -> Self {
        Self {
            layout: None,
            checkpoints: Vec::new(),
            policy,
            simplex: false,
        }
    }

    /// How many checkpoints live in memory-mapped files.
    pub fn spilled(&self) -> usize {
        self.checkpoints.iter().filter(|c| c.is_mapped()).count()
    }

    /// Removes checkpoint `k` (its memory returns to the policy's budget).
    pub fn remove(&mut self, k: usize) {
        if k < self.checkpoints.len() {
            self.checkpoints.remove(k);
        }
    }

    /// A set of the checkpoints at `indices`, in that order, sharing their buffers.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        let checkpoints = indices
            .iter()
            .map(|&i| {
                self.checkpoints.get(i).cloned().ok_or_else(|| {
                    CoreError::InvalidInput(format!(
                        "checkpoint {i} of a set of {}",
                        self.checkpoints.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            layout: self.layout.clone(),
            checkpoints,
            policy: self.policy.clone(),
            simplex: self.simplex,
        })
    }

    /// Adds a checkpoint given as `(HF name, tensor)` in module order. The first one fixes the
    /// layout; later ones must match it name by name and shape by shape.
    pub fn push_tensors(&mut self, tensors: &[(String, HfTensor)]) -> Result<()> {
        let index = self.checkpoints.len();
        match &self.layout {
            Some(layout) => layout.check(index, tensors)?,
            None => self.layout = Some(Layout::from_tensors(tensors)),
        }
        self.checkpoints
            .push(Arc::new(self.policy.flatten(tensors)?));
        Ok(())
    }

    /// Adds the current parameters of `model`.
    pub fn push_model<B: Backend, M: HfNamed<B>>(&mut self, model: &M) -> Result<()> {
        self.push_tensors(&named_tensors(model)?)
    }

    pub fn len(&self) -> usize {
        self.checkpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty()
    }

    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Checkpoint `k` as a flat buffer.
    pub fn checkpoint(&self, k: usize) -> Option<&[f32]> {
        self.checkpoints.get(k).map(|c| c.as_slice())
    }

    /// θ(w) as a flat buffer in the set's layout.
    pub fn fuse(&self, weights: &[f64]) -> Result<Vec<f32>> {
        let n = self.layout.as_ref().map_or(0, Layout::num_params);
        let mut out = vec![0.0f32; n];
        self.fuse_into(weights, &mut out)?;
        Ok(out)
    }

    /// θ(w) written into `out` (reused across evaluations to avoid reallocating a model).
    pub fn fuse_into(&self, weights: &[f64], out: &mut [f32]) -> Result<()> {
        check_weights(weights, self.checkpoints.len())?;
        let sum: f64 = weights.iter().sum();
        if self.simplex && (sum - 1.0).abs() > 1e-6 {
            return Err(CoreError::InvalidInput(format!(
                "the `delta` fusion of LoRA adapters is exact for weights summing to 1; these sum \
                 to {sum}"
            )));
        }
        let inputs: Vec<&[f32]> = self.checkpoints.iter().map(|c| c.as_slice()).collect();
        let weights: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        weighted_sum_into(out, &inputs, &weights)
    }

    /// θ(w) as `(HF name, tensor)` pairs, for [`set_tensors`] or export.
    pub fn unflatten(&self, flat: &[f32]) -> Result<BTreeMap<String, HfTensor>> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints".into()))?;
        if flat.len() != layout.num_params() {
            return Err(CoreError::InvalidInput(format!(
                "flat buffer has {} values, the layout {}",
                flat.len(),
                layout.num_params()
            )));
        }
        let mut map = BTreeMap::new();
        for (i, name) in layout.names.iter().enumerate() {
            let data = flat[layout.offsets[i]..layout.offsets[i + 1]].to_vec();
            map.insert(name.clone(), HfTensor::new(layout.shapes[i].clone(), data)?);
        }
        Ok(map)
    }

    /// Loads a flat buffer (e.g. θ(w)) into `model` by name; every parameter must be covered.
    pub fn load_into<B: Backend, M: HfNamed<B>>(
        &self,
        model: M,
        flat: &[f32],
        device: &B::Device,
    ) -> Result<M> {
        Ok(set_tensors(
            model,
            &self.unflatten(flat)?,
            Coverage::All,
            device,
        )?)
    }

    /// The checkpoints uploaded to `device` as one `[K, n]` tensor per parameter of
    /// `template`'s architecture, for fusion on the device ([`StackedParams::fused`]).
    pub fn stacked<B: Backend, M: HfNamed<B>>(
        &self,
        template: &M,
        device: &B::Device,
    ) -> Result<StackedParams<B>> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints to stack".into()))?;
        let index: BTreeMap<&str, usize> = layout
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let values = |name: &str| {
            let i = *index.get(name)?;
            let range = layout.offsets[i]..layout.offsets[i + 1];
            Some(
                self.checkpoints
                    .iter()
                    .map(|c| &c.as_slice()[range.clone()])
                    .collect(),
            )
        };
        let stacked = StackedParams::new(template, self.checkpoints.len(), values, device)?;
        // Every model tensor was found by name (else `new` named it); equal counts then mean
        // the checkpoints hold no tensor the model lacks.
        let model_tensors = param_shapes(template).len();
        if model_tensors != layout.names.len() {
            return Err(CoreError::InvalidInput(format!(
                "the checkpoints have {} tensors, the model {model_tensors}",
                layout.names.len(),
            )));
        }
        Ok(stacked)
    }

    /// θ(w) loaded into `model` (which gives the architecture; its values are replaced).
    pub fn fused_model<B: Backend, M: HfNamed<B>>(
        &self,
        model: M,
        weights: &[f64],
        device: &B::Device,
    ) -> Result<M> {
        let flat = self.fuse(weights)?;
        self.load_into(model, &flat, device)
    }
}

impl CheckpointSet {
    /// The rank of the set's LoRA adapters (`None`: no `lora_A`/`lora_B` tensors); an error
    /// when their ranks differ or a factor lacks its partner.
    pub fn lora_rank(&self) -> Result<Option<usize>> {
        let Some(layout) = &self.layout else {
            return Ok(None);
        };
        let mut rank = None;
        for pair in lora_pairs(layout)? {
            match rank {
                Some(r) if r != pair.rank => {
                    return Err(CoreError::InvalidInput(format!(
                        "LoRA adapters of ranks {r} and {} (`{}`): one rank is needed",
                        pair.rank, layout.names[pair.a]
                    )));
                }
                _ => rank = Some(pair.rank),
            }
        }
        Ok(rank)
    }

    /// The set that fuses as `mode` asks. `Factors`, or a set without LoRA tensors: this set
    /// (buffers shared). `Delta`: K checkpoints in the layout of rank-K·r adapters, checkpoint
    /// k holding `A_cat = [A_1; …; A_K]` and `B_k` in the k-th column block of `B` (zeros
    /// elsewhere), other tensors as they are. With weights summing to 1 their fusion is `A_cat`
    /// and `[w_1 B_1 | … | w_K B_K]`, whose update at the adapters' scale s is exactly
    /// Σ_k w_k s·B_k A_k; other weights are refused (they would scale `A_cat` by their sum).
    /// Memory: K copies of the rank-K·r adapters.
    pub fn for_lora_fusion(&self, mode: LoraFusion) -> Result<Self> {
        let Some(layout) = self.layout.as_ref().filter(|_| mode == LoraFusion::Delta) else {
            return Ok(self.clone());
        };
        let pairs = lora_pairs(layout)?;
        if pairs.is_empty() || self.is_empty() {
            return Ok(self.clone());
        }
        self.lora_rank()?;
        let mut role = vec![Role::Plain; layout.names.len()];
        for pair in &pairs {
            role[pair.a] = Role::A;
            role[pair.b] = Role::B(pair.rank);
        }
        let mut set = Self::with_policy(self.policy.clone());
        for k in 0..self.len() {
            let tensors = (0..layout.names.len())
                .map(|i| Ok((layout.names[i].clone(), self.delta_tensor(k, i, role[i])?)))
                .collect::<Result<Vec<_>>>()?;
            set.push_tensors(&tensors)?;
        }
        set.simplex = true;
        Ok(set)
    }

    /// Tensor `i` of checkpoint `k` of the `delta` set ([`Self::for_lora_fusion`]).
    fn delta_tensor(&self, k: usize, i: usize, role: Role) -> Result<HfTensor> {
        let layout = self
            .layout
            .as_ref()
            .ok_or_else(|| CoreError::InvalidInput("no checkpoints".into()))?;
        let n = self.len();
        let range = layout.offsets[i]..layout.offsets[i + 1];
        let slice = |j: usize| &self.checkpoints[j].as_slice()[range.clone()];
        let shape = &layout.shapes[i];
        let tensor = match role {
            Role::Plain => HfTensor::new(shape.clone(), slice(k).to_vec()),
            Role::A => {
                let data = (0..n).flat_map(|j| slice(j).iter().copied()).collect();
                HfTensor::new(vec![n * shape[0], shape[1]], data)
            }
            Role::B(r) => {
                let out = shape[0];
                let mut data = vec![0.0f32; out * n * r];
                for (row, src) in data.chunks_mut(n * r).zip(slice(k).chunks(r)) {
                    row[k * r..(k + 1) * r].copy_from_slice(src);
                }
                HfTensor::new(vec![out, n * r], data)
            }
        };
        Ok(tensor?)
    }
}

/// What a tensor is to the `delta` LoRA fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not a LoRA factor: fused as it is.
    Plain,
    /// `lora_A`, `[r, in]`: stacked over the checkpoints.
    A,
    /// `lora_B`, `[out, r]` (the rank): one column block per checkpoint.
    B(usize),
}

/// The two factors of one LoRA update, by tensor index in a [`Layout`].
#[derive(Debug, Clone, Copy)]
struct LoraPair {
    /// `….lora_A.weight`, `[r, in]`.
    a: usize,
    /// `….lora_B.weight`, `[out, r]`.
    b: usize,
    rank: usize,
}

/// The LoRA factor pairs of a layout (peft's names: `<module>.lora_A.weight` and
/// `<module>.lora_B.weight`); a factor without its partner, or factors of different inner
/// sizes, are an error naming them.
fn lora_pairs(layout: &Layout) -> Result<Vec<LoraPair>> {
    let index: BTreeMap<&str, usize> = layout
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut pairs = Vec::new();
    for (i, name) in layout.names.iter().enumerate() {
        if let Some(stem) = name.strip_suffix("lora_A.weight") {
            let partner = format!("{stem}lora_B.weight");
            let b = *index.get(partner.as_str()).ok_or_else(|| {
                CoreError::InvalidInput(format!("LoRA factor `{name}` has no `{partner}`"))
            })?;
            let (sa, sb) = (&layout.shapes[i], &layout.shapes[b]);
            if sa.len() != 2 || sb.len() != 2 || sa[0] != sb[1] {
                return Err(CoreError::InvalidInput(format!(
                    "`{name}` {sa:?} and `{partner}` {sb:?} are not the factors [r, in] and \
                     [out, r] of one update"
                )));
            }
            pairs.push(LoraPair {
                a: i,
                b,
                rank: sa[0],
            });
        } else if let Some(stem) = name.strip_suffix("lora_B.weight") {
            let partner = format!("{stem}lora_A.weight");
            if !index.contains_key(partner.as_str()) {
                return Err(CoreError::InvalidInput(format!(
                    "LoRA factor `{name}` has no `{partner}`"
                )));
            }
        }
    }
    Ok(pairs)
}

/// Fusion weights must be finite, one per checkpoint (of at least one).
pub(crate) fn check_weights(weights: &[f64], checkpoints: usize) -> Result<()> {
    if checkpoints == 0 {
        return Err(CoreError::InvalidInput("no checkpoints to fuse".into()));
    }
    if weights.len() != checkpoints {
        return Err(CoreError::InvalidInput(format!(
            "{} fusion weights for {checkpoints} checkpoints",
            weights.len(),
        )));
    }
    if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
        return Err(CoreError::InvalidInput(format!(
            "fusion weight {w} is not finite"
        )));
    }
    Ok(())
}

/// `out = Σ_k weights[k] · inputs[k]`, streaming over cache-sized chunks in parallel.
pub fn weighted_sum_into(out: &mut [f32], inputs: &[&[f32]], weights: &[f32]) -> Result<()> {
    if inputs.is_empty() || inputs.len() != weights.len() {
        return Err(CoreError::InvalidInput(format!(
            "{} inputs and {} weights",
            inputs.len(),
            weights.len()
        )));
    }
    if let Some((k, x)) = inputs
        .iter()
        .enumerate()
        .find(|(_, x)| x.len() != out.len())
    {
        return Err(CoreError::InvalidInput(format!(
            "input {k} has {} values, the output {}",
            x.len(),
            out.len()
        )));
    }
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let start = c * CHUNK;
            let end = start + chunk.len();
            let (first, rest) = (inputs[0], &inputs[1..]);
            let w0 = weights[0];
            for (o, &x) in chunk.iter_mut().zip(&first[start..end]) {
                *o = w0 * x;
            }
            for (x, &w) in rest.iter().zip(&weights[1..]) {
                for (o, &x) in chunk.iter_mut().zip(&x[start..end]) {
                    *o += w * x;
                }
            }
        });
    Ok(())
}
