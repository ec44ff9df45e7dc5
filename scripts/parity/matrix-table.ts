// Markdown table of the parity matrix's JSON reports (scripts/parity/matrix.sh): one row per case and backend.
// Usage: node --import tsx scripts/parity/matrix-table.ts <matrix folder>
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

interface Entry { name: string; relError: number; ok: boolean; torchFp32Error: number | null }
interface Report { entries: Entry[]; metadata?: Record<string, string> }

const dir = process.argv[2]!;
const fmt = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : v.toExponential(1));
const rows = ['| model, px | backend | logits | loss | worst gradient vs float64 (PyTorch fp32 on it) | gradients over max(1e-3, 2×fp32) | worst gradient, mask-matched (PyTorch fp32) | ReLU flips vs float64 |',
  '| --- | --- | --- | --- | --- | --- | --- | --- |'];
for (const c of readdirSync(dir).sort()) {
  for (const f of readdirSync(join(dir, c)).filter((n) => n.endsWith('.json') && !n.includes('masked')).sort()) {
    const backend = f.slice(0, -5);
    const plain: Report = JSON.parse(readFileSync(join(dir, c, f), 'utf8'));
    const maskedPath = join(dir, c, `${backend}-masked.json`);
    const masked: Report | null = existsSync(maskedPath) ? JSON.parse(readFileSync(maskedPath, 'utf8')) : null;
    const get = (r: Report, n: string): Entry | undefined => r.entries.find((e) => e.name === n);
    const worst = (r: Report): Entry => r.entries.filter((e) => e.name.startsWith('grad.')).sort((a, b) => b.relError - a.relError)[0]!;
    const w = worst(plain);
    const wm = masked ? worst(masked) : null;
    const over = plain.entries.filter((e) => e.name.startsWith('grad.') && !e.ok).length;
    const total = plain.entries.filter((e) => e.name.startsWith('grad.')).length;
    rows.push(`| ${c.replace(/-(\d+)$/, ', $1')} | ${backend} | ${fmt(Math.max(get(plain, 'logits_eval')!.relError, get(plain, 'logits_train')?.relError ?? 0))} | ${fmt(get(plain, 'loss_train')!.relError)} | `
      + `${w.name.slice(5)} ${fmt(w.relError)} (${fmt(w.torchFp32Error)}) | ${over} of ${total} | `
      + `${wm ? `${wm.name.slice(5)} ${fmt(wm.relError)} (${fmt(wm.torchFp32Error)})` : '–'} | ${masked?.metadata?.relu_flips_vs_float64 ?? '–'} |`);
  }
}
console.log(rows.join('\n'));
