use candle_core::{DType, Device, Tensor, Var};

use super::attention::{packed_kernel_attention, packed_kernel_attention_bwd, PackedIndex};
use super::*;
use crate::attention::grouped_attention;
use crate::config::{Architecture, ModelConfig};
use crate::model::{Batch, Forward, Model};
use crate::testing::{check, close, randt};

/// A prompt and its completions.
type UnitData = (Vec<u32>, Vec<Vec<u32>>);

/// Two units: a prompt of 3 with completions of 2, 0 and 4 tokens; a prompt of 1 with one of 1.
fn units_data() -> (UnitData, UnitData) {
    (
        (
            vec![5, 6, 7],
            vec![vec![8, 9], vec![], vec![10, 11, 12, 13]],
        ),
        (vec![14], vec![vec![15]]),
    )
}

fn layout() -> PackedLayout {
    let ((p1, c1), (p2, c2)) = units_data();
    let c1: Vec<&[u32]> = c1.iter().map(Vec::as_slice).collect();
    let c2: Vec<&[u32]> = c2.iter().map(Vec::as_slice).collect();
    PackedLayout::new(&[
        PackedUnit {
            prompt: &p1,
            completions: &c1,
        },
        PackedUnit {
            prompt: &p2,
            completions: &c2,
        },
    ])
    .unwrap()
}

#[test]
fn layout_positions_and_predicting_positions() {
    let l = layout();
    assert_eq!(l.ids(), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    assert_eq!(l.positions(), [0, 1, 2, 3, 4, 3, 4, 5, 6, 0, 1]);
    assert_eq!(l.targets(), [8, 9, 10, 11, 12, 13, 15]);
    // First tokens are predicted by their prompt's last position (2, and 9).
    assert_eq!(l.completion_positions(), [2, 3, 2, 5, 6, 7, 9]);
    // Rows: prompt 1, its two non-empty completions, prompt 2, its completion.
    assert_eq!(l.rows(), 5);
    assert_eq!((l.q_len, l.k_len), (4, 7));
    assert_eq!(l.offsets, [0, 3, 3, 0, 1]);
    assert_eq!(l.counts, [3, 2, 4, 1, 1]);
    let empty: &[&[u32]] = &[];
    assert!(PackedLayout::new(&[PackedUnit {
        prompt: &[],
        completions: empty,
    }])
    .is_err());
}

/// The stream's attention as an explicit mask over all T keys (the definition), composed.
fn reference_attention(l: &PackedLayout, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let t = l.len();
    // Segment of every token: (unit start, segment start); a key j is visible to query i when
    // j ≤ i and j is in i's prompt or in i's own segment.
    let mut seg = vec![(0usize, 0usize, 0usize); t];
    let mut pos = 0;
    let ((p1, c1), (p2, c2)) = units_data();
    for (p, cs) in [(p1, c1), (p2, c2)] {
        let start = pos;
        for i in 0..p.len() {
            seg[pos + i] = (start, start, p.len());
        }
        pos += p.len();
        for c in cs {
            for i in 0..c.len() {
                seg[pos + i] = (start, pos, p.len());
            }
            pos += c.len();
        }
    }
    let mut m = vec![-1e9f64; t * t];
    for i in 0..t {
        let (unit, s, p) = seg[i];
        for j in 0..=i {
            if (j >= unit && j < unit + p) || j >= s {
                m[i * t + j] = 0.0;
            }
        }
    }
    let mask = Tensor::from_vec(m, (1, 1, 1, t, t), &Device::Cpu)
        .unwrap()
        .to_dtype(q.dtype())
        .unwrap();
    grouped_attention(q, k, v, Some(&mask), false).unwrap()
}

/// The packed kernel attention (CPU kernel, and the masked composed path other devices take)
/// against the explicit stream mask: values and gradients of q, k, v; and the hand-written
/// backward against autograd.
#[test]
fn packed_attention_matches_the_explicit_mask() {
    let l = layout();
    let t = l.len();
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        let (nh, nkv, d) = (4, 2, 8);
        let q = randt(&[1, t, nh, d], 11, 1.5, dtype);
        let k = randt(&[1, t, nkv, d], 12, 1.5, dtype);
        let v = randt(&[1, t, nkv, d], 13, 1.0, dtype);
        let index = PackedIndex::new(&l, &Device::Cpu).unwrap();
        let inputs = [q.clone(), k.clone(), v.clone()];
        check(
            &inputs,
            |x| {
                packed_kernel_attention(&x[0], &x[1], &x[2], &index, true)
                    .unwrap()
                    .out
            },
            |x| reference_attention(&l, &x[0], &x[1], &x[2]),
            tol,
            "packed kernel attention",
        );
        check(
            &inputs,
            |x| {
                let mut a = super::attention::PackedAttention::new(index.clone(), false);
                masked_composed(&mut a, &x[0], &x[1], &x[2])
            },
            |x| reference_attention(&l, &x[0], &x[1], &x[2]),
            tol,
            "packed masked attention",
        );
        // Hand-written backward vs autograd through the kernel.
        let vars: Vec<Var> = inputs
            .iter()
            .map(|x| Var::from_tensor(x).unwrap())
            .collect();
        let parts = packed_kernel_attention(
            vars[0].as_tensor(),
            vars[1].as_tensor(),
            vars[2].as_tensor(),
            &index,
            true,
        )
        .unwrap();
        let r = randt(parts.out.dims(), 5, 1.0, dtype);
        let grads = (&parts.out * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let mine = packed_kernel_attention_bwd(&parts, &r, &index).unwrap();
        for (x, (var, what)) in [mine.0, mine.1, mine.2]
            .iter()
            .zip(vars.iter().zip(["dq", "dk", "dv"]))
        {
            close(x, grads.get(var.as_tensor()).unwrap(), tol, what);
        }
    }
}

/// The composed path of [`PackedAttention`] (the one non-CPU devices take), run on the CPU.
fn masked_composed(
    a: &mut super::attention::PackedAttention,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> Tensor {
    a.attend_masked(q, k, v).unwrap()
}

/// Every architecture: the packed stream's hidden states at the positions predicting each
/// completion token equal the unshared rows' (prompt + completion from position 0), in the
/// training numerics (taped and not) and the inference ones.
#[test]
fn packed_hidden_states_equal_the_unshared_rows() {
    let ((p1, c1), (p2, c2)) = units_data();
    let mut rows = Vec::new();
    let mut expected_at = Vec::new();
    for (p, cs) in [(&p1, &c1), (&p2, &c2)] {
        for c in cs {
            let b = rows.len();
            for t in 0..c.len() {
                expected_at.push((b, p.len() + t - 1));
            }
            rows.push([p.as_slice(), c.as_slice()].concat());
        }
    }
    let l = layout();
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        for dtype in [DType::F64, DType::F32] {
            let tol = if dtype == DType::F64 { 1e-10 } else { 1e-5 };
            let cfg = ModelConfig::tiny(arch, 20, 32, 2);
            let model = Model::random(cfg, 3, dtype, &Device::Cpu).unwrap();
            for fwd in [
                Forward::TRAIN_NO_GRAD,
                Forward::INFERENCE,
                Forward::TRAIN_TAPED,
            ] {
                if fwd == Forward::INFERENCE && dtype == DType::F64 {
                    continue; // candle's fused kernels have no f64
                }
                let what = format!("{arch:?} {dtype:?} {fwd:?}");
                let padded = model
                    .hidden(Batch::padded(&rows, 0), Forward::TRAIN_NO_GRAD)
                    .unwrap()
                    .states;
                let packed = model.hidden(Batch::packed(&l), fwd).unwrap();
                assert_eq!(packed.tape.is_some(), fwd == Forward::TRAIN_TAPED);
                let packed = packed.states.squeeze(0).unwrap();
                for (&(b, at), &s) in expected_at.iter().zip(l.completion_positions()) {
                    let want = padded.get(b).unwrap().get(at).unwrap();
                    let got = packed.get(s as usize).unwrap();
                    close(&got, &want, tol, &what);
                }
            }
        }
    }
}
