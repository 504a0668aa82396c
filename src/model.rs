//! An ONNX classifier loaded into tract, batch 1: the model's own metadata (labels,
//! preprocessing) read from the same parse, the graph optimized once at load, and a reusable
//! state so that repeated runs do not rebuild the plan.

use crate::metadata::{MetadataError, ModelMetadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;

/// A model that could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    #[error("{path}: {source}")]
    Metadata { path: String, source: MetadataError },
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded classifier: `input` `[1, 3, crop, crop]` float32 in, `[1, classes]` float32 out.
pub struct Model {
    path: PathBuf,
    plan: Arc<TypedRunnableModel>,
    state: TypedSimpleState,
    metadata: ModelMetadata,
    num_classes: usize,
    native_ops: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("num_classes", &self.num_classes)
            .finish()
    }
}

fn format_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Runs `f`, turning a panic inside it into an error. tract trusts the graphs it is given and
/// may index out of bounds on a malformed one; a model file must never crash the program.
fn contained<T>(f: impl FnOnce() -> TractResult<T>) -> TractResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into());
        Err(anyhow::anyhow!(
            "tract failed on this graph (is it malformed?): {msg}"
        ))
    })
}

/// Who runs the int8 convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The project's native ops where the rewrite recognizes them, stock tract elsewhere.
    Native,
    /// The file as it is, through stock tract.
    Stock,
}

impl Backend {
    /// The faster of the two on this CPU, as measured: the native kernels on x86_64 (about 10x
    /// stock tract on resnext50_32x4d int8, `scripts/speed.sh`), on aarch64 (under qemu, per
    /// inference of the example model: 62 M instructions against stock tract's 88 M on a
    /// Cortex-A72, 33 M against 106 M with the dot product) and on armv7 with NEON (144 M
    /// against 275 M on a Cortex-A15); stock tract on an armv7 CPU without NEON (the generic
    /// kernels execute 3.2x stock tract's instructions).
    pub fn preferred() -> Backend {
        #[cfg(target_arch = "arm")]
        if !crate::kernels::armv7::available() {
            return Backend::Stock;
        }
        if cfg!(any(
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "arm"
        )) {
            Backend::Native
        } else {
            Backend::Stock
        }
    }
}

/// tract's ONNX loader as this project uses it: onnxruntime's quantized `com.microsoft` ops
/// registered, and the declared value shapes ignored (onnxruntime's tools write `N` where a
/// batch of one is run; tract re-derives every shape from the input).
pub fn onnx_loader() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true);
    crate::contrib_ops::register(&mut onnx.op_register);
    crate::native::ops::register(&mut onnx.op_register);
    onnx
}

impl Model {
    /// Loads and optimizes an ONNX model for batch 1 on [`Backend::preferred`].
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Self::load_with(path, Backend::preferred())
    }

    /// Loads and optimizes an ONNX model for batch 1 on `backend`.
    pub fn load_with(path: &Path, backend: Backend) -> Result<Self, ModelError> {
        let shown = path.display().to_string();
        let load_err = |message: String| ModelError::Load {
            path: shown.clone(),
            message,
        };
        if !path.is_file() {
            return Err(load_err("no such model file".into()));
        }
        let onnx = onnx_loader();
        let proto = crate::onnx_read::read_model(path).map_err(load_err)?;
        Self::from_proto(&onnx, proto, path, backend)
    }

    /// Loads a model held in memory; `name` stands for its path in messages. Tensors are read
    /// from the bytes only (no external data).
    pub fn from_bytes(bytes: &[u8], name: &str, backend: Backend) -> Result<Self, ModelError> {
        let onnx = onnx_loader();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| ModelError::Load {
                path: name.to_string(),
                message: format!("not a readable ONNX model: {}", format_chain(&e)),
            })?;
        Self::from_proto(&onnx, proto, Path::new(name), backend)
    }

    fn from_proto(
        onnx: &tract_onnx::Onnx,
        proto: tract_onnx::pb::ModelProto,
        path: &Path,
        backend: Backend,
    ) -> Result<Self, ModelError> {
        let shown = path.display().to_string();
        let load_err = |message: String| ModelError::Load {
            path: shown.clone(),
            message,
        };
        if let Some(graph) = &proto.graph {
            crate::onnx_limits::check_graph(graph)
                .and_then(|()| crate::onnx_limits::check_outputs(graph))
                .map_err(load_err)?;
        }
        let metadata = ModelMetadata::from_props(
            proto
                .metadata_props
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str())),
        )
        .map_err(|source| ModelError::Metadata {
            path: shown.clone(),
            source,
        })?;
        let crop = metadata.preprocessing.crop;
        let plan = contained(|| {
            // The packed weights wait here until the ops that run them take them.
            let (proto, native_ops, _parked) = match backend {
                Backend::Native => {
                    let r = crate::native::rewrite::rewrite(proto);
                    (r.model, r.native_ops, r.parked)
                }
                Backend::Stock => (proto, 0, Default::default()),
            };
            let model = onnx.model_for_proto_model(&proto)?;
            // The protobuf's copy of the weights is not needed once tract holds them.
            drop(proto);
            let model = model.with_input_fact(0, f32::fact([1, 3, crop, crop]).into())?;
            let typed = model.into_optimized()?;
            Ok((typed.into_runnable()?, native_ops))
        })
        .map_err(|e| {
            load_err(format!(
                "cannot prepare the model for a [1, 3, {crop}, {crop}] input: {}",
                format_chain(&e)
            ))
        })?;
        let (plan, native_ops) = plan;
        let out_fact = plan
            .model()
            .output_fact(0)
            .map_err(|e| load_err(format_chain(&e)))?;
        let num_classes = match out_fact.shape.as_concrete() {
            Some([1, n]) => *n,
            _ => {
                return Err(load_err(format!(
                    "expected one output of shape [1, classes], got {:?}",
                    out_fact.shape
                )))
            }
        };
        let state = plan.spawn().map_err(|e| load_err(format_chain(&e)))?;
        log::info!(
            "loaded {shown}: {num_classes} classes, input [1, 3, {crop}, {crop}], {native_ops} native int8 ops ({} kernels)",
            crate::kernels::selected().name()
        );
        Ok(Model {
            path: path.to_path_buf(),
            plan,
            state,
            metadata,
            num_classes,
            native_ops,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// How many layers the native rewrite took over (0 on the stock backend).
    pub fn native_ops(&self) -> usize {
        self.native_ops
    }

    /// The optimized tract model, for inspection.
    pub fn typed_model(&self) -> &TypedModel {
        self.plan.model()
    }

    /// Runs one preprocessed image (`3 * crop * crop` floats, planar) and returns its logits.
    pub fn run(&mut self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.run_timed(input, |_, _| {})
    }

    /// [`Self::run`], calling `each(node id, time)` after every node of the plan has run (ids
    /// index [`Self::typed_model`]'s nodes), for per-layer profiles.
    pub fn run_timed(
        &mut self,
        input: &[f32],
        mut each: impl FnMut(usize, std::time::Duration),
    ) -> Result<Vec<f32>, ModelError> {
        let crop = self.metadata.preprocessing.crop;
        let tensor = Tensor::from_shape(&[1, 3, crop, crop], input)
            .map_err(|e| ModelError::Run(format_chain(&e)))?;
        // The worker threads stay awake between this inference's layers.
        let _hot = crate::kernels::workers::hot();
        let state = &mut self.state;
        let out = contained(|| {
            state.run_plan_with_eval(
                tvec!(tensor.into_tvalue()),
                |ctx, op_state, node, inputs| {
                    let t = std::time::Instant::now();
                    let r =
                        tract_onnx::tract_hir::tract_core::plan::eval(ctx, op_state, node, inputs);
                    each(node.id, t.elapsed());
                    r
                },
            )
        })
        .map_err(|e| ModelError::Run(format_chain(&e)))?;
        let logits = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| ModelError::Run(format_chain(&e)))?
            .iter()
            .copied()
            .collect();
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_tract_becomes_an_error() {
        let v: Vec<u8> = Vec::new();
        let e = contained(|| Ok(v[usize::MAX / 2])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("tract failed on this graph (is it malformed?): index out of bounds"),
            "{e}"
        );
        assert_eq!(contained(|| Ok(7)).unwrap(), 7);
    }
}
