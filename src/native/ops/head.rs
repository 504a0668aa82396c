//! `ResnextEdgeHead`: global average pooling and the classifier's int8 matrix product in one
//! op, on the kernel crate's pooling and dot kernels.

use super::node::{read_i32_attr, HEAD_OP};
use crate::contrib_ops::konst;
use crate::kernels;
use crate::kernels::conv::{ConvGeometry, LayerRequant, PackedConv};
use crate::kernels::nhwc::average_pool_nhwc;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

/// Attributes of `ResnextEdgeHead`: inputs `x` (NHWC u8), `w` (int8 `[classes, channels]`),
/// `bias` and `multiplier` (f32 per class); scales as `f32::to_bits`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HeadSpec {
    x_scale: u32,
    x_zero: i32,
    pool_scale: u32,
    pool_zero: i32,
}

pub(super) fn builder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let spec = HeadSpec {
        x_scale: node.get_attr::<f32>("x_scale")?.to_bits(),
        x_zero: read_i32_attr(node, "x_zero")?,
        pool_scale: node.get_attr::<f32>("pool_scale")?.to_bits(),
        pool_zero: read_i32_attr(node, "pool_zero")?,
    };
    let byte = 0..=255;
    let scale_ok = |b: u32| f32::from_bits(b).is_finite() && f32::from_bits(b) > 0.0;
    ensure!(
        byte.contains(&spec.x_zero)
            && byte.contains(&spec.pool_zero)
            && scale_ok(spec.x_scale)
            && scale_ok(spec.pool_scale),
        "{}: scales must be positive and zero points bytes",
        node.name
    );
    Ok((expand(spec), vec![]))
}

impl Expansion for HeadSpec {
    fn name(&self) -> StaticName {
        HEAD_OP.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 4)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.given(&inputs[1].shape, move |s, w| {
            ensure!(w.len() == 2, "{HEAD_OP}: weights {w:?}");
            s.equals(
                &outputs[0].shape,
                ShapeFactoid::from(vec![1.to_dim(), w[0].clone()]),
            )
        })
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = target.outlet_fact(inputs[0])?.clone();
        let shape = x
            .shape
            .as_concrete()
            .with_context(|| format!("{prefix}: input shape must be known"))?;
        ensure!(
            shape.len() == 4 && shape[0] == 1 && shape[1] * shape[2] > 0,
            "{prefix}: expected a [1, H, W, C] input, got {shape:?}"
        );
        let w = konst(target, inputs[1], "weights")?;
        let bias = konst(target, inputs[2], "bias")?;
        let mult = konst(target, inputs[3], "multiplier")?;
        let (classes, channels) = match w.shape() {
            &[n, c] => (n, c),
            other => bail!("{prefix}: weights of shape {other:?}, expected [classes, channels]"),
        };
        ensure!(
            channels == shape[3] && (1..=1 << 14).contains(&channels) && classes > 0,
            "{prefix}: {channels} weight columns for {} channels (at most 16384)",
            shape[3]
        );
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let mult = mult.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        ensure!(
            bias.len() == classes && mult.len() == classes,
            "{prefix}: {} biases and {} multipliers for {classes} classes",
            bias.len(),
            mult.len()
        );
        let geom = ConvGeometry {
            in_h: 1,
            in_w: 1,
            in_c: channels,
            out_c: classes,
            groups: 1,
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        geom.check().map_err(|e| format_err!("{prefix}: {e}"))?;
        // Only the weights, the input zero point and the bias (none: it is added in float) of
        // the packed convolution are used.
        let requant = LayerRequant::new(self.pool_zero, vec![1.0; classes], 0, (0, 255), None);
        let fc = PackedConv::new(
            geom,
            w.try_as_plain_ram()?.as_slice::<i8>()?,
            vec![0; classes],
            requant,
            kernels::selected().family(),
        );
        let op = NativeHead {
            fc: Arc::new(fc),
            bias,
            mult,
            x: (f32::from_bits(self.x_scale), self.x_zero),
            pool: (f32::from_bits(self.pool_scale), self.pool_zero),
        };
        target.wire_node(prefix, op, &inputs[..1])
    }
}

/// A classifier's head on int8 activations: global average pool of the last NHWC tensor,
/// requantized as the model says ([`average_pool_nhwc`]), then the fully connected layer on the
/// int8 kernels, `logit[o] = (sum_c (pooled[c] - pool_zero) * w[o][c]) as f32 * mult[o] +
/// bias[o]` (`mult` = pool scale x weight scale): integer sums and two f32 operations per
/// value, so every ISA gives the same bits, where the float layers they replace did not.
#[derive(Clone, Debug)]
pub struct NativeHead {
    fc: Arc<PackedConv>,
    bias: Vec<f32>,
    mult: Vec<f32>,
    x: (f32, i32),
    pool: (f32, i32),
}

impl PartialEq for NativeHead {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.fc, &other.fc)
    }
}
impl Eq for NativeHead {}

impl NativeHead {
    /// Multiply-accumulates of the fully connected layer.
    pub fn macs(&self) -> usize {
        self.fc.geom.macs()
    }

    /// What runs the fully connected layer: the kernel set and its dot kernel.
    pub fn describe(&self) -> String {
        let set = self.fc.kernels(kernels::selected());
        format!("{}: {}", set.isa.name(), set.dot.name)
    }

    /// The logits of one NHWC image (`pixels` x `channels` bytes).
    pub fn logits(&self, x: &[u8], pixels: usize) -> Vec<f32> {
        let channels = self.fc.geom.in_c;
        let mut pooled = vec![0u8; channels];
        average_pool_nhwc(x, (pixels, channels), self.x, self.pool, &mut pooled);
        let acc = self
            .fc
            .accumulate_pixel(kernels::selected(), &pooled, kernels::threads());
        acc.iter()
            .zip(&self.mult)
            .zip(&self.bias)
            .map(|((&a, &m), &b)| a as f32 * m + b)
            .collect()
    }
}

impl Op for NativeHead {
    fn name(&self) -> StaticName {
        "NativeHead".into()
    }
    op_as_typed_op!();
}

impl EvalOp for NativeHead {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape().to_vec();
        let x = inputs[0].try_as_plain_ram()?.as_slice::<u8>()?;
        ensure!(
            shape.len() == 4
                && shape[3] == self.fc.geom.in_c
                && x.len() == shape.iter().product::<usize>(),
            "NativeHead: input {shape:?}"
        );
        let logits = self.logits(x, shape[1] * shape[2]);
        let n = logits.len();
        Ok(tvec!(Tensor::from_shape(&[1, n], &logits)?.into_tvalue()))
    }
}

impl TypedOp for NativeHead {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0]
            .shape
            .as_concrete()
            .context("NativeHead: input shape must be known")?;
        ensure!(
            x.len() == 4 && x[0] == 1 && x[3] == self.fc.geom.in_c && x[1] * x[2] > 0,
            "NativeHead: input {x:?} for {} channels",
            self.fc.geom.in_c
        );
        Ok(tvec!(f32::fact([1, self.fc.geom.out_c])))
    }
}
