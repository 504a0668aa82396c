//! The native nodes as the rewrite writes them and the ops read them: op types and domain,
//! attribute readers, the window arithmetic, and the inference rules of the one-input ops.

use crate::kernels::conv::MAX_WINDOW;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type of the native convolution node.
pub const CONV_OP: &str = "ResnextEdgeConv";
/// Op type of the native max pool node.
pub const MAX_POOL_OP: &str = "ResnextEdgeMaxPool";
/// Op type of the native input quantization (float NCHW in, u8 NHWC out).
pub const QUANTIZE_OP: &str = "ResnextEdgeQuantizeNhwc";
/// Op type of the native classifier head (average pool, int8 fully connected, float logits).
pub const HEAD_OP: &str = "ResnextEdgeHead";
/// Domain of the nodes the rewrite writes.
pub const DOMAIN: &str = "resnext_edge";

pub(super) fn read_usize_attr(node: &NodeProto, name: &str) -> TractResult<usize> {
    let v: i64 = node.get_attr(name)?;
    usize::try_from(v).with_context(|| format!("{}: attribute {name} = {v}", node.name))
}

/// Output size of a window (`kernel`, `stride`, `pad`) sliding over `size`, or an error when
/// the attributes make no sense for it.
pub(super) fn window_out(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> TractResult<usize> {
    ensure!(
        (1..=MAX_WINDOW).contains(&kernel)
            && (1..=MAX_WINDOW).contains(&stride)
            && pad <= MAX_WINDOW
            && size + 2 * pad >= kernel,
        "window kernel {kernel} stride {stride} pad {pad} does not fit {size}"
    );
    Ok((size + 2 * pad - kernel) / stride + 1)
}

pub(super) fn read_i32_attr(node: &NodeProto, name: &str) -> TractResult<i32> {
    Ok(node.get_attr::<i64>(name)? as i32)
}

/// Inference rules of a one-input op with a u8 output whose shape `out_shape` computes from
/// the input's (known) shape; `input`, if given, is the input's datum type.
pub(super) fn unary_u8_rules<'r, 'p: 'r>(
    s: &mut Solver<'r>,
    inputs: &'p [TensorProxy],
    outputs: &'p [TensorProxy],
    input: Option<DatumType>,
    out_shape: impl Fn(&[usize]) -> TractResult<[usize; 4]> + 'r,
) -> InferenceResult {
    check_input_arity(inputs, 1)?;
    check_output_arity(outputs, 1)?;
    if let Some(dt) = input {
        s.equals(&inputs[0].datum_type, dt)?;
    }
    s.equals(&outputs[0].datum_type, u8::datum_type())?;
    s.given(&inputs[0].shape, move |s, x| {
        let x: Vec<usize> = x
            .iter()
            .map(|d| Ok(d.to_usize()?))
            .collect::<TractResult<_>>()?;
        s.equals(
            &outputs[0].shape,
            ShapeFactoid::from(out_shape(&x)?.to_vec()),
        )
    })
}
