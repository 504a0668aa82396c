//! An image file (JPEG through libjpeg-turbo, PNG through `image`) decoded and preprocessed as
//! `classify` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resnext_edge::metadata::Preprocessing;
use resnext_edge::preprocess::{decode_bytes, Preprocessor};

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_bytes(data, "fuzz") {
        let out = Preprocessor::new(Preprocessing::default()).preprocess(&img);
        assert!(out.iter().all(|v| v.is_finite()));
    }
});
