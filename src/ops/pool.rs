//! `avg_pool2d`, `max_pool2d`, adaptive pooling: the `CudaTensor` methods. Checks and shapes
//! come from ops::window / ops::adaptive; whole-plane windows go to the reduction (ops::reduce).

use crate::cpu;
use crate::cuda;
use crate::error::{invalid_arg, Result};
use crate::ops::adaptive::{plan_adaptive_pool, AdaptiveKind};
use crate::ops::dispatch::{cpu_float_call, run_op};
use crate::ops::reduce::global_reduce;
use crate::ops::reduce_geometry::ReduceFinish;
use crate::ops::window::{plan_window_pool, AvgPool2d, MaxPool2d};
use crate::tensor::{layout_strides, CudaTensor};

/// The input's shape with the plane replaced by the output plane.
pub(crate) fn pooled_shape(shape: &[usize], out_h: usize, out_w: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    let r = s.len();
    s[r - 2] = out_h;
    s[r - 1] = out_w;
    s
}

impl CudaTensor {
    /// `torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode,
    /// count_include_pad, divisor_override)`. A window covering the whole plane (the first GAP
    /// formulation) runs as a reduction.
    pub fn avg_pool2d(&self, spec: &AvgPool2d) -> Result<CudaTensor> {
        self.check_float("avg_pool2d")?;
        if spec.divisor_override == Some(0) {
            invalid_arg!("avg_pool2d: divisor must be not zero");
        }
        let g = plan_window_pool(
            "avg_pool2d",
            self.shape(),
            spec.kernel,
            spec.stride,
            spec.padding,
            [1, 1],
            spec.ceil_mode,
        )?;
        let layout = self.pool_layout();
        let out_shape = pooled_shape(self.shape(), g.out_h, g.out_w);
        if g.is_global() {
            let divisor = spec.divisor_override.unwrap_or((g.h * g.w) as i64) as f64;
            return global_reduce(
                self,
                layout,
                [g.n, g.c, g.h * g.w],
                ReduceFinish::DivideBy(divisor),
                out_shape,
            );
        }
        let x = self.dense_in(layout)?;
        let rule = spec.rule();
        let dtype = self.dtype();
        let out = run_op(
            &[&x],
            dtype,
            g.output_len(),
            None,
            |inputs, y, _| {
                cpu_float_call!(dtype, inputs[0], y, |T, xs, ys| cpu::window::avg_pool2d::<T>(
                    &g, rule, layout, xs, ys
                ))
            },
            |limits| cuda::window::plan_avg_pool2d(&g, rule, layout, dtype, limits),
        )?;
        let strides = layout_strides(&out_shape, layout);
        Ok(CudaTensor::from_parts(self.device().clone(), out.values, out_shape, strides))
    }

    /// `torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)`.
    pub fn max_pool2d(&self, spec: &MaxPool2d) -> Result<CudaTensor> {
        Ok(self.max_pool2d_impl(spec, false)?.0)
    }

    /// `max_pool2d(..., return_indices=True)`: values and I64 indices `h * W + w` within each
    /// plane, both in the input's layout.
    pub fn max_pool2d_with_indices(&self, spec: &MaxPool2d) -> Result<(CudaTensor, CudaTensor)> {
        let (values, indices) = self.max_pool2d_impl(spec, true)?;
        Ok((values, indices.expect("indices were requested")))
    }

    fn max_pool2d_impl(
        &self,
        spec: &MaxPool2d,
        with_indices: bool,
    ) -> Result<(CudaTensor, Option<CudaTensor>)> {
        self.check_float("max_pool2d")?;
        let g = plan_window_pool(
            "max_pool2d",
            self.shape(),
            spec.kernel,
            spec.stride,
            spec.padding,
            spec.dilation,
            spec.ceil_mode,
        )?;
        let layout = self.pool_layout();
        let x = self.dense_in(layout)?;
        let dtype = self.dtype();
        let out = run_op(
            &[&x],
            dtype,
            g.output_len(),
            with_indices.then_some(g.output_len()),
            |inputs, y, idx| {
                cpu_float_call!(dtype, inputs[0], y, |T, xs, ys| cpu::window::max_pool2d::<T>(
                    &g, layout, xs, ys, idx
                ))
            },
            |limits| cuda::window::plan_max_pool2d(&g, layout, dtype, with_indices, limits),
        )?;
        Ok(self.wrap_pooled(out, pooled_shape(self.shape(), g.out_h, g.out_w), layout))
    }

    /// `torch.nn.functional.adaptive_avg_pool2d(x, [oh, ow])`. Output [1, 1] (the second GAP
    /// formulation) runs as a reduction, as PyTorch routes it to `mean`.
    pub fn adaptive_avg_pool2d(&self, output_size: [usize; 2]) -> Result<CudaTensor> {
        self.check_float("adaptive_avg_pool2d")?;
        let g = plan_adaptive_pool(AdaptiveKind::Avg, self.shape(), output_size)?;
        let layout = self.pool_layout();
        let out_shape = pooled_shape(self.shape(), g.out_h, g.out_w);
        if output_size == [1, 1] {
            let finish = ReduceFinish::DivideBy((g.h * g.w) as f64);
            return global_reduce(self, layout, [g.n, g.c, g.h * g.w], finish, out_shape);
        }
        let x = self.dense_in(layout)?;
        let dtype = self.dtype();
        let out = run_op(
            &[&x],
            dtype,
            g.output_len(),
            None,
            |inputs, y, _| {
                cpu_float_call!(dtype, inputs[0], y, |T, xs, ys| cpu::adaptive::adaptive_avg_pool2d::<T>(
                    &g, layout, xs, ys
                ))
            },
            |limits| cuda::adaptive::plan_adaptive_avg_pool2d(&g, layout, dtype, limits),
        )?;
        let strides = layout_strides(&out_shape, layout);
        Ok(CudaTensor::from_parts(self.device().clone(), out.values, out_shape, strides))
    }

    /// `torch.nn.functional.adaptive_max_pool2d(x, [oh, ow])`.
    pub fn adaptive_max_pool2d(&self, output_size: [usize; 2]) -> Result<CudaTensor> {
        Ok(self.adaptive_max_impl(output_size, false)?.0)
    }

    /// `adaptive_max_pool2d(..., return_indices=True)`.
    pub fn adaptive_max_pool2d_with_indices(
        &self,
        output_size: [usize; 2],
    ) -> Result<(CudaTensor, CudaTensor)> {
        let (values, indices) = self.adaptive_max_impl(output_size, true)?;
        Ok((values, indices.expect("indices were requested")))
    }

    fn adaptive_max_impl(
        &self,
        output_size: [usize; 2],
        with_indices: bool,
    ) -> Result<(CudaTensor, Option<CudaTensor>)> {
        self.check_float("adaptive_max_pool2d")?;
        let g = plan_adaptive_pool(AdaptiveKind::Max, self.shape(), output_size)?;
        let layout = self.pool_layout();
        let x = self.dense_in(layout)?;
        let dtype = self.dtype();
        let out = run_op(
            &[&x],
            dtype,
            g.output_len(),
            with_indices.then_some(g.output_len()),
            |inputs, y, idx| {
                cpu_float_call!(dtype, inputs[0], y, |T, xs, ys| cpu::adaptive::adaptive_max_pool2d::<T>(
                    &g, layout, xs, ys, idx
                ))
            },
            |limits| cuda::adaptive::plan_adaptive_max_pool2d(&g, layout, dtype, with_indices, limits),
        )?;
        Ok(self.wrap_pooled(out, pooled_shape(self.shape(), g.out_h, g.out_w), layout))
    }

    fn wrap_pooled(
        &self,
        out: crate::ops::dispatch::OpOutputs,
        shape: Vec<usize>,
        layout: crate::ops::Layout,
    ) -> (CudaTensor, Option<CudaTensor>) {
        let strides = layout_strides(&shape, layout);
        let values =
            CudaTensor::from_parts(self.device().clone(), out.values, shape.clone(), strides.clone());
        let indices = out.indices.map(|i| CudaTensor::from_parts(self.device().clone(), i, shape, strides));
        (values, indices)
    }
}
