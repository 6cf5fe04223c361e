//! The float types the CPU kernels are generic over (f32, f64), and dispatch on a dtype.

use std::ops::{Add, Div, Mul, Neg, Sub};

use candle_core::WithDType;

/// The float types the CPU kernels support.
pub(crate) trait Real:
    WithDType
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    fn exp(self) -> Self;
    fn fmax(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn fmax(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
        }
    };
}
real!(f32);
real!(f64);

/// Call the generic `$f::<T>(args)` with `T` the [`Real`] type of `$dtype`.
macro_rules! dispatch_dtype {
    ($dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            d => candle_core::bail!("cpu kernel: unsupported dtype {d:?}"),
        }
    };
}
pub(crate) use dispatch_dtype;
