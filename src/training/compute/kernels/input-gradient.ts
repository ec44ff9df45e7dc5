/**
 * The input gradient of an NHWC convolution as `s_h·s_w` stride-1 XNNPACK convolutions (one per output phase,
 * see `inputGradPhases`), interleaved into dx. No multiplication by an inserted zero is ever done.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { type ConvGeometry, type PhasePlan, inputGradPhases } from './conv-geometry.js';
import { KernelScope, nhwcPadding } from './kernel-scope.js';

/** A computed phase: positions `(s_h·u + rows.residue, s_w·v + cols.residue)` of dx. */
interface PhaseResult {
  readonly rows: PhasePlan;
  readonly cols: PhasePlan;
  /** [N, rows.outSize, cols.outSize, Ci] float32. */
  readonly out: TensorInfo;
}

/**
 * The phase's filter: taps `firstTap + s·t` of w [kh,kw,Ci,Co], reversed, with in/out channels swapped:
 * [rows.taps, cols.taps, Co, Ci] float32. Written in JavaScript (one pass; tfjs-wasm's Reverse is ~15x slower).
 */
function phaseFilter(scope: KernelScope, filter: TensorInfo, rows: PhasePlan, cols: PhasePlan, g: ConvGeometry): TensorInfo {
  const { inChannels: ci, outChannels: co } = g;
  const kw = g.cols.kernel;
  const out = scope.allocate([rows.taps, cols.taps, co, ci]);
  const dst = scope.view(out);
  const src = scope.view(filter);
  const tapSize = ci * co;
  for (let ty = 0; ty < rows.taps; ty++) {
    const a = rows.firstTap + g.rows.stride * (rows.taps - 1 - ty);
    for (let tx = 0; tx < cols.taps; tx++) {
      const b = cols.firstTap + g.cols.stride * (cols.taps - 1 - tx);
      const srcTap = (a * kw + b) * tapSize;
      const dstTap = (ty * cols.taps + tx) * tapSize;
      for (let i = 0; i < ci; i++) {
        const srcRow = srcTap + i * co;
        for (let o = 0; o < co; o++) dst[dstTap + o * ci + i] = src[srcRow + o]!;
      }
    }
  }
  return out;
}

/** Writes every phase's pixels into dx [N,H,W,Ci]; positions no phase covers are zero. */
function interleave(scope: KernelScope, phases: readonly PhaseResult[], g: ConvGeometry, complete: boolean): TensorInfo {
  const { batch: n, inChannels: c } = g;
  const h = g.rows.inSize;
  const w = g.cols.inSize;
  const dx = scope.allocate([n, h, w, c]);
  const dst = scope.view(dx);
  if (!complete) dst.fill(0);
  for (const { rows, cols, out } of phases) {
    const src = scope.view(out);
    let s = 0;
    for (let b = 0; b < n; b++) {
      for (let u = 0; u < rows.outSize; u++) {
        const rowBase = (b * h + g.rows.stride * u + rows.residue) * w;
        for (let v = 0; v < cols.outSize; v++) {
          dst.set(src.subarray(s, s + c), (rowBase + g.cols.stride * v + cols.residue) * c);
          s += c;
        }
      }
    }
  }
  return dx;
}

/**
 * dL/dx [N,H,W,Ci] float32 of a convolution with filter [kh,kw,Ci,Co], from dy [N,Ho,Wo,Co] float32 (NHWC).
 * Every intermediate is tracked by `scope`; the result is too (mark it with `scope.keep`).
 */
export function inputGradient(scope: KernelScope, dy: TensorInfo, filter: TensorInfo, g: ConvGeometry): TensorInfo {
  const results: PhaseResult[] = [];
  let covered = 0;
  for (const rows of inputGradPhases(g.rows)) {
    for (const cols of inputGradPhases(g.cols)) {
      if (rows.outSize === 0 || cols.outSize === 0 || rows.taps === 0 || cols.taps === 0) continue;
      const sub = phaseFilter(scope, filter, rows, cols, g);
      const input = scope.crop(dy, rows.plan, cols.plan);
      results.push({ rows, cols, out: scope.conv2d(input, sub, nhwcPadding(rows.plan, cols.plan)) });
      covered += rows.outSize * cols.outSize;
    }
  }
  const complete = covered === g.rows.inSize * g.cols.inSize;
  if (results.length === 1 && complete) return results[0]!.out;
  return interleave(scope, results, g, complete);
}
