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

/// Where a requantizing direct kernel's tiles end: the ISA's requantization constants, the
/// layer's biases and multipliers, the residual inputs (if any) and the outputs. Each ISA
/// implements its `store` on its own constants.
pub(crate) struct TileOut<Q> {
    pub(crate) q: Q,
    pub(crate) bias: *const i32,
    pub(crate) mult: *const f32,
    pub(crate) residual: Option<*const u8>,
    pub(crate) out: *mut u8,
}

/// An x86 ISA's two public direct kernels and their bodies, from what is the ISA's own: its
/// features, its CPU check, its tile walk `direct_tiles(s, xp, pixels, w, &end)` (which hands
/// `end(pixel, first channel, lanes, vector)` each tile's accumulators), and two sinks for those
/// vectors: `$add(acc at the vector's first channel, lanes, vector)` adds them to the
/// accumulators, and `TileOut<$Requant>::store(at, first channel, lanes, vector)` requantizes
/// them with `$Requant`'s constants and stores them as bytes.
macro_rules! direct_kernels {
    (
        features: $features:literal,
        simd: $simd:expr,
        $(#[$acc_doc:meta])* acc: $acc_name:ident,
        $(#[$out_doc:meta])* requant: $out_name:ident,
        add: $add:path,
        constants: $Requant:ty $(,)?
    ) => {
        $(#[$acc_doc])*
        pub fn $acc_name(s: &DirectShape, xp: &[u8], pixels: usize, w: &[i8], acc: &mut [i32]) {
            // SAFETY: `direct_acc` needs the ISA's features (checked by `$simd`) and buffers
            // that `fits`, which `checked_direct` checks.
            unsafe {
                $crate::direct_entry::checked_direct($simd, direct_acc, (s, xp, pixels, w, acc))
            }
        }

        /// The tiles of the accumulating kernel, added to the accumulators.
        ///
        /// # Safety
        /// As for `direct_tiles`, and `acc` must hold `pixels * out_c` accumulators.
        #[target_feature(enable = $features)]
        unsafe fn direct_acc(
            s: &DirectShape,
            xp: *const u8,
            pixels: usize,
            w: *const i8,
            acc: *mut i32,
        ) {
            // SAFETY: the caller's preconditions; each pixel's vector starts inside `acc`, and
            // the sink touches only its `lanes` channels, which lie below out_c.
            unsafe {
                direct_tiles(s, xp, pixels, w, &|p, o, lanes, a| {
                    $add(acc.add(p * s.out_c + o), lanes, a)
                })
            }
        }

        $(#[$out_doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $out_name(
            s: &DirectShape,
            xp: &[u8],
            pixels: usize,
            w: &[i8],
            rq: &TileRequant,
            residual: Option<&[u8]>,
            out: &mut [u8],
        ) {
            // SAFETY: `direct_out` needs the ISA's features (checked by `$simd`) and buffers
            // that `fits_direct_requant`, which `checked_direct_requant` checks.
            unsafe {
                $crate::direct_entry::checked_direct_requant(
                    $simd,
                    direct_out,
                    (s, xp, pixels, w),
                    (rq, residual, out),
                )
            }
        }

        /// The tiles of the requantizing kernel, requantized and stored.
        ///
        /// # Safety
        /// As for `direct_tiles`; `rq` holds `out_c` channels, and `out` (and `residual`)
        /// `pixels * out_c` bytes.
        #[target_feature(enable = $features)]
        unsafe fn direct_out(
            s: &DirectShape,
            (xp, pixels): (*const u8, usize),
            w: *const i8,
            rq: &TileRequant,
            residual: Option<&[u8]>,
            out: *mut u8,
        ) {
            // SAFETY: the caller's preconditions; the sink reads and writes only the vector's
            // `lanes` channels of the pixel, which lie below out_c.
            unsafe {
                let sink = $crate::direct_entry::TileOut {
                    q: <$Requant>::new((rq.zero, rq.lo, rq.hi), rq.residual),
                    bias: rq.bias.as_ptr(),
                    mult: rq.multiplier.as_ptr(),
                    residual: residual.map(<[u8]>::as_ptr),
                    out,
                };
                direct_tiles(s, xp, pixels, w, &|p, o, lanes, a| {
                    sink.store(p * s.out_c + o, o, lanes, a)
                })
            }
        }
    };
}
pub(crate) use direct_kernels;
