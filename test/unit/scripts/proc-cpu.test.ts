// bench:scaling's CPU columns (scripts/proc-cpu.ts): per-thread CPU time from Linux /proc. Expected values come
// from proc(5): utime and stime are fields 14 and 15 of a task's stat line, in clock ticks of 1/100 s.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { cpuBetween, cpuSecondsOfStat, sampleThreads, type ThreadSample } from '../../../scripts/proc-cpu.js';

test('a stat line: utime + stime in 1/100 s, counted after the last ")" of a comm holding spaces and parentheses', () => {
  // 42 (a) b c) S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime=250 stime=75 …
  const line = '42 (a) b c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 10';
  assert.equal(cpuSecondsOfStat(line), 3.25);
});

test('cpuBetween: main thread apart, others grouped by name, a new thread counts from zero, an ended one is dropped', () => {
  const before: ThreadSample = { pid: 10, threads: new Map([
    [10, { name: 'node', cpuSeconds: 5 }], [11, { name: 'node', cpuSeconds: 1 }], [12, { name: 'ZMQbg/IO/0', cpuSeconds: 0.5 }],
    [13, { name: 'node', cpuSeconds: 9 }],
  ]) };
  const after: ThreadSample = { pid: 10, threads: new Map([
    [10, { name: 'node', cpuSeconds: 7.5 }], [11, { name: 'node', cpuSeconds: 1.25 }], [12, { name: 'ZMQbg/IO/0', cpuSeconds: 0.75 }],
    [14, { name: 'node', cpuSeconds: 0.5 }],
  ]) };
  const s = cpuBetween(before, after);
  assert.equal(s.mainSeconds, 2.5);
  assert.deepEqual(s.otherSeconds, { node: 0.75, 'ZMQbg/IO/0': 0.25 });
  assert.equal(s.busiestOtherSeconds, 0.5);
  assert.equal(s.totalSeconds, 3.5);
});

test('sampleThreads: this process\'s main thread and a worker thread it starts; null for a process that is gone', { skip: process.platform !== 'linux' }, async () => {
  const worker = new Worker('require("node:worker_threads").parentPort.postMessage("up"); setInterval(() => {}, 1000);', { eval: true });
  await new Promise((resolve) => worker.once('message', resolve));
  try {
    const first = sampleThreads(process.pid)!;
    let x = 0;
    for (let i = 0; i < 1e6; i++) x += Math.sqrt(i);
    assert.ok(x > 0);
    const second = sampleThreads(process.pid)!;
    assert.ok(first.threads.has(process.pid) && second.threads.has(process.pid));
    assert.ok(second.threads.size >= 2, `expected the main thread and the worker thread, got ${second.threads.size} threads`);
    const split = cpuBetween(first, second);
    assert.ok(split.mainSeconds >= 0 && split.totalSeconds >= split.mainSeconds);
  } finally {
    await worker.terminate();
  }
  assert.equal(sampleThreads(2 ** 22 + 1), null); // above the kernel's pid_max ceiling (2^22): never a live process
});
