//! An ONNX file through the runtime's loader: protobuf, metadata, the size checks, the native
//! rewrite pass, tract's analysis and optimization; a model that loads is run once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnext_edge::model::{Backend, Model};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut model) = Model::from_bytes(data, "fuzz.onnx", Backend::Native) {
        let crop = model.metadata().preprocessing.crop;
        let _ = model.run(&vec![0.5; 3 * crop * crop]);
    }
});
