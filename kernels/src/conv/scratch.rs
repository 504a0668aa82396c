//! Working memory kept per thread between layers and runs, so that an inference allocates none
//! once its largest layer has run.

use std::cell::RefCell;

thread_local! {
    /// The padded input of the direct kernels, kept between layers and runs.
    pub(super) static PADDED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Each thread's patch rows and accumulators, kept between layers and runs (taken out
    /// while a layer runs and put back), so that an inference allocates none once the
    /// largest layer has run.
    pub(super) static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch::new()) };
}

/// Working memory of the convolutions: patch rows of either family and i32 accumulators.
/// What a layer finds there is left over from another; every value it reads it has written
/// (a patch row's depth padding excepted, which meets zero weights).
#[derive(Default)]
pub(super) struct Scratch {
    patch16: Vec<i16>,
    patch8: Vec<u8>,
    acc: Vec<i32>,
}

impl Scratch {
    const fn new() -> Self {
        Scratch {
            patch16: Vec::new(),
            patch8: Vec::new(),
            acc: Vec::new(),
        }
    }

    /// The three buffers, at least `n16`, `n8` and `acc` long.
    pub(super) fn buffers(
        &mut self,
        n16: usize,
        n8: usize,
        acc: usize,
    ) -> (&mut [i16], &mut [u8], &mut [i32]) {
        fn at_least<T: Default + Clone>(v: &mut Vec<T>, n: usize) -> &mut [T] {
            if v.len() < n {
                v.resize(n, T::default());
            }
            &mut v[..n]
        }
        (
            at_least(&mut self.patch16, n16),
            at_least(&mut self.patch8, n8),
            at_least(&mut self.acc, acc),
        )
    }
}
