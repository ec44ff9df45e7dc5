// A coordinator's local workers run the coordinator's build or refuse (contract/build-stamp.ts): a dist/ rebuilt
// while a run goes on (a `git pull` and `npm run build`) must not give it workers that train with other code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COORDINATOR_BUILD_ENV, buildMismatch, loadedBuild } from '../../../src/contract/build-stamp.js';

test('run from the sources (tsx) there is no build', () => {
  assert.equal(loadedBuild(), null);
});

test('a worker of the coordinator\'s build, or of a coordinator that said none, runs', () => {
  assert.equal(buildMismatch({}, 'aaaaaaaaaaaaaaaa'), null);
  assert.equal(buildMismatch({}, null), null);
  assert.equal(buildMismatch({ [COORDINATOR_BUILD_ENV]: 'aaaaaaaaaaaaaaaa' }, 'aaaaaaaaaaaaaaaa'), null);
});

test('a worker of another build than its coordinator\'s refuses, naming both and what to do', () => {
  const why = buildMismatch({ [COORDINATOR_BUILD_ENV]: 'aaaaaaaaaaaaaaaa' }, 'bbbbbbbbbbbbbbbb');
  assert.match(why ?? '', /this worker's code \(build bbbbbbbbbbbbbbbb\) is not its coordinator's \(build aaaaaaaaaaaaaaaa\): dist\/ was rebuilt since the coordinator started; stop the coordinator and start it again/);
  assert.match(buildMismatch({ [COORDINATOR_BUILD_ENV]: 'aaaaaaaaaaaaaaaa' }, null) ?? '', /build unstamped/);
});
