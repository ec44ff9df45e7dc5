/**
 * The tuning settings read from `PETS_*` environment variables, each with its rule, in one place: the code that uses
 * one reads it here, and both commands (`coordinator`, `worker`) check them all before anything starts
 * ({@link checkEnvSettings}). A value outside its rule is refused with ERR_BAD_CONFIG naming the variable, the value
 * and the rule, as a bad `PETS_TRAINER_CACHE_DIR` is. Before, `PETS_NATIVE_THREADS=abc` ran on 1 thread and
 * `PETS_NATIVE_POOL_MIB=-5` with 1024 MiB, `PETS_NATIVE_RETAIN_HEAP=false` kept the heap, `PETS_RING_ADD=JS` and
 * `PETS_WEBGPU_INPUT_GRAD=TFJS` ran the native and tiled code: a typo changed nothing, and said nothing.
 *
 * Unset and blank (only spaces) mean the default, as for the cache folders (`contract/make-dir.ts` `envOrigin`).
 * Not here: the paths (`PETS_TRAINER_CACHE_DIR`, `PETS_TRAINER_WEIGHTS_DIR`, `PETS_NATIVE_ADDON`, `PETS_SHM_ADDON`:
 * refused when used, naming the variable), Dawn's own flags (`PETS_DAWN_FLAGS`, `PETS_WEBGPU_ADAPTER`, Dawn's to
 * judge) and what a coordinator sets for its local workers (`PETS_WORKER_SLOT`, `PETS_COORDINATOR_BUILD`).
 */
import { TrainerError } from './errors.js';
import { shownValue } from './shown-value.js';

/** The variable's value, or undefined when it is unset or blank. */
function setValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value;
}

function refuse(name: string, value: string, rule: string): never {
  throw new TrainerError('ERR_BAD_CONFIG', `${name} must be ${rule}, got ${shownValue(value)}`);
}

/**
 * An integer setting: `fallback` when unset or blank.
 * @param what - what the number is, and its default, for the message (`oneDNN threads per process; unset: 1`)
 * @throws TrainerError ERR_BAD_CONFIG when it is not a decimal integer ≥ `min`
 */
function envInteger(env: NodeJS.ProcessEnv, name: string, min: number, fallback: number, what: string): number {
  const value = setValue(env, name);
  if (value === undefined) return fallback;
  const n = Number(value.trim());
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min) refuse(name, value, `an integer ≥ ${min} (${what})`);
  return n;
}

/**
 * A setting with one non-default value: true when the variable is `on`, false when unset or blank.
 * @throws TrainerError ERR_BAD_CONFIG for any other value
 */
function envSwitch(env: NodeJS.ProcessEnv, name: string, on: string, what: string): boolean {
  const value = setValue(env, name);
  if (value === undefined) return false;
  if (value.trim() !== on) refuse(name, value, `${on} (${what}) or unset`);
  return true;
}

/**
 * oneDNN threads per process, `PETS_NATIVE_THREADS`: an integer ≥ 1, default 1 (one worker per core is this
 * project's unit of parallelism: README, "Workers").
 * @throws TrainerError ERR_BAD_CONFIG naming the variable and the rule
 */
export function nativeThreadsSetting(env: NodeJS.ProcessEnv = process.env): number {
  return envInteger(env, 'PETS_NATIVE_THREADS', 1, 1, 'oneDNN threads per process; unset: 1');
}

/**
 * MiB the native backend's array pool may keep free, `PETS_NATIVE_POOL_MIB`: an integer ≥ 0 (0 turns reuse off),
 * default 1024 (`compute/native/array-pool.ts` `poolBytes` says why).
 * @throws TrainerError ERR_BAD_CONFIG naming the variable and the rule
 */
export function nativePoolMibSetting(env: NodeJS.ProcessEnv = process.env): number {
  return envInteger(env, 'PETS_NATIVE_POOL_MIB', 0, 1024, 'MiB of free arrays the native backend keeps for reuse, 0: none; unset: 1024');
}

/**
 * Whether the native addon keeps freed heap memory for reuse (glibc malloc tuned at `init`): `PETS_NATIVE_RETAIN_HEAP`
 * `0` turns it off (glibc's defaults), `1` or unset keeps it on.
 * @throws TrainerError ERR_BAD_CONFIG for another value
 */
export function nativeRetainHeapSetting(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = setValue(env, 'PETS_NATIVE_RETAIN_HEAP');
  if (value === undefined || value.trim() === '1') return true;
  if (value.trim() === '0') return false;
  return refuse('PETS_NATIVE_RETAIN_HEAP', value, '0 (glibc\'s default malloc settings) or 1 (keep freed heap for reuse; unset: 1)');
}

/**
 * Whether the ring all-reduce's arithmetic is forced to JavaScript, `PETS_RING_ADD=js` (unset: native where built).
 * @throws TrainerError ERR_BAD_CONFIG for another value
 */
export function ringAddJsSetting(env: NodeJS.ProcessEnv = process.env): boolean {
  return envSwitch(env, 'PETS_RING_ADD', 'js', 'the ring\'s sums in JavaScript; unset: native where built');
}

/** The variable that sends the WebGPU input gradient of a convolution to tfjs's own kernel. */
export const INPUT_GRAD_ENV = 'PETS_WEBGPU_INPUT_GRAD';

/**
 * Whether the WebGPU convolution input gradient runs tfjs's own kernel, `PETS_WEBGPU_INPUT_GRAD=tfjs` (unset: this
 * project's tiled kernel). Read at each call, so one process can compare both.
 * @throws TrainerError ERR_BAD_CONFIG for another value
 */
export function inputGradTfjsSetting(env: NodeJS.ProcessEnv = process.env): boolean {
  return envSwitch(env, INPUT_GRAD_ENV, 'tfjs', 'tfjs\'s own WebGPU kernel; unset: this project\'s tiled one');
}

/**
 * Checks every setting above, so that a command refuses a bad one before it starts anything (a worker that read it
 * only at its backend's set-up would end as a lost worker).
 * @throws TrainerError ERR_BAD_CONFIG for the first bad one, naming the variable, its value and its rule
 */
export function checkEnvSettings(env: NodeJS.ProcessEnv = process.env): void {
  nativeThreadsSetting(env);
  nativePoolMibSetting(env);
  nativeRetainHeapSetting(env);
  ringAddJsSetting(env);
  inputGradTfjsSetting(env);
}
