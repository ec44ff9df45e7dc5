/**
 * PyTorch parity check of the tfjs ResNet.
 *
 * Usage:
 * ```
 * npm run parity -- --arch <resnet18|resnet34|resnet50|tiny (= resnet10)> --weights <state_dict.safetensors> \
 *   --case <case.safetensors> [--backend <name>] [--json <report.json>] [--dump-masks <masks.safetensors>]
 * npm run parity -- --arch tiny --weights ../shared/fixtures/resnet-tiny/weights.safetensors \
 *   --case ../shared/fixtures/resnet-tiny/case.safetensors --backend cpu
 * ```
 * `tiny` is torchvision's `ResNet(BasicBlock, [1,1,1,1])`. The number of classes is taken from the case's
 * `logits_eval`. Prints the relative error `max|ours − torch| / max|torch|` of the eval logits, train logits,
 * train loss and every `grad.*` in the case, with the tolerances (logits 1e-4, loss 1e-5, gradients
 * `max(1e-3, 2 × PyTorch float32's own error)` when the case records it, see `src/training/model/parity.ts`).
 * Cases: `scripts/parity/make-case.py` (seeded, float64 references); `--dump-masks` writes this backend's ReLU
 * decisions instead of comparing, for `make-case.py --masked-by` (a reference with the same ReLU branches).
 * `--backend`: any value `--backend` of the trainer accepts, or the tfjs name of any other registered backend.
 * Exit code: 0 all within tolerance, 1 some beyond (or a runtime error), 2 bad flag.
 */
import { writeFile } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_REQUESTS, initBackend, parseBackendRequest } from '../src/training/compute/backend.js';
import { registerTfjsGradients } from '../src/training/compute/kernels/gradients.js';
import { TrainerError, isTrainerError } from '../src/contract/errors.js';
import { createResNet } from '../src/training/model/resnet.js';
import { RESNET_ARCHS, type ResNetArch, type ResNetConfig } from '../src/contract/resnet-spec.js';
import { loadTorchStateDict } from '../src/training/model/torch-weights.js';
import { readSafetensors, writeSafetensors, type SafetensorsTensorInput } from '../src/training/model/safetensors.js';
import { caseTolerances, checkParity, recordReluMasks } from '../src/training/model/parity.js';

interface ParityFlags {
  arch: string;
  weights: string;
  case: string;
  backend: string;
  json?: string;
  dumpMasks?: string;
}

/** A `--backend` value of the trainer, or the tfjs name of another registered backend (e.g. one added by a plugin). */
async function activateBackend(name: string): Promise<string> {
  if ((BACKEND_REQUESTS as readonly string[]).includes(name)) return (await initBackend(parseBackendRequest(name))).summary;
  if (tf.findBackendFactory(name) === null) {
    throw new TrainerError('ERR_BAD_FLAG', `--backend must be one of ${BACKEND_REQUESTS.join('|')} or a registered tfjs backend, got ${JSON.stringify(name)}`);
  }
  await registerTfjsGradients();
  if (!(await tf.setBackend(name))) throw new TrainerError('ERR_BACKEND', `tfjs backend ${name} failed to initialise`);
  return `backend: ${name} (registered tfjs backend)`;
}

function parseArch(value: string): ResNetArch | ResNetConfig {
  if (value === 'tiny' || value === 'resnet10') return { block: 'basic', layers: [1, 1, 1, 1] };
  if ((RESNET_ARCHS as readonly string[]).includes(value)) return value as ResNetArch;
  throw new TrainerError('ERR_BAD_FLAG', `--arch must be one of ${[...RESNET_ARCHS, 'tiny', 'resnet10'].join('|')}, got ${JSON.stringify(value)}`);
}

async function run(flags: ParityFlags): Promise<number> {
  const arch = parseArch(flags.arch);
  console.log(await activateBackend(flags.backend));
  const [weights, kase] = await Promise.all([readSafetensors(flags.weights), readSafetensors(flags.case)]);
  const logits = kase.tensors.get('logits_eval');
  if (!logits || logits.shape.length !== 2) throw new TrainerError('ERR_WEIGHTS', `${flags.case}: needs logits_eval [batch, classes]`);
  const model = createResNet(arch, { numClasses: logits.shape[1] });
  try {
    loadTorchStateDict(model, weights.tensors, { source: flags.weights, fc: 'load' });
    if (flags.dumpMasks !== undefined) {
      const masks = recordReluMasks(model, kase.tensors);
      const out = new Map<string, SafetensorsTensorInput>([...masks].map(([n, m]) => [`mask.${n}`, { dtype: 'U8', ...m }]));
      await writeSafetensors(flags.dumpMasks, out, { backend: tf.getBackend(), layout: 'NCHW uint8, 1 where the ReLU output > 0' });
      console.log(`wrote ${masks.size} ReLU masks to ${flags.dumpMasks}`);
      return 0;
    }
    const started = performance.now();
    const report = await checkParity(model, kase.tensors, caseTolerances(kase.metadata));
    const seconds = (performance.now() - started) / 1000;
    for (const e of report.entries) {
      const torch = e.torchFp32Error === null ? '' : `  torch fp32 ${e.torchFp32Error.toExponential(1)}`;
      console.log(`${e.ok ? 'ok  ' : 'FAIL'} ${e.name.padEnd(40)} rel ${e.relError.toExponential(2)}  (tolerance ${e.tolerance.toExponential(1)})${torch}`);
    }
    console.log(`${report.ok ? 'PASS' : 'FAIL'}: ${report.entries.length} quantities on ${tf.getBackend()} in ${seconds.toFixed(1)} s`);
    if (flags.json !== undefined) {
      await writeFile(flags.json, JSON.stringify({ backend: tf.getBackend(), arch: flags.arch, case: flags.case, metadata: kase.metadata, seconds, ...report }, null, 1));
    }
    return report.ok ? 0 : 1;
  } finally {
    model.dispose();
  }
}

/**
 * Entry point.
 * @param argv - arguments after the script name
 * @returns exit code: 0 pass, 1 fail or error, 2 bad flag
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('parity')
    .description('Compare the tfjs ResNet with PyTorch on a recorded case')
    .requiredOption('--arch <arch>', 'resnet18|resnet34|resnet50|tiny (= resnet10)')
    .requiredOption('--weights <file>', 'torchvision state_dict as safetensors')
    .requiredOption('--case <file>', 'case file: input_nchw, labels, logits_eval, loss_train, grad.*')
    .option('--backend <name>', `compute backend: ${BACKEND_REQUESTS.join('|')} or a registered tfjs backend`, 'cpu')
    .option('--json <file>', 'also write the report as JSON')
    .option('--dump-masks <file>', 'write the ReLU masks of a train-mode forward (for make-case.py --masked-by) and exit')
    .exitOverride();
  try {
    program.parse([...argv], { from: 'user' });
    return await run(program.opts<ParityFlags>());
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    console.error(`parity: ${err instanceof Error ? err.message : String(err)}`);
    return isTrainerError(err, 'ERR_BAD_FLAG') ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
