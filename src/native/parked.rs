//! Convolution weights the rewrite packed, parked until the op that runs them is built.
//!
//! The rewrite packs each native convolution's weights straight out of the ONNX protobuf (taking
//! the bytes, not copying them) and leaves the node a key instead of a weight input, so that
//! tract never holds a copy of its own: a model's weights are in memory once, packed, from load
//! to exit (resnext50_32x4d: 25 MB, not three times that while loading). The op's builder takes
//! them back by key. Keys are random, so a file cannot name weights another load parked; what a
//! load leaves (it failed before building every op) is removed when its [`Parked`] is dropped.

use crate::kernels::conv::PackedWeights;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

fn table() -> &'static Mutex<HashMap<u64, PackedWeights>> {
    static TABLE: OnceLock<Mutex<HashMap<u64, PackedWeights>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<u64, PackedWeights>> {
    table().lock().unwrap_or_else(|e| e.into_inner())
}

/// The weights one load parked; dropping it removes those not taken.
#[derive(Debug, Default)]
pub struct Parked {
    keys: Vec<u64>,
}

impl Parked {
    /// Parks `w` and returns its key.
    pub fn park(&mut self, w: PackedWeights) -> u64 {
        let random = RandomState::new();
        let mut t = lock();
        let key = loop {
            let k = random.hash_one((self.keys.len(), t.len()));
            if !t.contains_key(&k) {
                break k;
            }
        };
        t.insert(key, w);
        self.keys.push(key);
        key
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut t = lock();
        for k in &self.keys {
            t.remove(k);
        }
    }
}

/// The weights parked under `key`, taken out (each op takes its own once).
pub fn take(key: u64) -> Option<PackedWeights> {
    lock().remove(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::aligned::Aligned;

    fn weights(n: usize) -> PackedWeights {
        PackedWeights::I16(Aligned::new(n))
    }

    #[test]
    fn weights_are_taken_once_and_a_dropped_load_leaves_none() {
        let mut parked = Parked::default();
        let (a, b) = (parked.park(weights(4)), parked.park(weights(8)));
        assert_ne!(a, b);
        assert!(matches!(take(a), Some(PackedWeights::I16(w)) if w.len() == 4));
        assert!(take(a).is_none(), "taken twice");
        drop(parked);
        assert!(take(b).is_none(), "left behind by a dropped load");
    }
}
