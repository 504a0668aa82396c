//! The public entry every x86 SIMD direct kernel shares: its buffers checked, then its SIMD body
//! where the CPU has the body's features and the shape is one the body takes, else the generic
//! kernel. The bodies work on raw pointers, after these checks.

use crate::generic;
use crate::requant;
use crate::signatures::{fits_direct_requant, DirectShape};

/// The SIMD body of a [`DirectU8`](crate::signatures::DirectU8) kernel on raw pointers: the
/// windows of `pixels` pixels at `xp`, the weights at `w`, the accumulators at `acc`.
pub(crate) type DirectBody = unsafe fn(&DirectShape, *const u8, usize, *const i8, *mut i32);

/// The SIMD body of a [`DirectU8Requant`](crate::signatures::DirectU8Requant) kernel on raw
/// pointers: the windows of `pixels` pixels at `xp`, the weights at `w`, the outputs at `out`.
pub(crate) type DirectRequantBody = unsafe fn(
    &DirectShape,
    (*const u8, usize),
    *const i8,
    &requant::TileRequant,
    Option<&[u8]>,
    *mut u8,
);

/// A direct kernel's public function: its buffers checked ([`DirectShape::fits`]), then `body`
/// where the CPU has its features (`simd`) and the shape is one it takes
/// ([`DirectShape::supported`]), else the generic kernel.
///
/// # Safety
/// `body` must be sound, when `simd` holds, for every supported shape whose buffers `fits`.
pub(crate) unsafe fn checked_direct(
    simd: bool,
    body: DirectBody,
    (s, xp, pixels, w, acc): (&DirectShape, &[u8], usize, &[i8], &mut [i32]),
) {
    assert!(s.fits(pixels, xp.len(), w.len(), acc.len()));
    if !simd || !s.supported() {
        return generic::direct_u8(s, xp, pixels, w, acc);
    }
    // SAFETY: the features and the shape are the body's (checked above); `fits` holds for all
    // `pixels`: every window inside `xp`, the weights inside `w`, the accumulators inside
    // `acc` (the caller guarantees the body stays within them).
    unsafe { body(s, xp.as_ptr(), pixels, w.as_ptr(), acc.as_mut_ptr()) }
}

/// [`checked_direct`] for a requantizing direct kernel ([`fits_direct_requant`]).
///
/// # Safety
/// `body` must be sound, when `simd` holds, for every supported shape whose buffers
/// `fits_direct_requant`.
#[allow(clippy::type_complexity)]
pub(crate) unsafe fn checked_direct_requant(
    simd: bool,
    body: DirectRequantBody,
    (s, xp, pixels, w): (&DirectShape, &[u8], usize, &[i8]),
    (rq, residual, out): (&requant::TileRequant, Option<&[u8]>, &mut [u8]),
) {
    let lens = (xp.len(), w.len(), out.len(), residual.map(<[u8]>::len));
    assert!(fits_direct_requant(s, pixels, lens, rq));
    if !simd || !s.supported() {
        return generic::direct_u8_requant(s, xp, pixels, w, rq, residual, out);
    }
    // SAFETY: the features and the shape are the body's (checked above);
    // `fits_direct_requant` holds: the windows, the weights, `out_c` biases and multipliers,
    // `pixels * out_c` outputs and residual inputs.
    unsafe {
        body(
            s,
            (xp.as_ptr(), pixels),
            w.as_ptr(),
            rq,
            residual,
            out.as_mut_ptr(),
        )
    }
}
