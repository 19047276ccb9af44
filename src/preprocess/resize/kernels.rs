//! The two passes' inner loops: taps summed in torch's order, vectorised across lanes.

use super::weights::AxisPlan;

/// Source rows interleaved per width-pass sweep (one SIMD lane each); see
/// [`super::AaBicubicPlan::run_row_groups`].
pub const ROW_GROUP: usize = 8;
pub(super) const GROUP: usize = ROW_GROUP;
/// Output columns accumulated in registers per height-pass sweep.
const VBLOCK: usize = 32;

/// Width pass for `GROUP` interleaved source rows: for each kept output column `j`,
/// `acc[j] = sum_k w[j][k] * group[start_j + k]` (every lane is one source row), taps in order.
/// The common window lengths get a fully unrolled loop.
pub(super) fn horizontal_group(plan: &AxisPlan, group: &[[f32; GROUP]], acc: &mut [[f32; GROUP]]) {
    if !plan.fixed {
        return horizontal_group_any(plan, group, acc);
    }
    match plan.stride {
        4 => horizontal_group_fixed::<4>(plan, group, acc),
        5 => horizontal_group_fixed::<5>(plan, group, acc),
        6 => horizontal_group_fixed::<6>(plan, group, acc),
        7 => horizontal_group_fixed::<7>(plan, group, acc),
        8 => horizontal_group_fixed::<8>(plan, group, acc),
        9 => horizontal_group_fixed::<9>(plan, group, acc),
        10 => horizontal_group_fixed::<10>(plan, group, acc),
        11 => horizontal_group_fixed::<11>(plan, group, acc),
        12 => horizontal_group_fixed::<12>(plan, group, acc),
        13 => horizontal_group_fixed::<13>(plan, group, acc),
        14 => horizontal_group_fixed::<14>(plan, group, acc),
        15 => horizontal_group_fixed::<15>(plan, group, acc),
        16 => horizontal_group_fixed::<16>(plan, group, acc),
        _ => horizontal_group_any(plan, group, acc),
    }
}

fn horizontal_group_fixed<const K: usize>(
    plan: &AxisPlan,
    group: &[[f32; GROUP]],
    acc: &mut [[f32; GROUP]],
) {
    /// Weights (pre-broadcast) and interleaved source pixels of one output column.
    type Taps<'w, 'g, const K: usize> = (&'w [[f32; 4]; K], &'g [[f32; GROUP]; K]);
    /// The `K` taps of output `j`, or `None` if the plan were inconsistent (never).
    #[inline(always)]
    fn taps<'g, 'w, const K: usize>(
        plan: &'w AxisPlan,
        group: &'g [[f32; GROUP]],
        j: usize,
    ) -> Option<Taps<'w, 'g, K>> {
        let start = *plan.starts.get(j)?;
        let weights = plan.splat.get(j * K..(j + 1) * K)?.try_into().ok()?;
        let src = group.get(start..start + K)?.try_into().ok()?;
        Some((weights, src))
    }
    // Two output columns per iteration: their sums are independent dependency chains, which
    // hides the add latency while each chain keeps torch's tap order.
    let mut j = 0;
    let mut pairs = acc.chunks_exact_mut(2);
    for pair in pairs.by_ref() {
        match (
            taps::<K>(plan, group, j),
            taps::<K>(plan, group, j + 1),
            pair,
        ) {
            (Some((wa, xa)), Some((wb, xb)), [a, b]) => {
                let mut sa = [0.0f32; GROUP];
                let mut sb = [0.0f32; GROUP];
                for k in 0..K {
                    for l in 0..GROUP {
                        sa[l] += wa[k][l % 4] * xa[k][l];
                        sb[l] += wb[k][l % 4] * xb[k][l];
                    }
                }
                *a = sa;
                *b = sb;
            }
            (_, _, pair) => pair.fill([0.0; GROUP]),
        }
        j += 2;
    }
    for a in pairs.into_remainder() {
        let mut sum = [0.0f32; GROUP];
        if let Some((w, x)) = taps::<K>(plan, group, j) {
            for k in 0..K {
                for l in 0..GROUP {
                    sum[l] += w[k][l % 4] * x[k][l];
                }
            }
        }
        *a = sum;
    }
}

fn horizontal_group_any(plan: &AxisPlan, group: &[[f32; GROUP]], acc: &mut [[f32; GROUP]]) {
    for (a, ((&start, &len), weights)) in acc.iter_mut().zip(
        plan.starts
            .iter()
            .zip(&plan.lens)
            .zip(plan.weights.chunks_exact(plan.stride)),
    ) {
        let src = group.get(start..start + len).unwrap_or(&[]);
        let mut sum = [0.0f32; GROUP];
        for (&w, x) in weights.iter().zip(src) {
            for l in 0..GROUP {
                sum[l] += w * x[l];
            }
        }
        *a = sum;
    }
}

/// One output row of the height pass: `out[c] = sum_k w[k] * tmp[k][c]` over consecutive rows of
/// `tmp` (`width` values each), taps summed in order. Columns are processed in blocks of
/// `VBLOCK` kept in registers across all taps.
#[inline(never)]
pub(super) fn vertical_row(tmp: &[f32], width: usize, weights: &[f32], out_row: &mut [f32]) {
    let mut c0 = 0;
    let mut blocks = out_row.chunks_exact_mut(VBLOCK);
    for out_block in blocks.by_ref() {
        let mut acc = [0.0f32; VBLOCK];
        for (k, &w) in weights.iter().enumerate() {
            let at = k * width + c0;
            let Some(src) = tmp.get(at..at + VBLOCK) else {
                break;
            };
            for (a, &x) in acc.iter_mut().zip(src) {
                *a += w * x;
            }
        }
        out_block.copy_from_slice(&acc);
        c0 += VBLOCK;
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let mut acc = 0.0f32;
        for (k, &w) in weights.iter().enumerate() {
            acc += w * tmp.get(k * width + c0 + i).copied().unwrap_or(0.0);
        }
        *o = acc;
    }
}
