//! The ONNX-level rewrite that puts the native ops into a model.
//!
//! It runs on the protobuf graph, before tract parses it, because that is where an int8 model's
//! integers still are: int8 weights, int32 biases, scales and zero points as initializers (tract
//! folds QDQ weights to float as soon as it types the graph). Recognized, for u8 activations:
//! * QOperator: `QLinearConv` (onnxruntime's and ours);
//! * QDQ: `DequantizeLinear -> Conv (DQ weights, DQ or float bias) -> [Relu] -> QuantizeLinear`,
//!   and `... Conv -> Add(DequantizeLinear(identity)) -> [Relu] -> QuantizeLinear` (the residual
//!   block end as our quantizer writes it), fused into one native conv;
//! * the stem's max pool on a quantized tensor (`MaxPool` on u8, or `DQ -> MaxPool -> Q` with
//!   one grid).
//!
//! Then every tensor a native op produces is NHWC; elementwise consumers (Q/DQ with scalar
//! parameters, `Relu`, `Add`, `QLinearAdd`) keep it so, and a `Transpose` is inserted only before
//! an op that needs NCHW. Nodes left without consumers are dropped.

//!
//! The files: this one (the pass, and the graph's lookups), [`conv`] (the convolution patterns
//! and the max pool), [`head`] (the network's input quantization and the classifier head),
//! [`layout`] (NHWC inside the native region), [`cleanup`] (weights folded, dead nodes dropped).

mod cleanup;
mod conv;
mod graph;
mod head;
mod layout;
mod park;
#[cfg(test)]
mod tests;

use crate::native::ops::DOMAIN;
use crate::native::parked::Parked;
use cleanup::{fold_weight_dequantize, remove_dead};
use conv::replace_patterns;
use head::{native_head, native_input_quantize};
use layout::assign_layouts;
use tract_onnx::pb;

/// The rewritten model, how many native ops it has, and the weights it packed for them (to be
/// kept until the model is built: dropping it frees what no op took).
pub struct Rewritten {
    pub model: pb::ModelProto,
    pub native_ops: usize,
    pub parked: Parked,
}

/// Replaces what the native path runs; any model comes out valid (unchanged if nothing matched).
/// Works in place: the weights of a large model are not copied (they dominate its memory).
pub fn rewrite(mut model: pb::ModelProto) -> Rewritten {
    let Some(mut g) = model.graph.take() else {
        return Rewritten {
            model,
            native_ops: 0,
            parked: Parked::default(),
        };
    };
    // What the layout pass may have to undo: everything but the initializers, which the
    // patterns only append to.
    let initializers = std::mem::take(&mut g.initializer);
    let original = g.clone();
    g.initializer = initializers;
    let count = g.initializer.len();
    let mut native_ops = replace_patterns(&mut g);
    if native_ops > 0 {
        native_ops += native_head(&mut g);
        native_ops += native_input_quantize(&mut g);
    }
    if native_ops > 0 && !assign_layouts(&mut g) {
        log::warn!("native rewrite skipped: a graph output would be NHWC");
        let mut initializers = std::mem::take(&mut g.initializer);
        initializers.truncate(count);
        model.graph = Some(pb::GraphProto {
            initializer: initializers,
            ..original
        });
        return Rewritten {
            model,
            native_ops: 0,
            parked: Parked::default(),
        };
    }
    if native_ops == 0 {
        model.graph = Some(g);
        return Rewritten {
            model,
            native_ops: 0,
            parked: Parked::default(),
        };
    }
    let mut parked = Parked::default();
    park::park_weights(&mut g, &mut parked);
    remove_dead(&mut g);
    if fold_weight_dequantize(&mut g) > 0 {
        remove_dead(&mut g);
    }
    if !model.opset_import.iter().any(|o| o.domain == DOMAIN) {
        model.opset_import.push(pb::OperatorSetIdProto {
            domain: DOMAIN.into(),
            version: 1,
        });
    }
    model.graph = Some(g);
    Rewritten {
        model,
        native_ops,
        parked,
    }
}
