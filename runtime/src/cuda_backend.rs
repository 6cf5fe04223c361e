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
//! end of each chunk's context), when the head dim has a flash kernel.
//!
//! The decode kernel exists only for head dims 64, 80, 96, 112, 128, 192, 256, 512 and block
//! sizes 8, 16, 32; with any other shape decode tokens take the candle path as 1-token chunks.
//! Copy-on-write copies a block with plain tensor copies: the crate's `copy_blocks` hands host
//! pointers (a `Vec` of per-layer cache pointers and the block mapping) to its kernel, which
//! dereferences them on the device.

use candle_core::{DType, Device, Result, Tensor};
use rlvr_models::attention::grouped_attention;
use rlvr_models::{Attention, ModelConfig};

use crate::paged_attention::{KvBackend, StepLayout};

/// Head dims the `paged_attention` kernel is compiled for.
pub const KERNEL_HEAD_DIMS: [usize; 8] = [64, 80, 96, 112, 128, 192, 256, 512];
/// Block sizes the `paged_attention` kernel is compiled for (others silently do nothing there).
pub const KERNEL_BLOCK_SIZES: [usize; 3] = [8, 16, 32];

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
    /// Prefill chunks through candle-flash-attn (bf16/f16, flash head dims, not turned off).
    #[cfg(feature = "flash-attn")]
    flash_prefill: bool,
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
            #[cfg(feature = "flash-attn")]
            flash_prefill: crate::flash_attn_enabled()
                && matches!(dtype, DType::F16 | DType::BF16)
                && FLASH_HEAD_DIMS.contains(&d),
        })
    }

    /// How many blocks fit in `fraction` of the device's currently free memory
    /// ([`rlvr_models::device_mem::cuda_free_total`]). Call it after the weights are loaded;
    /// leave room for activations (e.g. `fraction` = 0.8 of what is free then). May be 0.
    pub fn num_blocks_for_free_memory(
        cfg: &ModelConfig,
        block_size: usize,
        dtype: DType,
        fraction: f64,
        device: &Device,
    ) -> Result<usize> {
        let (free, _total) = rlvr_models::device_mem::cuda_free_total(device).ok_or_else(|| {
            candle_core::Error::Msg(format!("no memory information from {device:?}"))
        })?;
        let budget = (free as f64 * fraction.clamp(0.0, 1.0)) as usize;
        Ok(budget / Self::bytes_per_block(cfg, block_size, dtype).max(1))
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

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The key and value cache tensors of one layer (shared storage, for tests).
    pub fn layer(&self, layer: usize) -> (&Tensor, &Tensor) {
        (&self.k[layer], &self.v[layer])
    }

    /// Keys of `blocks` as `[1, len, n_kv, d]` (positions `0..len` of the sequence).
    fn gather_k(&self, layer: usize, blocks: &Tensor, len: usize) -> Result<Tensor> {
        let m = blocks.dim(0)?;
        self.k[layer]
            .index_select(blocks, 0)? // [m, n_kv, d/x, bs, x]
            .permute((0, 3, 1, 2, 4))? // [m, bs, n_kv, d/x, x]
            .contiguous()?
            .reshape((m * self.block_size, self.n_kv, self.head_dim))?
            .narrow(0, 0, len)?
            .unsqueeze(0)
    }

    /// Values of `blocks` as `[1, len, n_kv, d]`.
    fn gather_v(&self, layer: usize, blocks: &Tensor, len: usize) -> Result<Tensor> {
        let m = blocks.dim(0)?;
        self.v[layer]
            .index_select(blocks, 0)? // [m, n_kv, d, bs]
            .permute((0, 3, 1, 2))? // [m, bs, n_kv, d]
            .contiguous()?
            .reshape((m * self.block_size, self.n_kv, self.head_dim))?
            .narrow(0, 0, len)?
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

    fn attention<'a>(&'a mut self, layout: &'a StepLayout) -> Box<dyn Attention + 'a> {
        Box::new(CudaPagedAttention {
            cache: self,
            layout,
            plan: None,
        })
    }
}

/// Decode tokens of a step, attended by one `paged_attention` launch.
struct DecodePlan {
    /// Rows of the step's q for these tokens (None: all rows, in order).
    rows: Option<Tensor>,
    block_tables: Tensor,
    context_lens: Tensor,
    max_context_len: usize,
}

/// Head dims candle-flash-attn 0.10.2 has kernels for.
pub const FLASH_HEAD_DIMS: [usize; 9] = [32, 64, 96, 128, 160, 192, 224, 256, 512];

/// All prefill chunks of a step as one flash-attention varlen call.
#[cfg(feature = "flash-attn")]
struct FlashPlan {
    /// Cumulative query / key lengths, `[chunks + 1]` u32.
    seqlens_q: Tensor,
    seqlens_k: Tensor,
    max_q: usize,
    max_k: usize,
}

/// The tokens of one sequence attended with candle ops.
struct ChunkPlan {
    rows: Tensor,
    /// The sequence's first `ceil(len / block_size)` block ids.
    blocks: Tensor,
    /// Keys attended: positions `0..len`, `len` = max pos + 1.
    len: usize,
    /// Additive causal mask `[1, 1, 1, n, len]` (None for a single token, which sees all).
    mask: Option<Tensor>,
}

/// Index tensors of one step, built at the first layer and shared by all layers.
struct Plan {
    slots: Tensor,
    decode: Option<DecodePlan>,
    chunks: Vec<ChunkPlan>,
    #[cfg(feature = "flash-attn")]
    flash: Option<FlashPlan>,
    /// Rows of the concatenated outputs in token order (None: already in order).
    unpermute: Option<Tensor>,
}

struct CudaPagedAttention<'a> {
    cache: &'a mut CudaKvCache,
    layout: &'a StepLayout,
    plan: Option<Plan>,
}

fn u32s(v: Vec<u32>, dev: &Device) -> Result<Tensor> {
    let n = v.len();
    Tensor::from_vec(v, n, dev)
}

fn build_plan(cache: &CudaKvCache, layout: &StepLayout, dev: &Device) -> Result<Plan> {
    let bs = cache.block_size;
    let tokens = &layout.tokens;
    let slots: Vec<i64> = tokens.iter().map(|t| t.slot as i64).collect();
    let limit = (cache.num_blocks * bs) as i64;
    if let Some(s) = slots.iter().find(|&&s| s >= limit) {
        candle_core::bail!(
            "slot {s} outside the pool ({} blocks of {bs})",
            cache.num_blocks
        );
    }
    let slots = Tensor::from_vec(slots, tokens.len(), dev)?;

    // Group the step's tokens by sequence, in order of first appearance.
    let mut by_seq: Vec<(u32, Vec<usize>)> = vec![];
    let mut index_of = std::collections::HashMap::new();
    for (i, t) in tokens.iter().enumerate() {
        let g = *index_of.entry(t.seq_index).or_insert_with(|| {
            by_seq.push((t.seq_index, vec![]));
            by_seq.len() - 1
        });
        by_seq[g].1.push(i);
    }
    let table = |seq: u32, len: usize| -> Result<&[u32]> {
        let need = len.div_ceil(bs);
        match layout.block_tables.get(seq as usize) {
            Some(bt) if bt.len() >= need => Ok(&bt[..need]),
            Some(bt) => candle_core::bail!(
                "sequence {seq}: {len} positions need {need} blocks, its table has {}",
                bt.len()
            ),
            None => candle_core::bail!("sequence {seq} has no block table"),
        }
    };

    let mut order: Vec<u32> = Vec::with_capacity(tokens.len());
    let (mut dec_rows, mut dec_tables, mut dec_lens) = (vec![], vec![], vec![]);
    let mut chunk_groups = vec![];
    for (seq, rows) in &by_seq {
        if cache.kernel_decode && rows.len() == 1 {
            let len = tokens[rows[0]].pos as usize + 1;
            dec_rows.push(rows[0] as u32);
            dec_tables.push(table(*seq, len)?.to_vec());
            dec_lens.push(len as u32);
        } else {
            chunk_groups.push((*seq, rows));
        }
    }
    order.extend(&dec_rows);
    let decode = if dec_rows.is_empty() {
        None
    } else {
        let n = dec_rows.len();
        let width = dec_tables.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(n * width);
        for t in &dec_tables {
            flat.extend(t);
            flat.extend(std::iter::repeat_n(0u32, width - t.len()));
        }
        let in_order =
            n == tokens.len() && dec_rows.iter().enumerate().all(|(i, &r)| r == i as u32);
        Some(DecodePlan {
            rows: if in_order {
                None
            } else {
                Some(u32s(dec_rows, dev)?)
            },
            block_tables: Tensor::from_vec(flat, (n, width), dev)?,
            max_context_len: dec_lens.iter().copied().max().unwrap_or(1) as usize,
            context_lens: u32s(dec_lens, dev)?,
        })
    };

    // Flash-attention needs each chunk's queries to be the last positions of its context.
    #[cfg(feature = "flash-attn")]
    let flash_ok = cache.flash_prefill
        && !chunk_groups.is_empty()
        && chunk_groups.iter().all(|(_, rows)| {
            let last = tokens[*rows.last().expect("a chunk has tokens")].pos as usize;
            rows.iter()
                .enumerate()
                .all(|(i, &r)| tokens[r].pos as usize + rows.len() == last + 1 + i)
        });
    #[cfg(feature = "flash-attn")]
    let flash = if flash_ok {
        let (mut sq, mut sk) = (vec![0u32], vec![0u32]);
        let (mut max_q, mut max_k) = (0, 0);
        for (_, rows) in &chunk_groups {
            let len = tokens[*rows.last().expect("a chunk has tokens")].pos as usize + 1;
            sq.push(sq.last().copied().unwrap_or(0) + rows.len() as u32);
            sk.push(sk.last().copied().unwrap_or(0) + len as u32);
            max_q = max_q.max(rows.len());
            max_k = max_k.max(len);
        }
        Some(FlashPlan {
            seqlens_q: u32s(sq, dev)?,
            seqlens_k: u32s(sk, dev)?,
            max_q,
            max_k,
        })
    } else {
        None
    };
    #[cfg(feature = "flash-attn")]
    let need_mask = flash.is_none();
    #[cfg(not(feature = "flash-attn"))]
    let need_mask = true;

    let mut chunks = Vec::with_capacity(chunk_groups.len());
    for (seq, rows) in chunk_groups {
        let pos: Vec<usize> = rows.iter().map(|&r| tokens[r].pos as usize).collect();
        let len = pos.iter().copied().max().unwrap_or(0) + 1;
        let blocks = table(seq, len)?.to_vec();
        let mask = if rows.len() == 1 || !need_mask {
            None
        } else {
            let mut m = vec![0f32; rows.len() * len];
            for (i, &p) in pos.iter().enumerate() {
                m[i * len + p + 1..(i + 1) * len].fill(-1e9);
            }
            Some(Tensor::from_vec(m, (1, 1, 1, rows.len(), len), dev)?.to_dtype(cache.dtype)?)
        };
        order.extend(rows.iter().map(|&r| r as u32));
        chunks.push(ChunkPlan {
            rows: u32s(rows.iter().map(|&r| r as u32).collect(), dev)?,
            blocks: u32s(blocks, dev)?,
            len,
            mask,
        });
    }

    let unpermute = if order.iter().enumerate().all(|(i, &r)| r == i as u32) {
        None
    } else {
        let mut inv = vec![0u32; order.len()];
        for (j, &r) in order.iter().enumerate() {
            inv[r as usize] = j as u32;
        }
        Some(u32s(inv, dev)?)
    };
    Ok(Plan {
        slots,
        decode,
        chunks,
        #[cfg(feature = "flash-attn")]
        flash,
        unpermute,
    })
}

impl Attention for CudaPagedAttention<'_> {
    fn attend(&mut self, layer: usize, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, t, nh, d) = q.dims4()?;
        if b != 1 || t != self.layout.tokens.len() {
            candle_core::bail!(
                "paged attention expects a packed [1, {}] batch, got q {:?}",
                self.layout.tokens.len(),
                q.dims()
            );
        }
        let (_, _, nkv, dk) = k.dims4()?;
        if nkv != self.cache.n_kv || d != self.cache.head_dim || dk != d || nh % nkv != 0 {
            candle_core::bail!(
                "paged attention: q {:?} / k {:?} do not match the cache ({} kv heads × {})",
                q.dims(),
                k.dims(),
                self.cache.n_kv,
                self.cache.head_dim
            );
        }
        if layer >= self.cache.k.len() {
            candle_core::bail!("layer {layer}: the cache has {} layers", self.cache.k.len());
        }
        if t == 0 {
            return Ok(q.clone());
        }
        let dev = q.device().clone();
        if self.plan.is_none() {
            self.plan = Some(build_plan(self.cache, self.layout, &dev)?);
        }
        let plan = self.plan.as_ref().expect("plan built above");
        let cache = &*self.cache;
        let dt = cache.dtype;
        let flat = |x: &Tensor, heads: usize| -> Result<Tensor> {
            x.to_dtype(dt)?.reshape((t, heads, d))?.contiguous()
        };
        let (k3, v3, q3) = (flat(k, nkv)?, flat(v, nkv)?, flat(q, nh)?);
        let (kc, vc) = (&cache.k[layer], &cache.v[layer]);
        // Writes in place into the pool's storage, on candle's stream (ordered with the reads).
        mistralrs_paged_attn::reshape_and_cache(&k3, &v3, None, None, kc, vc, &plan.slots)?;

        let scale = 1.0 / (d as f32).sqrt();
        let mut parts = Vec::with_capacity(plan.chunks.len() + 1);
        if let Some(dp) = &plan.decode {
            let qd = match &dp.rows {
                Some(rows) => q3.index_select(rows, 0)?,
                None => q3.clone(),
            };
            parts.push(mistralrs_paged_attn::paged_attention(
                &qd,
                None,
                None,
                kc,
                vc,
                &dp.block_tables,
                &dp.context_lens,
                None,
                dp.max_context_len,
                scale,
                1.0,
                None,
            )?);
        }
        #[cfg(feature = "flash-attn")]
        if let Some(f) = &plan.flash {
            let rows: Vec<&Tensor> = plan.chunks.iter().map(|c| &c.rows).collect();
            let qf = q3.index_select(&Tensor::cat(&rows, 0)?, 0)?;
            let mut ks = Vec::with_capacity(plan.chunks.len());
            let mut vs = Vec::with_capacity(plan.chunks.len());
            for c in &plan.chunks {
                ks.push(cache.gather_k(layer, &c.blocks, c.len)?.squeeze(0)?);
                vs.push(cache.gather_v(layer, &c.blocks, c.len)?.squeeze(0)?);
            }
            parts.push(candle_flash_attn::flash_attn_varlen(
                &qf,
                &Tensor::cat(&ks, 0)?,
                &Tensor::cat(&vs, 0)?,
                &f.seqlens_q,
                &f.seqlens_k,
                f.max_q,
                f.max_k,
                scale,
                true,
            )?);
        }
        #[cfg(feature = "flash-attn")]
        let chunks: &[ChunkPlan] = if plan.flash.is_some() {
            &[]
        } else {
            &plan.chunks
        };
        #[cfg(not(feature = "flash-attn"))]
        let chunks = &plan.chunks;
        for c in chunks {
            let qc = q3.index_select(&c.rows, 0)?.unsqueeze(0)?;
            let keys = cache.gather_k(layer, &c.blocks, c.len)?;
            let values = cache.gather_v(layer, &c.blocks, c.len)?;
            let o = grouped_attention(&qc, &keys, &values, c.mask.as_ref(), true)?;
            parts.push(o.squeeze(0)?);
        }
        let out = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 0)?
        };
        let out = match &plan.unpermute {
            Some(p) => out.index_select(p, 0)?,
            None => out,
        };
        out.reshape((1, t, nh, d))?.to_dtype(q.dtype())
    }
}
