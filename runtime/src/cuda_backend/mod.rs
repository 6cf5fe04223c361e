//! Paged KV cache on a CUDA device, with the kernels of `mistralrs-paged-attn` 0.8.1.
//!
//! Storage, per layer, in the model dtype (f32, f16 or bf16), in the layout the kernels expect
//! (`x` = 16 bytes / element size: 4 for f32, 8 for f16/bf16):
//! - keys   `[num_blocks, n_kv_heads, head_dim / x, block_size, x]`
//! - values `[num_blocks, n_kv_heads, head_dim, block_size]`
//!
//! One step (a packed row of `T` tokens, see [`StepLayout`]) per layer:
//! 1. `reshape_and_cache` writes the step's k, v at each token's slot (i64 slot mapping), so the
//!    tokens of a prefill chunk see each other;
//! 2. decode tokens (a sequence with exactly one token in the step) are attended in one launch of
//!    `paged_attention` (query `[n, n_heads, head_dim]`, u32 block tables `[n, max_blocks]`, u32
//!    context lengths `pos + 1`);
//! 3. prefill chunks (a sequence with several tokens in the step) gather their sequence's keys and
//!    values for positions `0..=max_pos` from the cache (`index_select` of whole blocks) and run
//!    causal masked attention with candle ops ([`grouped_attention`]).
//!
//! With the `flash-attn` feature, a step's prefill chunks in bf16/f16 instead run as one
//! `candle-flash-attn` varlen launch over the gathered keys and values (causal, aligned to the
//! end of each chunk's context), when the head dim has a flash kernel (`flash`). Which token
//! takes which path, and the index tensors for it, are planned once per step (`plan`).
//!
//! The decode kernel exists only for head dims 64, 80, 96, 112, 128, 192, 256, 512 and block
//! sizes 8, 16, 32; with any other shape decode tokens take the candle path as 1-token chunks.
//! Copy-on-write copies a block with plain tensor copies: the crate's `copy_blocks` hands host
//! pointers (a `Vec` of per-layer cache pointers and the block mapping) to its kernel, which
//! dereferences them on the device.
//!
//! Owns the KV storage on the device and the attention over it; knows nothing of the engine,
//! the scheduler or sampling.

use candle_core::{DType, Device, Result, Tensor};
use rlvr_models::attention::grouped_attention;
use rlvr_models::{Attention, ModelConfig};

use crate::paged_attention::{KvBackend, StepLayout};
use plan::{AttentionPlan, ChunkPlan};

#[cfg(feature = "flash-attn")]
mod flash;
mod plan;

/// Without the `flash-attn` feature there is no flash plan: an empty type, so that the plan
/// and the attention need no `cfg` of their own.
#[cfg(not(feature = "flash-attn"))]
mod flash {
    use candle_core::{Device, Result, Tensor};

    use super::plan::{ChunkPlan, SeqRows};
    use super::CudaKvCache;
    use crate::paged_attention::TokenSlot;

    pub(super) enum FlashPlan {}

    impl FlashPlan {
        pub fn build(_: &[TokenSlot], _: &[SeqRows], _: &Device) -> Result<Option<Self>> {
            Ok(None)
        }

        pub fn attend(
            &self,
            _: &CudaKvCache,
            _: usize,
            _: &Tensor,
            _: &[ChunkPlan],
            _: f32,
        ) -> Result<Tensor> {
            match *self {}
        }
    }
}

/// Head dims the `paged_attention` kernel is compiled for.
pub const KERNEL_HEAD_DIMS: [usize; 8] = [64, 80, 96, 112, 128, 192, 256, 512];
/// Block sizes the `paged_attention` kernel is compiled for (others silently do nothing there).
pub const KERNEL_BLOCK_SIZES: [usize; 3] = [8, 16, 32];
/// Head dims candle-flash-attn 0.10.2 has kernels for.
pub const FLASH_HEAD_DIMS: [usize; 9] = [32, 64, 96, 128, 160, 192, 224, 256, 512];

/// The KV block pool of all layers on one CUDA device.
pub struct CudaKvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    num_blocks: usize,
    block_size: usize,
    n_kv: usize,
    head_dim: usize,
    dtype: DType,
    kernel_decode: bool,
    /// Prefill chunks through candle-flash-attn (the feature is on and not turned off, bf16/f16,
    /// a flash head dim).
    flash_prefill: bool,
    /// Host → device copies of the last step's attention plan.
    last_uploads: u64,
}

impl CudaKvCache {
    /// Elements of the innermost key-cache dim: 16 bytes' worth of `dtype`.
    pub fn x(dtype: DType) -> usize {
        16 / dtype.size_in_bytes()
    }

    /// Bytes of one block, keys and values of all layers.
    pub fn bytes_per_block(cfg: &ModelConfig, block_size: usize, dtype: DType) -> usize {
        2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * dtype.size_in_bytes()
    }

    /// Whether the `paged_attention` kernel handles this head dim and block size.
    pub fn kernel_supports(head_dim: usize, block_size: usize) -> bool {
        KERNEL_HEAD_DIMS.contains(&head_dim) && KERNEL_BLOCK_SIZES.contains(&block_size)
    }

    /// A zeroed pool of `num_blocks` blocks of `block_size` tokens per layer, in `dtype`
    /// (f32, f16 or bf16; use the model's dtype) on the CUDA `device`.
    pub fn new(
        cfg: &ModelConfig,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if !device.is_cuda() {
            candle_core::bail!("CudaKvCache needs a CUDA device, got {device:?}");
        }
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            candle_core::bail!("CudaKvCache: dtype {dtype:?} unsupported (f32, f16 or bf16)");
        }
        if num_blocks == 0 || block_size == 0 {
            candle_core::bail!("CudaKvCache: need at least one block of at least one token");
        }
        let (n_kv, d) = (cfg.num_kv_heads, cfg.head_dim);
        let x = Self::x(dtype);
        if d % x != 0 {
            candle_core::bail!("CudaKvCache: head_dim {d} is not a multiple of {x} ({dtype:?})");
        }
        let mut k = Vec::with_capacity(cfg.num_layers);
        let mut v = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            k.push(Tensor::zeros(
                (num_blocks, n_kv, d / x, block_size, x),
                dtype,
                device,
            )?);
            v.push(Tensor::zeros(
                (num_blocks, n_kv, d, block_size),
                dtype,
                device,
            )?);
        }
        Ok(Self {
            k,
            v,
            num_blocks,
            block_size,
            n_kv,
            head_dim: d,
            dtype,
            kernel_decode: Self::kernel_supports(d, block_size),
            flash_prefill: crate::flash_attn_enabled()
                && matches!(dtype, DType::F16 | DType::BF16)
                && FLASH_HEAD_DIMS.contains(&d),
            last_uploads: 0,
        })
    }

    /// Whether decode tokens use the `paged_attention` kernel (else the candle path).
    pub fn kernel_decode(&self) -> bool {
        self.kernel_decode
    }

    /// Route decode tokens through the candle path even where the kernel applies (tests,
    /// debugging). Turning it on where the kernel does not apply is an error.
    pub fn set_kernel_decode(&mut self, on: bool) -> Result<()> {
        if on && !Self::kernel_supports(self.head_dim, self.block_size) {
            candle_core::bail!(
                "paged_attention has no kernel for head_dim {} / block_size {}",
                self.head_dim,
                self.block_size
            );
        }
        self.kernel_decode = on;
        Ok(())
    }

    /// The key and value cache tensors of one layer (shared storage, for tests).
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.k[layer], &self.v[layer])
    }

    /// Keys of `blocks` as `[1, context_len, n_kv, d]` (positions `0..context_len` of the
    /// sequence).
    fn gather_k(&self, layer: usize, blocks: &Tensor, context_len: usize) -> Result<Tensor> {
        let m = blocks.dim(0)?;
        self.k[layer]
            .index_select(blocks, 0)? // [m, n_kv, d/x, bs, x]
            .permute((0, 3, 1, 2, 4))? // [m, bs, n_kv, d/x, x]
            .contiguous()?
            .reshape((m * self.block_size, self.n_kv, self.head_dim))?
            .narrow(0, 0, context_len)?
            .unsqueeze(0)
    }

    /// Values of `blocks` as `[1, context_len, n_kv, d]`.
    fn gather_v(&self, layer: usize, blocks: &Tensor, context_len: usize) -> Result<Tensor> {
        let m = blocks.dim(0)?;
        self.v[layer]
            .index_select(blocks, 0)? // [m, n_kv, d, bs]
            .permute((0, 3, 1, 2))? // [m, bs, n_kv, d]
            .contiguous()?
            .reshape((m * self.block_size, self.n_kv, self.head_dim))?
            .narrow(0, 0, context_len)?
            .unsqueeze(0)
    }
}

impl KvBackend for CudaKvCache {
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn copy_block(&mut self, src: u32, dst: u32) -> Result<()> {
        let (src, dst) = (src as usize, dst as usize);
        if src >= self.num_blocks || dst >= self.num_blocks {
            candle_core::bail!(
                "copy_block {src} → {dst}: pool has {} blocks",
                self.num_blocks
            );
        }
        if src == dst {
            return Ok(());
        }
        for t in self.k.iter().chain(self.v.iter()) {
            // `copy` gives the block its own storage; slice_set refuses shared storage.
            let block = t.narrow(0, src, 1)?.copy()?;
            t.slice_set(&block, 0, dst)?;
        }
        Ok(())
    }

    fn last_step_uploads(&self) -> u64 {
        self.last_uploads
    }

    fn attention<'a>(&'a mut self, layout: &'a StepLayout) -> Box<dyn Attention + 'a> {
        self.last_uploads = 0;
        Box::new(CudaPagedAttention {
            cache: self,
            layout,
            plan: None,
        })
    }
}

struct CudaPagedAttention<'a> {
    cache: &'a mut CudaKvCache,
    layout: &'a StepLayout,
    plan: Option<AttentionPlan>,
}

impl CudaPagedAttention<'_> {
    /// q `[1, T, n_heads, d]` and k `[1, T, n_kv, d]` match the step and the cache; returns
    /// `(T, n_heads, d)`.
    fn check_shapes(&self, layer: usize, q: &Tensor, k: &Tensor) -> Result<(usize, usize, usize)> {
        let (num_tokens, n_heads, d) = self.layout.packed_dims(q)?;
        let (_, _, n_kv, dk) = k.dims4()?;
        let cache = &self.cache;
        if n_kv != cache.n_kv || d != cache.head_dim || dk != d || n_heads % n_kv != 0 {
            candle_core::bail!(
                "paged attention: q {:?} / k {:?} do not match the cache ({} kv heads × {})",
                q.dims(),
                k.dims(),
                cache.n_kv,
                cache.head_dim
            );
        }
        if layer >= cache.k.len() {
            candle_core::bail!("layer {layer}: the cache has {} layers", cache.k.len());
        }
        Ok((num_tokens, n_heads, d))
    }
}

/// The decode tokens' attention: one `paged_attention` launch over the pool of `layer`.
fn attend_decode(
    cache: &CudaKvCache,
    layer: usize,
    q: &Tensor,
    decode: &plan::DecodePlan,
    scale: f32,
) -> Result<Tensor> {
    let queries = match &decode.rows {
        Some(rows) => q.index_select(rows, 0)?,
        None => q.clone(),
    };
    mistralrs_paged_attn::paged_attention(
        &queries,
        None,
        None,
        &cache.k[layer],
        &cache.v[layer],
        &decode.block_tables,
        &decode.context_lens,
        None,
        decode.max_context_len,
        scale,
        1.0,
        None,
    )
}

/// One prefill chunk's attention with candle ops over its gathered keys and values.
fn attend_chunk(
    cache: &CudaKvCache,
    layer: usize,
    q: &Tensor,
    chunk: &ChunkPlan,
) -> Result<Tensor> {
    let queries = q.index_select(&chunk.rows, 0)?.unsqueeze(0)?;
    let keys = cache.gather_k(layer, &chunk.blocks, chunk.context_len)?;
    let values = cache.gather_v(layer, &chunk.blocks, chunk.context_len)?;
    grouped_attention(&queries, &keys, &values, chunk.mask.as_ref(), true)?.squeeze(0)
}

impl Attention for CudaPagedAttention<'_> {
    fn attend(&mut self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (num_tokens, n_heads, d) = self.check_shapes(layer, q, k)?;
        if num_tokens == 0 {
            return Ok(q.clone());
        }
        if self.plan.is_none() {
            let plan = AttentionPlan::build(self.cache, self.layout, q.device())?;
            self.cache.last_uploads = plan.uploads();
            self.plan = Some(plan);
        }
        let plan = self.plan.as_ref().expect("plan built above");
        let cache = &*self.cache;
        let n_kv = cache.n_kv;
        let rows = |x: &Tensor, heads: usize| -> Result<Tensor> {
            x.to_dtype(cache.dtype)?
                .reshape((num_tokens, heads, d))?
                .contiguous()
        };
        let (k, v, q_rows) = (rows(k, n_kv)?, rows(v, n_kv)?, rows(q, n_heads)?);
        let (k_cache, v_cache) = (&cache.k[layer], &cache.v[layer]);
        // Writes in place into the pool's storage, on candle's stream (ordered with the reads).
        mistralrs_paged_attn::reshape_and_cache(&k, &v, None, None, k_cache, v_cache, &plan.slots)?;

        let scale = 1.0 / (d as f32).sqrt();
        let mut parts = Vec::with_capacity(plan.chunks.len() + 1);
        if let Some(decode) = &plan.decode {
            parts.push(attend_decode(cache, layer, &q_rows, decode, scale)?);
        }
        match &plan.flash {
            Some(flash) => parts.push(flash.attend(cache, layer, &q_rows, &plan.chunks, scale)?),
            None => {
                for chunk in &plan.chunks {
                    parts.push(attend_chunk(cache, layer, &q_rows, chunk)?);
                }
            }
        }
        let out = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 0)?
        };
        let out = match &plan.unpermute {
            Some(order) => out.index_select(order, 0)?,
            None => out,
        };
        out.reshape((1, num_tokens, n_heads, d))?
            .to_dtype(q.dtype())
    }
}
