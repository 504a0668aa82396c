//! The native convolution against a direct evaluation of the definition, and every kernel
//! this CPU has against the generic one, bit for bit, on random shapes. Outputs start as a
//! canary byte so that an output the code never writes shows up.
use super::*;
use crate::dispatch::Isa;
use crate::nhwc::{average_pool_nhwc, max_pool_nhwc, quantize_to_nhwc};
use proptest::prelude::*;

const CANARY: u8 = 0xA5;

/// The convolution as the ONNX definition reads, with the requantization of [`LayerRequant`].
fn reference(c: &PackedConv, w: &[i8], x: &[u8], residual: Option<&[u8]>) -> Vec<u8> {
    let g = &c.geom;
    let (cin, cout, k) = (g.cpg_in(), g.cpg_out(), g.kernel);
    let mut out = vec![0u8; c.out_len()];
    for oy in 0..g.out_h() {
        for ox in 0..g.out_w() {
            for oc in 0..g.out_c {
                let grp = oc / cout;
                let mut acc = c.bias[oc];
                for ci in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            if iy < 0 || ix < 0 || iy >= g.in_h as isize || ix >= g.in_w as isize {
                                continue;
                            }
                            let xv = x
                                [(iy as usize * g.in_w + ix as usize) * g.in_c + grp * cin + ci]
                                as i32;
                            let wv = w[((oc * cin + ci) * k + ky) * k + kx] as i32;
                            acc += (xv - c.requant.in_zero) * wv;
                        }
                    }
                }
                let at = (oy * g.out_w() + ox) * g.out_c + oc;
                out[at] = c.requant.apply(oc, acc, residual.map(|r| r[at]));
            }
        }
    }
    out
}

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Case {
    family: crate::dispatch::Family,
    geom: ConvGeometry,
    relu: bool,
    residual: bool,
    seed: u64,
}

fn cases() -> impl Strategy<Value = Case> {
    (
        1usize..=12, // groups
        1usize..=9,  // channels per group in
        // Channels per group out: around 4, 8, 16, and over one weight panel (32).
        prop_oneof![3 => 1usize..=20, 1 => 30usize..=70],
        prop::sample::select(vec![1usize, 3, 7]),
        1usize..=2,  // stride
        1usize..=11, // height
        1usize..=11, // width
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_filter_map(
            "kernel larger than the padded image",
            |(groups, ci, co, k, s, h, w, relu, residual, seed)| {
                let geom = ConvGeometry {
                    in_h: h,
                    in_w: w,
                    in_c: groups * ci,
                    out_c: groups * co,
                    groups,
                    kernel: k,
                    stride: s,
                    pad: k / 2,
                };
                geom.check().ok().map(|_| Case {
                    family: crate::dispatch::Family::I16Pairs,
                    geom,
                    relu,
                    residual,
                    seed,
                })
            },
        )
}

fn build(case: &Case) -> (PackedConv, Vec<i8>, Vec<u8>, Option<Vec<u8>>) {
    let g = case.geom.clone();
    let w: Vec<i8> = bytes(g.out_c * g.cpg_in() * g.kernel * g.kernel, case.seed)
        .into_iter()
        .map(|b| (b as i8).max(-127))
        .collect();
    let x = bytes(g.in_h * g.in_w * g.in_c, case.seed ^ 1);
    let bias: Vec<i32> = bytes(g.out_c, case.seed ^ 2)
        .iter()
        .map(|&b| (b as i32 - 128) * 37)
        .collect();
    let multiplier: Vec<f32> = bytes(g.out_c, case.seed ^ 3)
        .iter()
        .map(|&b| 1e-4 + b as f32 * 2e-5)
        .collect();
    let out_zero = (case.seed % 256) as i32;
    let requant = LayerRequant::new(
        (case.seed >> 8) as i32 & 255,
        multiplier,
        out_zero,
        (if case.relu { out_zero } else { 0 }, 255),
        case.residual
            .then_some((((case.seed >> 16) & 255) as i32, 0.37)),
    );
    let conv = PackedConv::new(g, &w, bias, requant, case.family);
    let residual = case.residual.then(|| bytes(conv.out_len(), case.seed ^ 4));
    (conv, w, x, residual)
}

proptest! {
    #![proptest_config(crate::proptest_seed::config(64))]

    #[test]
    fn every_kernel_equals_the_definition(case in cases()) {
        for isa in Isa::available() {
            let case = Case { family: isa.family(), ..case.clone() };
            let (conv, w, x, residual) = build(&case);
            let want = reference(&conv, &w, &x, residual.as_deref());
            let mut out = vec![CANARY; conv.out_len()];
            conv.run(isa, &x, residual.as_deref(), &mut out);
            prop_assert_eq!(&out, &want, "{} kernel", isa.name());
            for threads in [2, 3] {
                let mut out = vec![CANARY; conv.out_len()];
                conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
            }
        }
    }
}

/// The convolutions of the direct kernels: grouped, in the group sizes they take (4, 8,
/// multiples of 16 channels, wider outputs than inputs) and some they leave to the gather
/// path (12), and dense ones with few input channels (the stem's 3, padded to 4).
fn direct_cases() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![
            (4usize, 4usize, 1usize),
            (8, 8, 1),
            (12, 12, 1),
            (16, 16, 1),
            (32, 32, 1),
            (4, 16, 1),
            (3, 16, 0),
            (1, 32, 0),
            (5, 16, 0),
            (8, 16, 0),
            (3, 8, 0),
            (1, 4, 0),
        ]), // channels per group in and out; 0: dense
        1usize..=4, // groups (x 2 below), or output vectors when dense
        prop::sample::select(vec![1usize, 3, 5, 7]),
        1usize..=2,  // stride
        1usize..=13, // height
        1usize..=13, // width
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_filter_map(
            "kernel larger than the padded image",
            |((cin, cout, grouped), n, k, s, h, w, relu, residual, seed)| {
                let groups = if grouped == 1 { 2 * n } else { 1 };
                let cout = if grouped == 1 { cout } else { cout * n };
                let geom = ConvGeometry {
                    in_h: h,
                    in_w: w,
                    in_c: groups * cin,
                    out_c: groups * cout,
                    groups,
                    kernel: k,
                    stride: s,
                    pad: k / 2,
                };
                geom.check().ok().map(|_| Case {
                    family: crate::dispatch::Family::U8Quads,
                    geom,
                    relu,
                    residual,
                    seed,
                })
            },
        )
}

proptest! {
    #![proptest_config(crate::proptest_seed::config(48))]

    #[test]
    fn direct_convolutions_equal_the_definition_on_every_kernel(case in direct_cases()) {
        for isa in Isa::available() {
            let case = Case { family: isa.family(), ..case.clone() };
            let (conv, w, x, residual) = build(&case);
            let want = reference(&conv, &w, &x, residual.as_deref());
            for threads in [1, 3] {
                let mut out = vec![CANARY; conv.out_len()];
                conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
            }
        }
    }

    /// Dense pointwise convolutions of whole weight panels, those that the kernels which
    /// requantize their own tiles take (stride 1 in place, stride 2 gathered).
    #[test]
    fn pointwise_convolutions_equal_the_definition_on_every_kernel(
        in_c in prop::sample::select(vec![4usize, 8, 12, 64, 100, 256]),
        panels in 1usize..=3,
        stride in 1usize..=2,
        // Up to 50 output pixels at stride 2: more than one block of gathered rows.
        h in 1usize..=20,
        w in 1usize..=9,
        relu in any::<bool>(),
        residual in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let geom = ConvGeometry {
            in_h: h,
            in_w: w,
            in_c,
            out_c: PANEL * panels,
            groups: 1,
            kernel: 1,
            stride,
            pad: 0,
        };
        for isa in Isa::available() {
            let family = isa.family();
            let case = Case { family, geom: geom.clone(), relu, residual, seed };
            let (conv, w, x, residual) = build(&case);
            let want = reference(&conv, &w, &x, residual.as_deref());
            for threads in [1, 2] {
                let mut out = vec![CANARY; conv.out_len()];
                conv.run_threads(isa, &x, residual.as_deref(), &mut out, threads);
                prop_assert_eq!(&out, &want, "{} kernel, {} threads", isa.name(), threads);
            }
        }
    }
}

#[test]
fn resnext_layers_with_a_window_take_the_direct_kernels() {
    let geom = |in_c: usize, groups| ConvGeometry {
        in_h: 56,
        in_w: 56,
        in_c,
        out_c: in_c,
        groups,
        kernel: 3,
        stride: 1,
        pad: 1,
    };
    // 32x4d's four stages and 32x8d's first; a pointwise or a 12-channel group does not.
    for (c, groups) in [(128, 32), (256, 32), (512, 32), (1024, 32), (256, 32)] {
        assert!(geom(c, groups).direct_shape().is_some(), "{c}/{groups}");
    }
    assert!(geom(96, 8).direct_shape().is_none());
    // Dense: a 3x3 takes them, a pointwise stays with the dot kernels.
    assert!(geom(256, 1).direct_shape().is_some());
    let pointwise = ConvGeometry {
        kernel: 1,
        pad: 0,
        ..geom(256, 1)
    };
    assert!(pointwise.direct_shape().is_none());
    // The stem: 3 channels padded to 4, 64 outputs.
    let stem = ConvGeometry {
        in_h: 224,
        in_w: 224,
        in_c: 3,
        out_c: 64,
        groups: 1,
        kernel: 7,
        stride: 2,
        pad: 3,
    };
    let s = stem
        .direct_shape()
        .expect("the stem takes the direct kernels");
    assert_eq!((s.in_c, s.cin, s.cout), (4, 4, 64));
}

#[test]
fn input_quantization_rounds_ties_to_even_saturates_and_interleaves() {
    // Two channels of three pixels, scale 0.5 (recip 2): 0.25 * 2 = 0.5 -> 0, 0.75 * 2 =
    // 1.5 -> 2, and values beyond the byte range saturate.
    let x = [0.25f32, 0.75, -100.0, 1000.0, -0.25, f32::NAN];
    for threads in 1..=3 {
        let mut out = [0u8; 6];
        quantize_to_nhwc(&x, (2, 3), 2.0, 10, &mut out, threads);
        assert_eq!(out, [10, 255, 12, 10, 0, 10], "{threads} threads");
    }
}

#[test]
fn input_quantization_interleaves_across_blocks_and_threads() {
    // 3 channels of 150 pixels: blocks of 64 values and a partial last one per thread.
    let (channels, pixels) = (3, 150);
    let x: Vec<f32> = (0..channels * pixels)
        .map(|i| (i as f32 * 0.37).sin() * 140.0)
        .collect();
    let want: Vec<u8> = (0..channels * pixels)
        .map(|i| {
            let v = x[(i % channels) * pixels + i / channels];
            (round_half_even(v * 0.9) + 7).clamp(0, 255) as u8
        })
        .collect();
    for threads in 1..=3 {
        let mut out = vec![0u8; channels * pixels];
        quantize_to_nhwc(&x, (channels, pixels), 0.9, 7, &mut out, threads);
        assert_eq!(out, want, "{threads} threads");
    }
}

#[test]
fn max_pool_takes_the_largest_of_each_window_on_any_thread_count() {
    let (h, w, c) = (7, 6, 3);
    let x = bytes(h * w * c, 9);
    let (k, s, p) = (3, 2, 1);
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut want = vec![0u8; oh * ow * c];
    for (i, v) in want.iter_mut().enumerate() {
        let (oy, ox, ch) = (i / c / ow, i / c % ow, i % c);
        for iy in (oy * s).saturating_sub(p)..(oy * s + k - p).min(h) {
            for ix in (ox * s).saturating_sub(p)..(ox * s + k - p).min(w) {
                *v = (*v).max(x[(iy * w + ix) * c + ch]);
            }
        }
    }
    for threads in 1..=3 {
        let mut out = vec![CANARY; want.len()];
        max_pool_nhwc(&x, (h, w, c), k, s, p, &mut out, threads);
        assert_eq!(out, want, "{threads} threads");
    }
}

#[test]
fn average_pool_dequantizes_averages_and_requantizes() {
    // Channel 0: (10 + 13 - 2 * 4) * 0.5 / 2 = 3.75 -> / 0.25 = 15 -> + 1 = 16.
    // Channel 1: (4 + 5 - 8) * 0.5 / 2 = 0.25 -> 1 -> 2. An out scale of 0.5 makes ties,
    // rounded to even: 7.5 -> 8 -> 9 and 0.5 -> 0 -> 1.
    let x = [10u8, 4, 13, 5];
    let mut out = [0u8; 2];
    average_pool_nhwc(&x, (2, 2), (0.5, 4), (0.25, 1), &mut out);
    assert_eq!(out, [16, 2]);
    average_pool_nhwc(&x, (2, 2), (0.5, 4), (0.5, 1), &mut out);
    assert_eq!(out, [9, 1]);
}

#[test]
fn resnext50_shapes_are_consistent() {
    // The stem, a grouped 3x3/2 and a pointwise 1x1 of resnext50_32x4d.
    for (geom, macs) in [
        (
            ConvGeometry {
                in_h: 224,
                in_w: 224,
                in_c: 3,
                out_c: 64,
                groups: 1,
                kernel: 7,
                stride: 2,
                pad: 3,
            },
            118_013_952,
        ),
        (
            ConvGeometry {
                in_h: 56,
                in_w: 56,
                in_c: 256,
                out_c: 256,
                groups: 32,
                kernel: 3,
                stride: 2,
                pad: 1,
            },
            14_450_688,
        ),
        (
            ConvGeometry {
                in_h: 7,
                in_w: 7,
                in_c: 1024,
                out_c: 2048,
                groups: 1,
                kernel: 1,
                stride: 1,
                pad: 0,
            },
            102_760_448,
        ),
    ] {
        assert!(geom.check().is_ok());
        assert_eq!(geom.macs(), macs);
    }
}

proptest! {
    #![proptest_config(crate::proptest_seed::config(32))]

    /// The weight sums a packed layer hands the kernels are those of the weights each call
    /// gets, in both layouts, and `has_min` says whether a weight is -128.
    #[test]
    fn packed_weight_sums_are_those_of_each_calls_weights(
        case in prop_oneof![cases(), direct_cases()],
    ) {
        let (conv, w, _, _) = build(&case);
        // Now and then a -128 somewhere.
        let mut w = w;
        if case.seed % 2 == 0 {
            let at = (case.seed as usize / 2) % w.len();
            w[at] = i8::MIN;
        }
        let g = conv.geom.clone();
        let family = crate::dispatch::Family::U8Quads;
        let packed = PackedWeights::pack(&g, &w, &conv.bias, conv.requant.in_zero, family);
        let PackedWeights::U8 { w: pw, weight_sums, direct, bias } = &packed else {
            panic!("u8 weights");
        };
        prop_assert_eq!(weight_sums.has_min, w.contains(&i8::MIN));
        // Narrow: every channel's accumulator within +-2^22 (its weights in ONNX order, the
        // bias the kernels add).
        let per_channel = w.len() / g.out_c;
        let narrow = w.chunks_exact(per_channel).zip(bias).all(|(c, &b)| {
            let pos: i64 = c.iter().map(|&v| v.max(0) as i64).sum();
            let neg: i64 = c.iter().map(|&v| v.min(0) as i64).sum();
            crate::requant::narrow_accumulator(pos, neg, b)
        });
        prop_assert_eq!(weight_sums.narrow, narrow);
        let (cout, dq) = (g.cpg_out(), g.depth_bytes());
        for grp in 0..g.groups {
            let group = &pw[grp * cout * dq..][..cout * dq];
            let want = crate::signatures::dot_weight_sums(dq, group, cout);
            prop_assert_eq!(&weight_sums.of(grp * cout..(grp + 1) * cout).sums, &&want[..]);
        }
        if let (Some(dw), Some(ds)) = (direct, g.direct_shape()) {
            prop_assert_eq!(&weight_sums.sums, &ds.weight_sums(dw));
        }
    }
}
