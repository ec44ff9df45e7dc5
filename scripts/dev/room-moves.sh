#!/usr/bin/env bash
# Issue #17 (rooms named by their job): moves what only the coordinator or the scripts use out of src/shared into
# src/coordinator, with the tests that mirror them, then rewrites every relative import (and import.meta.url path)
# and the paths in README.md/docs with scripts/dev/fix-imports.mjs. Replayable: run it from the repository root on
# a clean tree after merging other branches (moves already done are skipped), then `npm run typecheck && npm run lint`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

MOVES=(
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
)

done_moves=()
for ((i = 0; i < ${#MOVES[@]}; i += 2)); do
  from=${MOVES[i]} to=${MOVES[i + 1]}
  if [[ -e $from ]]; then
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
rmdir --ignore-fail-on-non-empty src/shared/metrics src/shared/interpret test/unit/shared/metrics test/unit/shared/interpret 2>/dev/null || true
node scripts/dev/fix-imports.mjs "${done_moves[@]}"
