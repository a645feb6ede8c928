//! Runs an op on the input's device: the CPU kernel on host data, or a launch plan on the
//! GPU / emulator. Ops call this once they have validated their arguments.

use crate::cuda::plan::OpPlan;
use crate::cuda::DeviceLimits;
use crate::dtype::{DType, HostData};
use crate::error::Result;
use crate::host_cache;
use crate::storage::Storage;
use crate::tensor::CudaTensor;

/// The outputs of one op: values, and indices for the max-pooling variants that return them.
pub(crate) struct OpOutputs {
    pub values: Storage,
    pub indices: Option<Storage>,
}

/// Runs an op whose inputs are `inputs` (all on the first one's device, already dense in the
/// layout the op expects) and whose output has `out_len` elements of `out_dtype`, plus a
/// second, i64 output of `i64_len` elements when given (max-pool indices, or a backward
/// kernel's one-element error flag). The CPU kernel must write every element of its outputs:
/// they may be buffers reused from the [`host_cache`], holding an earlier tensor's values
/// (`tests/output_reuse.rs` checks every op family for this).
pub(crate) fn run_op(
    inputs: &[&CudaTensor],
    out_dtype: DType,
    out_len: usize,
    i64_len: Option<usize>,
    cpu: impl FnOnce(&[&Storage], &mut HostData, Option<&mut [i64]>) -> Result<()>,
    plan: impl FnOnce(&DeviceLimits) -> Result<OpPlan>,
) -> Result<OpOutputs> {
    let storages: Vec<&Storage> = inputs.iter().map(|t| t.storage()).collect();
    match inputs[0].device().executor() {
        None => {
            let mut values = host_cache::output(out_dtype, out_len)?;
            let mut indices = match i64_len {
                Some(len) => match host_cache::output(DType::I64, len)? {
                    HostData::I64(v) => Some(v),
                    _ => unreachable!("an I64 output is I64"),
                },
                None => None,
            };
            if out_len > 0 {
                crate::cpu::threads::join_calling_thread();
                cpu(&storages, &mut values, indices.as_deref_mut())?;
            }
            Ok(OpOutputs {
                values: Storage::Host(values),
                indices: indices.map(|v| Storage::Host(HostData::I64(v))),
            })
        }
        Some(exec) => {
            let plan = plan(&exec.limits())?;
            let mut values = exec.alloc_output(&plan, 0, out_dtype, out_len)?;
            let indices = if let Some(len) = i64_len {
                let mut indices = exec.alloc_output(&plan, 1, DType::I64, len)?;
                exec.execute(&plan, &storages, &mut [&mut values, &mut indices])?;
                Some(indices)
            } else {
                exec.execute(&plan, &storages, &mut [&mut values])?;
                None
            };
            Ok(OpOutputs { values, indices })
        }
    }
}

/// Calls a CPU kernel with the typed host slices of a float op: `$x` the input storage, `$y`
/// the output `HostData`; binds `$T` to the element type.
macro_rules! cpu_float_call {
    ($dtype:expr, $x:expr, $y:expr, |$T:ident, $xs:ident, $ys:ident| $body:expr) => {
        $crate::dtype::with_float_type!($dtype, $T => {
            let $xs = $crate::tensor::host_slice::<$T>($x)?;
            let $ys = <$T as $crate::dtype::Element>::host_slice_mut($y)
                .ok_or_else(|| $crate::error::Error::DType("output dtype mismatch".into()))?;
            $body;
            Ok(())
        }, Err($crate::error::Error::DType("expected a float tensor".into())))
    };
}
pub(crate) use cpu_float_call;
