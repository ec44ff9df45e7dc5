/**
 * Reuse of the native kernels' output arrays. tfjs's `cpu` storage gives every kernel output a fresh zero-filled
 * `Float32Array`; a ResNet34 step at 128 px allocates ~1–3 GB so, and each allocation costs a zero-fill pass, page
 * faults on fresh memory and, through V8's external-memory accounting, frequent full garbage collections (≈ 20 %
 * of the step's CPU time with `perf`). PyTorch's caching CPU allocator reuses freed blocks instead; this pool does
 * the same for the arrays the native kernels create: when tfjs disposes the last tensor of such an array, the array
 * goes back to the pool and the next output of the same length reuses it (without zeroing: every native kernel
 * writes all of its output, which the kernel tests check by poisoning taken arrays with NaN).
 *
 * An array is only reused while nothing outside tfjs's storage can see it. It is never recycled once it
 * - was read out (`dataSync()`, `data()`, `arraySync()`, … all go through the backend's `readSync`, which hands out
 *   the storage array itself on this backend),
 * - got a second storage entry, or a view of it did (tfjs `cpu` kernels such as Slice return `subarray` views of
 *   their input, and a kernel may wrap its input array as an output),
 * - or was moved between backends.
 * The backend ({@link NativeBackend} in `backend.ts`) reports those events through {@link ArrayPool.onWrite},
 * {@link ArrayPool.escape} and {@link ArrayPool.onDispose}.
 */
import { nativePoolMibSetting } from '../../../contract/env-settings.js';

/** Life of an array the pool created. */
const enum State {
  /** Handed out by {@link ArrayPool.take}, not yet stored as a tensor's values. */
  Taken,
  /** The values of exactly one storage entry; may come back when that entry is deleted. */
  Live,
  /** Seen outside the storage: never reused (the garbage collector frees it as usual). */
  Escaped,
  /** In the free list. */
  Free,
}

/** What the pool knows of one array it created. */
interface Entry {
  readonly array: Float32Array;
  state: State;
  /** Storage entries whose values are this array or a view of it. */
  refs: number;
  /** Moved to another backend: never taken back, not even by {@link ArrayPool.giveBack}. */
  moved: boolean;
}

/** Counters, for tests and the bench. */
export interface ArrayPoolStats {
  /** Arrays created (fresh allocations). */
  readonly created: number;
  /** Outputs served from the free list. */
  readonly reused: number;
  /** Arrays that became ineligible (read out, shared or viewed). */
  readonly escaped: number;
  /** Bytes in the free list now. */
  readonly freeBytes: number;
}

/**
 * Free lists of `Float32Array`s by length, with an upper bound on the bytes they hold.
 *
 * @param maxFreeBytes - most bytes kept in the free lists (arrays beyond it are left to the garbage collector);
 *   0 disables reuse
 */
export class ArrayPool {
  private readonly free = new Map<number, Float32Array[]>();
  private readonly states = new WeakMap<ArrayBuffer, Entry>();
  private freeBytes = 0;
  private created = 0;
  private reused = 0;
  private escaped = 0;
  /** Fill every taken array with NaN (tests: a kernel that leaves part of its output unwritten then fails). */
  poison = false;
  /** Called with an array when it is recycled (its contents will change): drop anything derived from it. */
  onRecycle: ((array: Float32Array) => void) | null = null;

  constructor(readonly maxFreeBytes: number) {}

  /** An array of `length` floats for a kernel output, reused when one is free (contents undefined unless poisoned). */
  take(length: number): Float32Array {
    const list = this.free.get(length);
    let array = list?.pop();
    if (array !== undefined) {
      this.freeBytes -= array.byteLength;
      this.reused += 1;
      this.states.get(array.buffer as ArrayBuffer)!.state = State.Taken;
    } else {
      array = new Float32Array(length);
      this.created += 1;
      this.states.set(array.buffer as ArrayBuffer, { array, state: State.Taken, refs: 0, moved: false });
    }
    if (this.poison) array.fill(Number.NaN);
    return array;
  }

  /** The backend stores `values` as a tensor's data: the first time for a taken array, else it is now shared. */
  onWrite(values: unknown): void {
    const s = this.entry(values);
    if (s === undefined) return;
    s.refs += 1;
    if (s.state === State.Taken && s.array === values) s.state = State.Live;
    else this.markEscaped(s);
  }

  /**
   * Whether `values` may be overwritten in place by the storage entry that holds it: a pool array stored as exactly
   * one tensor storage entry (no second entry, no view of it stored, never read out or moved). The in-place AdamW
   * update writes only into such arrays; it copies any other into a pool array first.
   */
  ownsExclusively(values: unknown): boolean {
    const s = this.entry(values);
    return s !== undefined && s.array === values && s.state === State.Live && s.refs === 1;
  }

  /** `values` (or a view of it) is visible outside the storage from now on. */
  escape(values: unknown): void {
    const s = this.entry(values);
    if (s !== undefined) this.markEscaped(s);
  }

  /** `values` moved to another backend: it leaves the pool for good. */
  onMove(values: unknown): void {
    const s = this.entry(values);
    if (s === undefined) return;
    s.moved = true;
    this.markEscaped(s);
  }

  /** The storage entry holding `values` was deleted: a live pool array returns to the free list. */
  onDispose(values: unknown): void {
    const s = this.entry(values);
    if (s === undefined) return;
    s.refs = Math.max(0, s.refs - 1);
    if (s.state !== State.Live || s.array !== values) return;
    this.recycle(s);
  }

  /**
   * The holder of a read-out array (e.g. the flat gradient `Replica.takeGradients` returned) gives it back once
   * it no longer uses it, so the next output of its length reuses it instead of a fresh allocation (for an 87 MB
   * gradient: page faults and the major GC V8 runs for that much new external memory). Taken back only when the
   * pool created it, no tensor's storage holds it or a view of it any more, and it never moved to another
   * backend; otherwise nothing happens. A given-back array may take the free bytes over `maxFreeBytes` (the bound
   * applies to disposed outputs): it is the memory the next step's array of that length would occupy at the same
   * point anyway, and it keeps the free lists' own arrays (the next step's activations) from being pushed out.
   *
   * @returns whether the array went back to the free list
   */
  giveBack(array: Float32Array): boolean {
    const s = this.entry(array);
    if (s === undefined || s.array !== array || s.state !== State.Escaped || s.refs !== 0 || s.moved) return false;
    return this.recycle(s, true);
  }

  private recycle(s: Entry, overBound = false): boolean {
    const array = s.array;
    if (this.maxFreeBytes === 0 || (!overBound && this.freeBytes + array.byteLength > this.maxFreeBytes)) {
      s.state = State.Escaped;
      return false;
    }
    s.state = State.Free;
    this.onRecycle?.(array);
    let list = this.free.get(array.length);
    if (list === undefined) {
      list = [];
      this.free.set(array.length, list);
    }
    list.push(array);
    this.freeBytes += array.byteLength;
    return true;
  }

  /** Empties the free lists. */
  clear(): void {
    for (const list of this.free.values()) {
      for (const a of list) this.states.get(a.buffer as ArrayBuffer)!.state = State.Escaped;
    }
    this.free.clear();
    this.freeBytes = 0;
  }

  stats(): ArrayPoolStats {
    return { created: this.created, reused: this.reused, escaped: this.escaped, freeBytes: this.freeBytes };
  }

  private entry(values: unknown): Entry | undefined {
    if (!ArrayBuffer.isView(values)) return undefined;
    return this.states.get(values.buffer as ArrayBuffer);
  }

  private markEscaped(s: Entry): void {
    if (s.state === State.Escaped) return;
    if (s.state === State.Free) {
      const list = this.free.get(s.array.length)!;
      list.splice(list.indexOf(s.array), 1);
      this.freeBytes -= s.array.byteLength;
    }
    s.state = State.Escaped;
    this.escaped += 1;
  }
}

/**
 * Bytes the pool may keep free: `PETS_NATIVE_POOL_MIB` (an integer ≥ 0; 0 turns reuse off), default 1024 MiB —
 * one micro-batch chunk's activations (the 1 GB budget of `learner/micro-batch.ts`), so that the next chunk or
 * step reuses all of them. With 512 MiB, resnet34/224/bs 16 (chunks of 8) dropped and re-allocated ~600 arrays per
 * step (page faults, GC); with 1024 ~140, 4–8 % less CPU per step, and peak RSS was no higher (1524 vs 1576 MiB:
 * dropped arrays wait for the GC while their replacements are allocated).
 * @throws TrainerError ERR_BAD_CONFIG for another value (`contract/env-settings.ts`; `-5` and `abc` meant 1024)
 */
export function poolBytes(env: NodeJS.ProcessEnv = process.env): number {
  return nativePoolMibSetting(env) * 2 ** 20;
}
