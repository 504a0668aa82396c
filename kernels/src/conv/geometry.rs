//! The shape of a convolution on one NHWC image, and what follows from it (output size, depth
//! per group, the direct kernels' view of it).

use crate::signatures::DirectShape;

/// The largest kernel, stride or padding a native convolution accepts.
pub const MAX_WINDOW: usize = 64;

/// Shape of a 2-D convolution on one NHWC image.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_c: usize,
    pub groups: usize,
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad - self.kernel) / self.stride + 1
    }
    pub fn cpg_in(&self) -> usize {
        self.in_c / self.groups
    }
    pub fn cpg_out(&self) -> usize {
        self.out_c / self.groups
    }
    /// Taps x input channels of one group.
    pub fn depth(&self) -> usize {
        self.kernel * self.kernel * self.cpg_in()
    }
    /// [`Self::depth`] rounded up to the kernels' pair width.
    pub fn depth_padded(&self) -> usize {
        self.depth().div_ceil(2) * 2
    }
    /// The bytes of one u8 patch row: [`Self::depth`] rounded up to whole quads.
    pub fn depth_bytes(&self) -> usize {
        self.depth().div_ceil(4) * 4
    }
    /// Multiply-accumulates of one image.
    pub fn macs(&self) -> usize {
        self.out_h() * self.out_w() * self.out_c * self.depth()
    }
    /// The shape the [`DirectU8`] kernels take this convolution in, if they do: a grouped
    /// convolution with 4, 8 or a multiple of 16 channels per group, or a dense one with a
    /// window (the stem: its 3 input channels padded to 4 in the padded input). Pointwise dense
    /// convolutions stay with the dot kernels, which read their rows in place.
    pub fn direct_shape(&self) -> Option<DirectShape> {
        let (cin, cout) = (self.cpg_in(), self.cpg_out());
        let in_c = if cin.is_multiple_of(4) {
            self.in_c
        } else if self.groups == 1 {
            cin.div_ceil(4) * 4
        } else {
            return None;
        };
        let s = DirectShape {
            in_c,
            out_c: self.out_c,
            cin: cin.div_ceil(4) * 4,
            cout,
            kernel: self.kernel,
            stride: self.stride,
            row: (self.in_w + 2 * self.pad) * in_c,
        };
        (s.supported() && (self.groups > 1 || self.kernel > 1)).then_some(s)
    }

    /// Whether the geometry makes sense (and its arithmetic cannot overflow): groups divide the
    /// channels, kernel, stride and padding are at most [`MAX_WINDOW`] and the window fits.
    pub fn check(&self) -> Result<(), String> {
        if self.groups == 0
            || !self.in_c.is_multiple_of(self.groups)
            || !self.out_c.is_multiple_of(self.groups)
        {
            return Err(format!(
                "{} groups do not divide {} -> {} channels",
                self.groups, self.in_c, self.out_c
            ));
        }
        // Bounds before arithmetic: the attributes come from a file.
        let small = |v: usize| v <= MAX_WINDOW;
        if !(small(self.kernel) && small(self.stride) && small(self.pad))
            || self.kernel == 0
            || self.stride == 0
            || self.in_h + 2 * self.pad < self.kernel
            || self.in_w + 2 * self.pad < self.kernel
        {
            return Err(format!(
                "kernel {} stride {} pad {} on {}x{}",
                self.kernel, self.stride, self.pad, self.in_h, self.in_w
            ));
        }
        Ok(())
    }
}
