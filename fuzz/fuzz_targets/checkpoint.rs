//! A checkpoint of any container (torch zip, torch legacy, safetensors) read as `resnext-quantize`
//! reads it, then matched against the ResNeXt family and built into the float network as `export` does. The reader takes a path
//! (pickle, zip and tensor data are read from the file), so each input is written to a scratch
//! file first.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("resnext-edge-fuzz-{}.ckpt", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file");
    let Ok(ckpt) = resnext_quantize::checkpoint::load(path) else {
        return;
    };
    let Ok(config) = resnext_quantize::infer::infer_config(&ckpt) else {
        return;
    };
    if resnext_quantize::infer::check_tensors(&ckpt, &config).is_ok() {
        let _ = resnext_quantize::float_net::FloatNet::from_checkpoint(&ckpt, &config);
    }
});
