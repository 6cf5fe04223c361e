//! Device memory: how much a CUDA device has free, and peak memory of this process — on CUDA the
//! high-water mark of candle's allocations (they come from the device's stream-ordered memory
//! pool), on the CPU the peak resident set size.
//!
//! All functions answer `None` where the platform cannot tell; they never fail a run.

use candle_core::Device;

/// `(free, total)` bytes of a CUDA device; `None` on the CPU.
pub fn cuda_free_total(device: &Device) -> Option<(u64, u64)> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let ctx = d.cuda_stream().context().clone();
        return ctx
            .mem_get_info()
            .ok()
            .map(|(free, total)| (free as u64, total as u64));
    }
    let _ = device;
    None
}

/// Peak bytes since the last [`reset_peak`]: on CUDA the memory pool's used high-water mark, on
/// the CPU the process's peak RSS (Linux).
pub fn peak_bytes(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::sys::CUmemPool_attribute as A;
        return cuda::pool_attr(d, A::CU_MEMPOOL_ATTR_USED_MEM_HIGH);
    }
    let _ = device;
    rss_field("VmHWM:")
}

/// [`peak_bytes`] in MiB, 0 where unknown (for reports).
pub fn peak_mib(device: &Device) -> f64 {
    peak_bytes(device).map_or(0.0, |b| b as f64 / (1u64 << 20) as f64)
}

/// Start a new peak measurement (CUDA: the pool's high-water marks; CPU: the kernel's peak RSS,
/// via /proc/self/clear_refs).
pub fn reset_peak(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::sys::CUmemPool_attribute as A;
        cuda::set_pool_attr(d, A::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0);
        cuda::set_pool_attr(d, A::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0);
        return;
    }
    let _ = device;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Let the CUDA memory pool keep freed memory for reuse instead of handing it back to the driver
/// at every synchronisation (the pool's release threshold; PyTorch's caching allocator behaves
/// the same way). Without it, each training step's activations are re-allocated from the
/// driver. No effect on the CPU.
pub fn keep_freed_memory(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::sys::CUmemPool_attribute as A;
        cuda::set_pool_attr(d, A::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, u64::MAX);
    }
    let _ = device;
}

/// Bytes a KV pool may take on a CUDA device so that this process's use stays within `fraction`
/// of the device's total memory (vLLM's `gpu_memory_utilization`): `fraction·total − used`,
/// where `used = total − free` counts everything already allocated (weights, optimizer state,
/// other processes). `None` when that leaves nothing.
pub fn budget_from_fraction(fraction: f64, free: u64, total: u64) -> Option<u64> {
    let used = total.saturating_sub(free);
    let allowed = (fraction.clamp(0.0, 1.0) * total as f64) as u64;
    let b = allowed.saturating_sub(used).min(free);
    (b > 0).then_some(b)
}

fn rss_field(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::sys;
    use candle_core::CudaDevice;

    fn default_pool(d: &CudaDevice) -> Option<sys::CUmemoryPool> {
        let ctx = d.cuda_stream().context().clone();
        ctx.bind_to_thread().ok()?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: a valid out-pointer and the context's own device.
        unsafe { sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }
            .result()
            .ok()?;
        Some(pool)
    }

    pub(super) fn pool_attr(d: &CudaDevice, attr: sys::CUmemPool_attribute) -> Option<u64> {
        let pool = default_pool(d)?;
        let mut v: u64 = 0;
        // SAFETY: these pool attributes are 64-bit values (cuuint64_t).
        unsafe {
            sys::cuMemPoolGetAttribute(pool, attr, &mut v as *mut u64 as *mut std::ffi::c_void)
        }
        .result()
        .ok()?;
        Some(v)
    }

    pub(super) fn set_pool_attr(d: &CudaDevice, attr: sys::CUmemPool_attribute, value: u64) {
        let Some(pool) = default_pool(d) else { return };
        let mut v = value;
        // SAFETY: as above; the driver copies the value.
        let _ = unsafe {
            sys::cuMemPoolSetAttribute(pool, attr, &mut v as *mut u64 as *mut std::ffi::c_void)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_fraction_of_total_minus_what_is_used() {
        let gib = 1u64 << 30;
        // 80 GiB card, 10 GiB used: 0.9 leaves 62 GiB.
        assert_eq!(
            budget_from_fraction(0.9, 70 * gib, 80 * gib),
            Some(62 * gib)
        );
        // Already above the fraction: no room.
        assert_eq!(budget_from_fraction(0.1, 70 * gib, 80 * gib), None);
        // Never more than what is free (another process holds memory).
        assert_eq!(budget_from_fraction(1.0, 5 * gib, 80 * gib), Some(5 * gib));
    }

    #[test]
    fn cpu_peak_is_reported() {
        let d = Device::Cpu;
        assert_eq!(cuda_free_total(&d), None);
        let peak = peak_bytes(&d).expect("peak RSS on Linux");
        assert!(peak > 0, "peak {peak}");
        // The high-water mark only grows (nothing here resets it).
        assert!(peak_mib(&d) >= peak as f64 / (1u64 << 20) as f64);
    }
}
