#!/usr/bin/env bash
# Issue #17 (rooms named by their job): moves what only the coordinator or the scripts use out of src/shared into
# src/coordinator, then splits the rest of src/shared into src/contract (what coordinator and workers agree on) and
# src/training (the library that computes), renames the files whose names misled, with the tests that mirror them,
# and after each phase rewrites every relative import (and import.meta.url path) and the paths in README.md, docs,
# comments, package.json, .ci and deploy with scripts/dev/fix-imports.mjs. Replayable: run it from the repository root on
# a clean tree after merging other branches (moves already done are skipped), then `npm run typecheck && npm run lint`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# Each phase is a list of FROM TO pairs; fix-imports runs after each phase, so a later phase may reuse a name an earlier
# one freed (learner/learner.ts → cnn-learner.ts, then learner/fit.ts → learner.ts).
PHASE1=(
  # The metric catalogue, the recording API, replica agreement and the Grafana dashboard: only the coordinator's
  # /metrics endpoint and scripts/gen-dashboard.ts use them. The endpoint joins them (metrics.ts → metrics/server.ts).
  src/shared/metrics/catalog.ts            src/coordinator/metrics/catalog.ts
  src/shared/metrics/training-metrics.ts   src/coordinator/metrics/training-metrics.ts
  src/shared/metrics/replica-agreement.ts  src/coordinator/metrics/replica-agreement.ts
  src/shared/metrics/dashboard.ts          src/coordinator/metrics/dashboard.ts
  src/coordinator/metrics.ts               src/coordinator/metrics/server.ts
  test/unit/shared/metrics/catalog.test.ts test/unit/coordinator/metrics/catalog.test.ts
  test/unit/coordinator/metrics.test.ts    test/unit/coordinator/metrics/server.test.ts
  # Interpretation (confusion matrix, top losses) and the lr_find plot: the coordinator's predict/interpret/report.
  src/shared/interpret/interpretation.ts   src/coordinator/interpret/interpretation.ts
  src/shared/interpret/lr-find-plot.ts     src/coordinator/interpret/lr-find-plot.ts
  test/unit/shared/interpret/interpretation.test.ts test/unit/coordinator/interpret/interpretation.test.ts
  test/unit/shared/interpret/lr-find-plot.test.ts   test/unit/coordinator/interpret/lr-find-plot.test.ts
  # The scale-out rule for --workers/--accum (lr and batch scaling): the coordinator's option resolution only.
  src/shared/scale-out.ts                  src/coordinator/scale-out.ts
  # The contract room: what coordinator and workers agree on (wire protocol, configuration, the plan's position and
  # schedule rules, the checkpoint file format, error codes, the setup frame's run settings). It imports nothing from
  # the other rooms, so the pieces config.ts and plan.ts needed move with it: the seeded permutation (rng.ts: every
  # rank must draw the same data order), the ResNet architecture spec (arch names and the parameter layout that
  # checkpoints and gradient buckets follow) and the augmentation settings (split out of data/transforms.ts by hand
  # in the same commit; the sampling and rendering stay in training).
  src/shared/protocol                      src/contract/protocol
  src/shared/plan                          src/contract/plan
  src/shared/data/rng.ts                   src/contract/plan/rng.ts
  src/shared/config.ts                     src/contract/config.ts
  src/shared/errors.ts                     src/contract/errors.ts
  src/shared/checkpoint.ts                 src/contract/checkpoint-format.ts
  src/shared/atomic-write.ts               src/contract/atomic-write.ts
  src/shared/run-setup.ts                  src/contract/run-setup.ts
  src/shared/model/resnet-spec.ts          src/contract/resnet-spec.ts
  test/unit/shared/protocol.test.ts        test/unit/contract/protocol.test.ts
  test/unit/shared/plan                    test/unit/contract/plan
  test/unit/shared/config.test.ts          test/unit/contract/config.test.ts
  test/unit/shared/checkpoint.test.ts      test/unit/contract/checkpoint-format.test.ts
  test/unit/shared/atomic-write.test.ts    test/unit/contract/atomic-write.test.ts
  # The coordinator's own: the show_batch PNG grid (coordinator's show-batch.ts and scripts/bench-data.ts draw it),
  # the run-directory maker (driver.ts and scripts/learn.ts), and the checkpoint store (named so beside the format).
  src/shared/data/show-batch.ts            src/coordinator/show-batch-grid.ts
  src/shared/make-dir.ts                   src/coordinator/make-dir.ts
  src/coordinator/checkpoints.ts           src/coordinator/checkpoint-store.ts
  test/unit/shared/data/show-batch.test.ts test/unit/coordinator/show-batch-grid.test.ts
  test/unit/shared/make-dir.test.ts        test/unit/coordinator/make-dir.test.ts
  test/unit/coordinator/checkpoints.test.ts test/unit/coordinator/checkpoint-store.test.ts
  # The training library: everything that computes. Same depth as src/shared (src/X/…), so the import.meta.url
  # paths (native addon search, piscina/worker-thread entries, dawn) keep working from src/ and from dist/.
  src/shared/allreduce                     src/training/allreduce
  src/shared/compute                       src/training/compute
  src/shared/data                          src/training/data
  src/shared/learner                       src/training/learner
  src/shared/model                         src/training/model
  src/shared/download.ts                   src/training/download.ts
  src/shared/entry.ts                      src/training/entry.ts
  test/unit/shared/allreduce               test/unit/training/allreduce
  test/unit/shared/compute                 test/unit/training/compute
  test/unit/shared/data                    test/unit/training/data
  test/unit/shared/learner                 test/unit/training/learner
  test/unit/shared/model                   test/unit/training/model
  test/unit/shared/download.test.ts        test/unit/training/download.test.ts
)
# Names that said the wrong class: learner.ts held CnnLearner, fit.ts held Learner.
PHASE2=(
  src/training/learner/learner.ts          src/training/learner/cnn-learner.ts
  test/unit/training/learner/learner.test.ts test/unit/training/learner/cnn-learner.test.ts
)
PHASE3=(
  src/training/learner/fit.ts              src/training/learner/learner.ts
  test/unit/training/learner/fit.test.ts   test/unit/training/learner/learner.test.ts
)

# Moves one phase's pairs (skipping those already done) and rewrites the paths they change.
apply_phase() {
  local moves=("$@") done_moves=() i from to
  for ((i = 0; i < ${#moves[@]}; i += 2)); do
    from=${moves[i]} to=${moves[i + 1]}
    if [[ -d $from && -d $to ]]; then
      # A folder already moved, with files merged into the old place since: move those one by one.
      local f
      while IFS= read -r f; do
        mkdir -p "$(dirname "$to/${f#"$from"/}")"
        git mv "$f" "$to/${f#"$from"/}"
        echo "moved $f → $to/${f#"$from"/}"
      done < <(git ls-files -- "$from")
    elif [[ -e $from ]]; then
      mkdir -p "$(dirname "$to")"
      git mv "$from" "$to"
      echo "moved $from → $to"
    elif [[ -e $to ]]; then
      echo "already moved: $to"
    else
      echo "neither $from nor $to exists: skipped" >&2
      continue
    fi
    done_moves+=("$from" "$to")
  done
  # Emptied folders go (git does not track folders).
  find src/shared test/unit/shared -depth -type d -empty -delete 2>/dev/null || true
  (( ${#done_moves[@]} == 0 )) || node scripts/dev/fix-imports.mjs "${done_moves[@]}"
}

apply_phase "${PHASE1[@]}"
# Replay guard: phase 2 frees learner.ts for phase 3; once phase 3 ran, learner.ts is the Learner and must stay.
if [[ -e src/training/learner/fit.ts ]]; then
  apply_phase "${PHASE2[@]}"
  apply_phase "${PHASE3[@]}"
else
  echo "already renamed: src/training/learner/{cnn-learner,learner}.ts"
fi
