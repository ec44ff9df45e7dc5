/**
 * PyTorch parity check of the tfjs ResNet.
 *
 * Usage:
 * ```
 * npm run parity -- --arch <resnet18|resnet34|resnet50|tiny (= resnet10)> --weights <state_dict.safetensors> \
 *   --case <case.safetensors> [--backend cpu|wasm|native|auto|tensorflow]
 * npm run parity -- --arch tiny --weights ../shared/fixtures/resnet-tiny/weights.safetensors \
 *   --case ../shared/fixtures/resnet-tiny/case.safetensors --backend cpu
 * ```
 * `tiny` is torchvision's `ResNet(BasicBlock, [1,1,1,1])`. The number of classes is taken from the case's
 * `logits_eval`. Prints the relative error `max|ours − torch| / max|torch|` of the eval logits, train logits,
 * train loss and every `grad.*` in the case, with the tolerances (logits 1e-4, loss 1e-5, gradients 1e-3).
 * Exit code: 0 all within tolerance, 1 some beyond (or a runtime error), 2 bad flag.
 */
import { Command, CommanderError } from 'commander';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseBackendRequest } from '../src/shared/compute/backend.js';
import { TrainerError, isTrainerError } from '../src/shared/errors.js';
import { createResNet } from '../src/shared/model/resnet.js';
import { RESNET_ARCHS, type ResNetArch, type ResNetConfig } from '../src/shared/model/resnet-spec.js';
import { loadTorchStateDict } from '../src/shared/model/torch-weights.js';
import { readSafetensors } from '../src/shared/model/safetensors.js';
import { checkParity } from '../src/shared/model/parity.js';

interface ParityFlags {
  arch: string;
  weights: string;
  case: string;
  backend: string;
}

function parseArch(value: string): ResNetArch | ResNetConfig {
  if (value === 'tiny' || value === 'resnet10') return { block: 'basic', layers: [1, 1, 1, 1] };
  if ((RESNET_ARCHS as readonly string[]).includes(value)) return value as ResNetArch;
  throw new TrainerError('ERR_BAD_FLAG', `--arch must be one of ${[...RESNET_ARCHS, 'tiny', 'resnet10'].join('|')}, got ${JSON.stringify(value)}`);
}

async function run(flags: ParityFlags): Promise<number> {
  const arch = parseArch(flags.arch);
  const choice = await initBackend(parseBackendRequest(flags.backend));
  console.log(choice.summary);
  const [weights, kase] = await Promise.all([readSafetensors(flags.weights), readSafetensors(flags.case)]);
  const logits = kase.tensors.get('logits_eval');
  if (!logits || logits.shape.length !== 2) throw new TrainerError('ERR_WEIGHTS', `${flags.case}: needs logits_eval [batch, classes]`);
  const model = createResNet(arch, { numClasses: logits.shape[1] });
  try {
    loadTorchStateDict(model, weights.tensors, { source: flags.weights, fc: 'load' });
    const started = performance.now();
    const report = await checkParity(model, kase.tensors);
    for (const e of report.entries) {
      console.log(`${e.ok ? 'ok  ' : 'FAIL'} ${e.name.padEnd(40)} rel ${e.relError.toExponential(2)}  (tolerance ${e.tolerance.toExponential(0)})`);
    }
    console.log(`${report.ok ? 'PASS' : 'FAIL'}: ${report.entries.length} quantities on ${tf.getBackend()} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
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
    .option('--backend <name>', 'compute backend: auto|tensorflow|webgpu|native|wasm|cpu', 'cpu')
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
