/**
 * What the coordinator tells every worker before training (the `setup` message's JSON frame): the model, the
 * data index (so every worker uses the same items, labels, classes and split), and the all-reduce settings.
 * Validated on arrival with messages that name the field.
 */
import { ARCHS, type Arch } from './config.js';
import { TrainerError } from './errors.js';
import { transformProblem, type TransformSettings } from './transform-settings.js';

/** The run setup shared by all workers. */
export interface RunSetup {
  /** Run id (also the Prometheus `run` label). */
  readonly runId: string;
  readonly arch: Arch;
  /** Image side, pixels. */
  readonly size: number;
  /** Per-worker micro-batch. */
  readonly bs: number;
  readonly seed: number;
  /** `imagenet`, `none`, or a local path (each worker resolves it: cache or file). */
  readonly pretrained: string;
  /** Freeze state of the first stage. */
  readonly frozen: boolean;
  /** Class names (index = label). */
  readonly classes: readonly string[];
  /** Data root on the coordinator's machine; a worker started with `--data` uses its own instead. */
  readonly dataRoot: string;
  /** Item paths relative to `dataRoot` ('/'-separated). */
  readonly paths: readonly string[];
  /** Label of each item. */
  readonly labels: readonly number[];
  /** Indices of training and validation items. */
  readonly train: readonly number[];
  readonly valid: readonly number[];
  /**
   * Data-plane algorithm: `auto` (shared memory for a generation whose ranks all run on one host, else the ring),
   * `shm` (shared memory only), `ring`, or `star`.
   */
  readonly allreduce: 'auto' | 'ring' | 'shm' | 'star';
  readonly allreduceDtype: 'float32' | 'float16';
  /** Gradient bucket size, bytes. */
  readonly bucketBytes: number;
  /** Limit of one all-reduce, milliseconds. */
  readonly allreduceTimeoutMs: number;
  /** Star baseline's coordinator endpoint (when `allreduce` is `star`). */
  readonly starAddress: string | null;
  /** Decode/augment threads per worker (0 = automatic). */
  readonly threads: number;
  /**
   * Training augmentation (fastai `get_transforms(...)` settings), null for none (centre crop, `--no-augment`);
   * absent: the tutorial's defaults.
   */
  readonly transforms?: TransformSettings | null;
}

function bad(field: string, rule: string, got: unknown): never {
  throw new TrainerError('ERR_PROTOCOL', `setup.${field} must be ${rule}, got ${JSON.stringify(got)?.slice(0, 80)}`);
}

function intArray(field: string, v: unknown, max: number): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0 && x < max)) bad(field, `an array of integers in [0, ${max})`, v);
  return v as number[];
}

/**
 * Parses and validates the setup frame.
 * @param bytes - UTF-8 JSON
 * @throws TrainerError ERR_PROTOCOL naming the first bad field
 */
export function decodeRunSetup(bytes: Uint8Array): RunSetup {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new TrainerError('ERR_PROTOCOL', `setup frame is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null) bad('', 'an object', raw);
  const str = (f: string): string => (typeof raw[f] === 'string' ? (raw[f] as string) : bad(f, 'a string', raw[f]));
  const int = (f: string, min: number): number => (Number.isInteger(raw[f]) && (raw[f] as number) >= min ? (raw[f] as number) : bad(f, `an integer ≥ ${min}`, raw[f]));
  const classes = raw.classes;
  if (!Array.isArray(classes) || classes.length < 2 || !classes.every((c) => typeof c === 'string')) bad('classes', 'an array of ≥ 2 names', classes);
  const paths = raw.paths;
  if (!Array.isArray(paths) || !paths.every((p) => typeof p === 'string')) bad('paths', 'an array of strings', paths);
  const arch = str('arch');
  if (!(ARCHS as readonly string[]).includes(arch)) bad('arch', ARCHS.join('|'), arch);
  const allreduce = str('allreduce');
  if (!['auto', 'ring', 'shm', 'star'].includes(allreduce)) bad('allreduce', 'auto|ring|shm|star', allreduce);
  const dtype = str('allreduceDtype');
  if (dtype !== 'float32' && dtype !== 'float16') bad('allreduceDtype', 'float32|float16', dtype);
  const labels = intArray('labels', raw.labels, classes.length);
  if (labels.length !== paths.length) bad('labels', `one label per path (${paths.length})`, labels.length);
  if (typeof raw.frozen !== 'boolean') bad('frozen', 'a boolean', raw.frozen);
  const transforms = raw.transforms;
  if (transforms !== undefined && transforms !== null) {
    const problem = typeof transforms === 'object' ? transformProblem(transforms as Record<string, unknown>) : 'not an object';
    if (problem !== null) bad('transforms', `null or get_transforms settings (${problem})`, transforms);
  }
  return {
    runId: str('runId'), arch: arch as RunSetup['arch'], size: int('size', 16), bs: int('bs', 1), seed: int('seed', 0),
    pretrained: str('pretrained'), frozen: raw.frozen, classes: classes as string[], dataRoot: str('dataRoot'),
    paths: paths as string[], labels, train: intArray('train', raw.train, paths.length), valid: intArray('valid', raw.valid, paths.length),
    allreduce: allreduce as RunSetup['allreduce'], allreduceDtype: dtype, bucketBytes: int('bucketBytes', 1024), allreduceTimeoutMs: int('allreduceTimeoutMs', 1),
    starAddress: raw.starAddress === null ? null : str('starAddress'), threads: int('threads', 0),
    ...(transforms === undefined ? {} : { transforms: transforms as TransformSettings | null }),
  };
}

/** Encodes a setup as the UTF-8 JSON frame. */
export function encodeRunSetup(setup: RunSetup): Uint8Array {
  return Buffer.from(JSON.stringify(setup), 'utf8');
}
