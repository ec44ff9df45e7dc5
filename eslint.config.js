// Flat config: typescript-eslint's recommended rules over src, test and scripts.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** An eslint `no-restricted-imports` block forbidding files under `files` to import the sibling rooms `rooms` of src/. */
function roomRule(files, rooms, message) {
  const regex = `^(\\.\\./)+(${rooms.join('|')})(/|$)`;
  return [{
    files: [files],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex, message }] }],
      // no-restricted-imports does not look at import(): the same rule for dynamic imports.
      'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/${regex.replaceAll('/', '\\/')}/]`, message }],
    },
  }];
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'runs/**', '.cache/**', 'docs/**', 'scripts/gpu-check/payload/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { files: ['**/*.js', '**/*.mjs'], languageOptions: { globals: { URL: 'readonly', console: 'readonly', process: 'readonly' } } },
  // The room rule (../shared/STYLE.md rule 1; issue #17's rooms named by their job): src/contract (what coordinator and
  // workers agree on: protocol, config, plan, checkpoint format, errors) imports no other room; src/training (the
  // library that computes: compute, model, learner, data, allreduce) imports only src/contract; src/coordinator and
  // src/worker import both, never each other. Relative imports only climb out of a room with '../', so the patterns
  // match any depth (static imports, `import type`, `export … from`, and import()).
  ...roomRule('src/contract/**', ['training', 'coordinator', 'worker'], 'src/contract must not import src/training, src/coordinator or src/worker (rooms: contract ↛ training, coordinator, worker); move what the contract needs into src/contract'),
  ...roomRule('src/training/**', ['coordinator', 'worker'], 'src/training must not import src/coordinator or src/worker (rooms: training ↛ coordinator, worker); pass what it needs in'),
  ...roomRule('src/coordinator/**', ['worker'], 'the coordinator must not import src/worker (rooms: coordinator ↛ worker); move what both need to src/contract or src/training'),
  ...roomRule('src/worker/**', ['coordinator'], 'a worker must not import src/coordinator (rooms: worker ↛ coordinator); move what both need to src/contract or src/training'),
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
