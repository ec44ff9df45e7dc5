/**
 * Loads tfjs-core's gradient definitions (`tf.grad`, `tf.variableGrads`, optimizers) in Node.
 *
 * tfjs-core's Node bundle (`dist/tf-core.node.js`) leaves the gradients out: they live in
 * `@tensorflow/tfjs-core/dist/register_all_gradients.js`, an ES module whose relative imports have no file
 * extension (`'./gradients/Abs_grad'`), which Node's ESM loader refuses (`ERR_MODULE_NOT_FOUND` /
 * `ERR_UNSUPPORTED_DIR_IMPORT`). Without them every `tf.grad` fails with "gradient function not found for …".
 *
 * This module installs a Node module-resolution hook that, for importers inside `@tensorflow/tfjs-core/dist/` only,
 * retries a failed extensionless relative specifier with `.js`, then imports that file. Its modules share the
 * engine, kernel registry and gradient registry with the Node bundle (tfjs keeps them on the global object), so
 * the gradients register where `tf.grad` looks for them. Cost: ~0.6 s once per process.
 */
import { register } from 'node:module';
import { getGradient } from '@tensorflow/tfjs-core';
import { TrainerError } from '../../../contract/errors.js';

/** The resolve hook (runs on Node's loader thread), as a self-contained ES module. */
const RESOLVE_HOOK_SOURCE = `
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const fromCore = typeof context.parentURL === 'string' && context.parentURL.includes('/@tensorflow/tfjs-core/dist/');
    if (fromCore && specifier.startsWith('.') && !specifier.endsWith('.js')) return next(specifier + '.js', context);
    throw err;
  }
}
`;

let loading: Promise<void> | undefined;

/** True when tfjs's gradient registry already has the gradients (checked on `Conv2D`, `Sum`, `Relu`). */
export function gradientsRegistered(): boolean {
  return ['Conv2D', 'Sum', 'Relu'].every((name) => getGradient(name) !== undefined);
}

async function load(): Promise<void> {
  if (gradientsRegistered()) return;
  register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK_SOURCE)}`);
  try {
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js' as string);
  } catch (err) {
    throw new TrainerError('ERR_BACKEND', 'could not load tfjs-core gradients (register_all_gradients.js)', { cause: err });
  }
  if (!gradientsRegistered()) {
    throw new TrainerError('ERR_BACKEND', 'tfjs-core gradients loaded but Conv2D/Sum/Relu gradients are still missing');
  }
}

/**
 * Registers all of tfjs-core's gradients, once per process (later calls return the same promise). Call it before
 * the first `tf.grad`/`tf.variableGrads`; the backend does not matter.
 *
 * @throws TrainerError ERR_BACKEND (rejected promise) when the gradient module cannot be loaded.
 */
export function registerTfjsGradients(): Promise<void> {
  loading ??= load();
  return loading;
}
