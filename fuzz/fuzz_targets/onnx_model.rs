//! An ONNX file through the runtime's loader: protobuf, metadata, the size checks, the native
//! rewrite pass, tract's analysis and optimization; a model that loads is run once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnext_edge::model::{Backend, Model};

fuzz_target!(|data: &[u8]| {
    // The loader contains panics inside tract (`model::contained`): a malformed graph becomes
    // an error, as it does for users. libfuzzer-sys's hook would abort before that, so the
    // default hook is put back; a panic that escapes still aborts (libfuzzer-sys catches it).
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    if let Ok(mut model) = Model::from_bytes(data, "fuzz.onnx", Backend::Native) {
        let crop = model.metadata().preprocessing.crop;
        let _ = model.run(&vec![0.5; 3 * crop * crop]);
    }
});
