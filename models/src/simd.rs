//! Hot loops compiled for the widest vector instructions the CPU has. The crate is built for
//! baseline x86-64 (SSE2), so a loop the compiler could vectorise with AVX2 or AVX-512 runs
//! 4-wide at best; [`vectorized`] runs a [`HotLoop`] inside a function compiled with those
//! features when the CPU has them (checked once at run time). `HotLoop::run` is
//! `#[inline(always)]`, so its body is compiled there, for that instruction set (a closure
//! would not do: the compiler is free to keep it out of line, compiled for the baseline).
//!
//! Numerics do not change: Rust never contracts `a·b + c` into an FMA on its own, and vector
//! add, multiply, divide and square root are the same IEEE operations as the scalar ones, so a
//! loop gives the same bits in every version.
//!
//! Owns the CPU feature check and the sixteen-lane reductions the loops share. Must not know
//! what the loops compute.

/// The vector instruction sets [`vectorized`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// The widest level this CPU supports (detected once).
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    if std::env::var_os("RLVR_NO_AVX").is_some() {
        return Level::Baseline;
    }
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx2")
    {
        Level::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Level::Avx2
    } else {
        Level::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// Lanes of the sixteen-lane loops (one AVX-512 register of f32, two AVX2 ones): a loop that
/// keeps `LANES` independent partial results vectorises without reassociation, and
/// [`lane_sum`] / [`lane_max`] combine them in a fixed order, so every CPU gives the same bits.
pub const LANES: usize = 16;

/// The lanes summed pairwise in a fixed order.
#[inline(always)]
pub fn lane_sum<T: Copy + Default + std::ops::Add<Output = T>>(lanes: &[T; LANES]) -> T {
    let mut half = [T::default(); LANES / 2];
    for l in 0..LANES / 2 {
        half[l] = lanes[l] + lanes[l + LANES / 2];
    }
    ((half[0] + half[4]) + (half[1] + half[5])) + ((half[2] + half[6]) + (half[3] + half[7]))
}

/// The largest value of `xs` in sixteen lanes (NaN ignored, as `f32::max` does; −inf for an
/// empty slice).
#[inline(always)]
pub fn lane_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            lanes[l] = if chunk[l] > lanes[l] {
                chunk[l]
            } else {
                lanes[l]
            };
        }
    }
    rest.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// A loop for [`vectorized`]. Implement `run` with `#[inline(always)]` (and keep what it calls
/// `#[inline(always)]`), so that it is compiled inside the feature-enabled function.
pub trait HotLoop {
    type Output;
    fn run(self) -> Self::Output;
}

/// Run `work` compiled for the widest vector instructions this CPU has (see the module docs).
/// `RLVR_NO_AVX=1` forces the baseline build, e.g. to compare.
#[inline]
pub fn vectorized<L: HotLoop>(work: L) -> L::Output {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: the CPU has these features (checked by `level`).
        Level::Avx512 => return unsafe { avx512(work) },
        // SAFETY: as above.
        Level::Avx2 => return unsafe { avx2(work) },
        Level::Baseline => {}
    }
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn avx512<L: HotLoop>(work: L) -> L::Output {
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2<L: HotLoop>(work: L) -> L::Output {
    work.run()
}
