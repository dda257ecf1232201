//! Every parameter tensor of a model, by its Hugging Face name, in HF's layout.
//!
//! Our module trees mirror `transformers`' (same field names, same nesting), so an HF name is the
//! burn module path with a few mechanical renames. This module knows only burn's own:
//!
//! | burn path component | HF name |
//! | --- | --- |
//! | root field `base` | the model's base prefix ([`HfNamed::hf_base_prefix`]: `bert`, `model`, ...) |
//! | LayerNorm `gamma` / `beta` | `weight` / `bias` |
//! | enum variant names (e.g. `Classifier::Linear`) | dropped |
//!
//! A model family adds its own through [`HfNamed::hf_part`] (BERT's `self_attn` ↔ `self`, for
//! example), next to the model.
//!
//! Linear weights are stored `[d_in, d_out]` by burn and `[d_out, d_in]` by PyTorch; everything
//! here speaks HF's layout, transposing on the way in and out.
//!
//! This is what the fusion code builds on: [`named_tensors`] flattens models to f32 data,
//! [`set_tensors`] writes a combination back, [`weighted_sum`] does θ(w) = Σ w_k θ_k on the
//! device, and [`set_trainable`] freezes parameters by name.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::error::{ModelError, Result};

/// A model whose parameters have Hugging Face names.
pub trait HfNamed<B: Backend>: Module<B> {
    /// The HF prefix that replaces the root field `base` (empty: drop it).
    fn hf_base_prefix(&self) -> &str;

    /// HF's spelling of the path component `field` of a module whose burn container type is
    /// `container` (`Struct:BertAttention`, as `ModuleVisitor::enter_module` gets it). The
    /// default keeps every component: the field names are HF's.
    fn hf_part(_field: &str, _container: &str) -> HfPart {
        HfPart::Keep
    }
}

/// How a model family spells one component of a burn module path in its HF names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HfPart {
    /// The field name is HF's.
    Keep,
    /// HF's name differs (BERT's `self`, which is a Rust keyword).
    Rename(&'static str),
    /// A wrapper HF does not have (the field's contents belong to the parent).
    Skip,
}

/// A tensor in HF's layout, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HfTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ModelError::InvalidInput(format!(
                "shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }
}

/// Tracks the module path during a visit and turns it into an HF name.
struct PathTracker {
    /// (field or index, container type of the module owning it).
    stack: Vec<(String, String)>,
    /// The model family's renames ([`HfNamed::hf_part`]).
    part: fn(&str, &str) -> HfPart,
}

impl PathTracker {
    fn of<B: Backend, M: HfNamed<B>>() -> Self {
        Self {
            stack: Vec::new(),
            part: M::hf_part,
        }
    }

    fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_string(), container.to_string()));
    }

    fn exit(&mut self) {
        self.stack.pop();
    }

    /// The HF name of the parameter at the current path, and whether it is a Linear weight
    /// (stored transposed relative to PyTorch).
    fn hf_name(&self, base_prefix: &str) -> (String, bool) {
        let mut parts: Vec<&str> = Vec::with_capacity(self.stack.len());
        for (i, (name, container)) in self.stack.iter().enumerate() {
            if container.starts_with("Enum:") {
                continue;
            }
            if i == 0 && name == "base" {
                if !base_prefix.is_empty() {
                    parts.push(base_prefix);
                }
                continue;
            }
            let part = match (self.part)(name, container) {
                HfPart::Skip => continue,
                HfPart::Rename(hf) => hf,
                HfPart::Keep => match (name.as_str(), container.as_str()) {
                    ("gamma", "Struct:LayerNorm") => "weight",
                    ("beta", "Struct:LayerNorm") => "bias",
                    (other, _) => other,
                },
            };
            parts.push(part);
        }
        let is_linear_weight = self
            .stack
            .last()
            .is_some_and(|(name, container)| name == "weight" && container == "Struct:Linear");
        (parts.join("."), is_linear_weight)
    }
}

/// burn layout → HF layout: transpose Linear weights.
fn to_hf_layout<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    is_linear_weight: bool,
) -> Tensor<B, D> {
    if is_linear_weight { t.transpose() } else { t }
}

/// What a visit does with one float parameter, given its HF name and whether it is a Linear
/// weight (stored transposed relative to HF).
trait NamedVisit<B: Backend> {
    fn visit_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: &Param<Tensor<B, D>>,
    );
}

/// What a map does with one float parameter, given its HF name and whether it is a Linear
/// weight (stored transposed relative to HF).
trait NamedMap<B: Backend> {
    fn map_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>>;
}

/// Runs a [`NamedVisit`] or a [`NamedMap`] over a module tree, tracking the HF name of each
/// parameter it reaches.
struct HfNamer<T> {
    path: PathTracker,
    prefix: String,
    inner: T,
}

impl<T> HfNamer<T> {
    fn new<B: Backend, M: HfNamed<B>>(model: &M, inner: T) -> Self {
        Self {
            path: PathTracker::of::<B, M>(),
            prefix: model.hf_base_prefix().to_string(),
            inner,
        }
    }
}

impl<B: Backend, T: NamedVisit<B>> ModuleVisitor<B> for HfNamer<T> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let (name, transposed) = self.path.hf_name(&self.prefix);
        self.inner.visit_named(name, transposed, param);
    }
}

impl<B: Backend, T: NamedMap<B>> ModuleMapper<B> for HfNamer<T> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (name, transposed) = self.path.hf_name(&self.prefix);
        self.inner.map_named(name, transposed, param)
    }
}

/// Visits every parameter of `model` with `visit`; returns `visit` with what it gathered.
fn visit_named<B: Backend, M: HfNamed<B>, V: NamedVisit<B>>(model: &M, visit: V) -> V {
    let mut namer = HfNamer::new(model, visit);
    model.visit(&mut namer);
    namer.inner
}

/// Maps every parameter of `model` with `map`; returns the model and `map` with what it gathered.
fn map_named<B: Backend, M: HfNamed<B>, F: NamedMap<B>>(model: M, map: F) -> (M, F) {
    let mut namer = HfNamer::new(&model, map);
    let model = model.map(&mut namer);
    (model, namer.inner)
}

/// `(HF name, burn shape, stored transposed relative to HF)` of each parameter.
struct NameCollector(Vec<(String, Vec<usize>, bool)>);

impl<B: Backend> NamedVisit<B> for NameCollector {
    fn visit_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: &Param<Tensor<B, D>>,
    ) {
        self.0.push((name, param.lazy_shape().to_vec(), transposed));
    }
}

/// `(HF name, burn shape, transposed)` of every parameter, in module order, without
/// materialising lazy parameters.
fn param_layouts<B: Backend, M: HfNamed<B>>(model: &M) -> Vec<(String, Vec<usize>, bool)> {
    visit_named(model, NameCollector(Vec::new())).0
}

/// `(HF name, HF shape)` of every parameter, in module order. Does not materialise lazy
/// parameters.
pub fn param_shapes<B: Backend, M: HfNamed<B>>(model: &M) -> Vec<(String, Vec<usize>)> {
    param_layouts(model)
        .into_iter()
        .map(|(name, mut shape, transposed)| {
            if transposed {
                shape.reverse();
            }
            (name, shape)
        })
        .collect()
}

/// Tensors read back to the host by HF name, in HF layout; the first read that failed.
#[derive(Default)]
struct HostTensors {
    out: Vec<(String, HfTensor)>,
    error: Option<ModelError>,
}

impl HostTensors {
    fn push<B: Backend, const D: usize>(
        &mut self,
        name: String,
        t: Tensor<B, D>,
        transposed: bool,
    ) {
        let t = to_hf_layout(t, transposed);
        let shape = t.dims().to_vec();
        match t.into_data().convert::<f32>().into_vec::<f32>() {
            Ok(data) => self.out.push((name, HfTensor { shape, data })),
            Err(e) => {
                self.error
                    .get_or_insert(ModelError::TensorData(format!("{name}: {e:?}")));
            }
        }
    }

    fn into_result(self) -> Result<Vec<(String, HfTensor)>> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }
}

/// Every parameter's value.
struct DataCollector(HostTensors);

impl<B: Backend> NamedVisit<B> for DataCollector {
    fn visit_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: &Param<Tensor<B, D>>,
    ) {
        self.0.push(name, param.val(), transposed);
    }
}

/// Every parameter as `(HF name, f32 data in HF layout)`, in module order.
pub fn named_tensors<B: Backend, M: HfNamed<B>>(model: &M) -> Result<Vec<(String, HfTensor)>> {
    visit_named(model, DataCollector(HostTensors::default()))
        .0
        .into_result()
}

struct Assigner<'a, B: Backend> {
    tensors: &'a BTreeMap<String, HfTensor>,
    device: B::Device,
    assigned: BTreeSet<String>,
    errors: Vec<ModelError>,
}

impl<B: Backend> NamedMap<B> for Assigner<'_, B> {
    fn map_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        let Some(src) = self.tensors.get(&name) else {
            return param;
        };
        let mut expected = param.lazy_shape().to_vec();
        if transposed {
            expected.reverse();
        }
        if src.shape != expected {
            self.errors.push(ModelError::ShapeMismatch {
                name,
                expected,
                found: src.shape.clone(),
            });
            return param;
        }
        let value = Tensor::<B, D>::from_data(
            TensorData::new(src.data.clone(), src.shape.clone()),
            &self.device,
        );
        // burn layout; made contiguous so later matmuls do not pay for a strided view.
        let value = if transposed {
            Tensor::<B, D>::from_data(value.transpose().into_data(), &self.device)
        } else {
            value
        };
        self.assigned.insert(name);
        // Keeps the id, device and trainable flag without initialising a lazy parameter (a
        // loaded model draws no random values it would overwrite).
        let id = param.id;
        param.transform_for_load(value, id)
    }
}

/// How [`set_tensors`] treats model parameters absent from the given map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every parameter must be given (the fusion code's case).
    All,
    /// Parameters not in the map keep their values (the loader decides beforehand which may be
    /// missing).
    Partial,
}

/// Writes tensors (HF names, HF layout) into the model. Unknown names and shape mismatches are
/// errors naming the tensor; so are missing ones with [`Coverage::All`]. Each parameter keeps its
/// id and its trainable flag.
pub fn set_tensors<B: Backend, M: HfNamed<B>>(
    model: M,
    tensors: &BTreeMap<String, HfTensor>,
    coverage: Coverage,
    device: &B::Device,
) -> Result<M> {
    let assigner = Assigner {
        tensors,
        device: device.clone(),
        assigned: BTreeSet::new(),
        errors: Vec::new(),
    };
    let expected: Vec<String> = param_shapes(&model).into_iter().map(|(n, _)| n).collect();
    let (model, mapper) = map_named(model, assigner);
    if let Some(e) = mapper.errors.into_iter().next() {
        return Err(e);
    }
    let unknown: Vec<String> = tensors
        .keys()
        .filter(|k| !mapper.assigned.contains(*k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ModelError::UnexpectedTensors { names: unknown });
    }
    if coverage == Coverage::All {
        let missing: Vec<String> = expected
            .into_iter()
            .filter(|n| !mapper.assigned.contains(n))
            .collect();
        if !missing.is_empty() {
            return Err(ModelError::MissingTensors { names: missing });
        }
    }
    Ok(model)
}

struct Flattener<B: Backend> {
    out: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Flattener<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.out.push(t.reshape([n]));
    }
}

struct Combiner<'a, B: Backend> {
    sources: &'a [Vec<Tensor<B, 1>>],
    weights: &'a [f64],
    index: usize,
}

impl<B: Backend> ModuleMapper<B> for Combiner<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let i = self.index;
        self.index += 1;
        let mut acc = self.sources[0][i].clone().mul_scalar(self.weights[0]);
        for (src, &w) in self.sources.iter().zip(self.weights).skip(1) {
            acc = acc + src[i].clone().mul_scalar(w);
        }
        param.map(|old| {
            let dims = old.dims();
            let require_grad = old.is_require_grad();
            acc.reshape(dims).set_require_grad(require_grad)
        })
    }
}

/// θ(w) = Σ_k w_k θ_k over every parameter, computed on the device. All models must have the
/// same architecture (same parameter names and shapes, checked); the result takes the module
/// structure (and parameter ids) of `models[0]`.
pub fn weighted_sum<B: Backend, M: HfNamed<B>>(models: &[M], weights: &[f64]) -> Result<M> {
    if models.is_empty() || models.len() != weights.len() {
        return Err(ModelError::InvalidInput(format!(
            "weighted_sum needs one weight per model and at least one model (got {} models, {} weights)",
            models.len(),
            weights.len()
        )));
    }
    let reference = param_shapes(&models[0]);
    for (k, m) in models.iter().enumerate().skip(1) {
        let shapes = param_shapes(m);
        if shapes != reference {
            let detail = reference
                .iter()
                .zip(&shapes)
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("`{}` {:?} vs `{}` {:?}", a.0, a.1, b.0, b.1))
                .unwrap_or_else(|| format!("{} vs {} tensors", reference.len(), shapes.len()));
            return Err(ModelError::InvalidInput(format!(
                "model {k} has a different architecture than model 0: {detail}"
            )));
        }
    }
    let sources: Vec<Vec<Tensor<B, 1>>> = models
        .iter()
        .map(|m| {
            let mut f = Flattener { out: Vec::new() };
            m.visit(&mut f);
            f.out
        })
        .collect();
    let mut combiner = Combiner {
        sources: &sources,
        weights,
        index: 0,
    };
    Ok(models[0].clone().map(&mut combiner))
}

/// K checkpoints of one architecture resident on the device, one `[K, n]` tensor per parameter
/// (burn's layout, flattened), so that θ(w) = Σ_k w_k θ_k is a single `[1, K] × [K, n]` product
/// per parameter on the device instead of K host buffers fused on the CPU and uploaded at every
/// evaluation. Costs K model copies of device memory; on the CPU the streaming fusion of
/// `bomf-core` is faster (it reads each value once and writes the model once).
#[derive(Debug, Clone)]
pub struct StackedParams<B: Backend> {
    by_name: BTreeMap<String, Tensor<B, 2>>,
    k: usize,
    device: B::Device,
}

impl<B: Backend> StackedParams<B> {
    /// Uploads `k` checkpoints of `template`'s architecture: `values(name)` gives the K values
    /// of a parameter in HF's layout (checkpoint order), `None` when it has none (an error
    /// naming the tensor, as is a wrong length).
    pub fn new<'v, M: HfNamed<B>>(
        template: &M,
        k: usize,
        values: impl Fn(&str) -> Option<Vec<&'v [f32]>>,
        device: &B::Device,
    ) -> Result<Self> {
        if k == 0 {
            return Err(ModelError::InvalidInput("no checkpoints to stack".into()));
        }
        let mut by_name = BTreeMap::new();
        for (name, shape, transposed) in param_layouts(template) {
            let n: usize = shape.iter().product();
            let sources = values(&name).ok_or_else(|| ModelError::MissingTensors {
                names: vec![name.clone()],
            })?;
            if sources.len() != k {
                return Err(ModelError::InvalidInput(format!(
                    "`{name}`: {} checkpoints given, {k} expected",
                    sources.len()
                )));
            }
            let mut stacked = Vec::with_capacity(k * n);
            for (j, src) in sources.iter().enumerate() {
                if src.len() != n {
                    return Err(ModelError::InvalidInput(format!(
                        "`{name}` of checkpoint {j} has {} values, the model {n} ({shape:?})",
                        src.len()
                    )));
                }
                if transposed {
                    // HF stores a Linear weight [out, in]; burn [in, out].
                    let (rows, cols) = (shape[1], shape[0]);
                    stacked.extend((0..n).map(|i| src[(i % rows) * cols + i / rows]));
                } else {
                    stacked.extend_from_slice(src);
                }
            }
            let tensor = Tensor::<B, 2>::from_data(TensorData::new(stacked, [k, n]), device);
            by_name.insert(name, tensor);
        }
        Ok(Self {
            by_name,
            k,
            device: device.clone(),
        })
    }

    /// The number of checkpoints.
    pub fn len(&self) -> usize {
        self.k
    }

    /// Always false: a stack holds at least one checkpoint.
    pub fn is_empty(&self) -> bool {
        self.k == 0
    }

    /// θ(w) written into `template` (its structure and parameter ids are kept).
    pub fn fused<M: HfNamed<B>>(&self, template: M, weights: &[f64]) -> Result<M> {
        if weights.len() != self.k {
            return Err(ModelError::InvalidInput(format!(
                "{} fusion weights for {} checkpoints",
                weights.len(),
                self.k
            )));
        }
        let row: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        let weights = Tensor::<B, 2>::from_data(TensorData::new(row, [1, self.k]), &self.device);
        let fuser = StackFuser {
            stacks: &self.by_name,
            weights,
            missing: Vec::new(),
        };
        let (model, fuser) = map_named(template, fuser);
        if !fuser.missing.is_empty() {
            return Err(ModelError::MissingTensors {
                names: fuser.missing,
            });
        }
        Ok(model)
    }
}

struct StackFuser<'a, B: Backend> {
    stacks: &'a BTreeMap<String, Tensor<B, 2>>,
    weights: Tensor<B, 2>,
    missing: Vec<String>,
}

impl<B: Backend> NamedMap<B> for StackFuser<'_, B> {
    fn map_named<const D: usize>(
        &mut self,
        name: String,
        _transposed: bool,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        let Some(stack) = self.stacks.get(&name) else {
            self.missing.push(name);
            return param;
        };
        let fused = self.weights.clone().matmul(stack.clone());
        param.map(|old| {
            let dims = old.dims();
            let require_grad = old.is_require_grad();
            fused.reshape(dims).set_require_grad(require_grad)
        })
    }
}

/// Sets each parameter trainable where `.0(hf_name)` holds, frozen elsewhere.
struct Trainability<F: Fn(&str) -> bool>(F);

impl<B: Backend, F: Fn(&str) -> bool> NamedMap<B> for Trainability<F> {
    fn map_named<const D: usize>(
        &mut self,
        name: String,
        _transposed: bool,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        param.set_require_grad((self.0)(&name))
    }
}

/// Marks each parameter trainable or frozen according to `trainable(hf_name)`. Frozen parameters
/// get no gradient, so optimisers leave them (and their weight decay) untouched. Only meaningful
/// on an autodiff backend.
pub fn set_trainable<B: Backend, M: HfNamed<B>>(model: M, trainable: impl Fn(&str) -> bool) -> M {
    map_named(model, Trainability(trainable)).0
}

/// Every parameter's gradient, where it has one.
struct GradCollector<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: HostTensors,
}

impl<B: AutodiffBackend> NamedVisit<B> for GradCollector<'_, B> {
    fn visit_named<const D: usize>(
        &mut self,
        name: String,
        transposed: bool,
        param: &Param<Tensor<B, D>>,
    ) {
        if let Some(grad) = param.val().grad(self.grads) {
            self.out.push(name, grad, transposed);
        }
    }
}

/// The gradient of every parameter that has one, by HF name and in HF layout (frozen parameters
/// have none). `grads` comes from `loss.backward()`.
pub fn named_gradients<B: AutodiffBackend, M: HfNamed<B>>(
    model: &M,
    grads: &B::Gradients,
) -> Result<Vec<(String, HfTensor)>> {
    let collector = GradCollector {
        grads,
        out: HostTensors::default(),
    };
    visit_named(model, collector).out.into_result()
}

struct Materializer;

impl<B: Backend> ModuleMapper<B> for Materializer {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if param.is_initialized() {
            param
        } else {
            param.map(|t| t)
        }
    }
}

/// Runs every pending lazy initialisation. burn draws a lazy parameter's random values on first
/// use, separately for each clone; materialising first makes clones identical.
pub fn materialize<B: Backend, M: Module<B>>(model: M) -> M {
    model.map(&mut Materializer)
}
