//! Packed weights that start on a cache line.
//!
//! The kernels read a panel of weights as whole 64-byte vectors; a heap block from the system
//! allocator is only 16-byte aligned, so every such load would straddle two cache lines (about
//! 10-20 % slower in the VNNI tile). The buffer keeps its alignment when cloned.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// One cache line of values.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
struct Line<T: Copy>([T; LINE]);

const LINE: usize = 64;

/// `len` values of `T` starting on a 64-byte boundary.
#[derive(Clone, PartialEq, Eq)]
pub struct Aligned<T: Copy> {
    lines: Vec<Line<T>>,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// `len` default values (zeros).
    pub fn new(len: usize) -> Self {
        Aligned {
            lines: vec![Line([T::default(); LINE]); len.div_ceil(LINE)],
            len,
        }
    }
}

impl<T: Copy> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `Line<T>` is `repr(C)` around `[T; 64]`, and its size is a multiple of its
        // alignment, so the lines are `lines.len() * 64` consecutive initialized `T`s; `len`
        // is at most that (set in `new`, never changed).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the borrow of `self` is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Copy> fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aligned({} values)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line_holds_len_values_and_clones_aligned() {
        for len in [0, 1, 63, 64, 65, 1000] {
            let mut a = Aligned::<i8>::new(len);
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&v| v == 0));
            for (i, v) in a.iter_mut().enumerate() {
                *v = i as i8;
            }
            let b = a.clone();
            assert_eq!(b.as_ptr() as usize % 64, 0);
            assert_eq!(&a[..], &b[..]);
            let c = Aligned::<i16>::new(len);
            assert_eq!(c.as_ptr() as usize % 64, 0);
            assert_eq!(c.len(), len);
        }
    }
}
