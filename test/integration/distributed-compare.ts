/** Comparison of two replica states for the distributed tests (not a test file itself). */
import type { ReplicaState } from '../../src/training/learner/replica.js';

/**
 * Largest per-tensor relative difference `max|a − b| / max|b|` over every tensor of `expected` (parameters and
 * BatchNorm statistics).
 * @throws Error when a tensor is missing or has another shape
 */
export function maxRelativeDiff(got: ReplicaState, expected: ReplicaState): { worst: number; name: string } {
  const byName = new Map(got.tensors.map((t) => [t.name, t]));
  let worst = 0, name = '';
  for (const e of expected.tensors) {
    const g = byName.get(e.name);
    if (!g || g.data.length !== e.data.length) throw new Error(`tensor ${e.name}: missing or other size in the distributed state`);
    let diff = 0, scale = 0;
    for (let i = 0; i < e.data.length; i++) {
      diff = Math.max(diff, Math.abs(g.data[i]! - e.data[i]!));
      scale = Math.max(scale, Math.abs(e.data[i]!));
    }
    const rel = diff / Math.max(scale, 1e-12);
    if (rel > worst || Number.isNaN(rel)) ({ worst, name } = { worst: Number.isNaN(rel) ? Infinity : rel, name: e.name });
  }
  if (byName.size !== expected.tensors.length) throw new Error(`tensor count ${byName.size} ≠ ${expected.tensors.length}`);
  return { worst, name };
}
