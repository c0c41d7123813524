#!/usr/bin/env bash
# Re-records the data set's real-stack runs (anomaly/data/README.md), then compresses them and
# writes MANIFEST.sha256. Each run starts its own hermetic stack on ephemeral ports, so the runs
# of one group go in parallel. Needs: source scripts/env.sh && cargo xtask wasm &&
# cargo build -p dohguard-scorer. Takes ~30 minutes in two groups:
#   anomaly/data/record-all.sh 'run-0[1-4]' && anomaly/data/record-all.sh 'run-0[5-7]'
#   anomaly/data/record-all.sh            # every run
#   anomaly/data/record-all.sh "run-0[123]"   # only the runs whose name matches (a regex)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
source scripts/env.sh

# name                     seed faults rate day-s minutes [clients, default 6] [only these fault classes]
RUNS=(
  "run-01-train-clean       11 no  40 600 14"
  "run-02-train-faults       1 yes 40 600 13"
  "run-03-val-faults         7 yes 30 480 13"
  "run-04-val-clean         12 no  30 480 13"
  "run-05-test-faults        3 yes 50 720 13"
  "run-06-test-clean        13 no  50 720 8"
  "run-07-test-2x-faults     5 yes 80 600 13"
  "run-08-light-clean       21 no   4 300  8 1"
  "run-09-light-clean       22 no   8 300  8 2"
  "run-10-flush-train       31 yes 30 480  6 6 cache_flush"
  "run-11-flush-val         32 yes 30 480  6 6 cache_flush"
  "run-12-flush-test        33 yes 30 480  6 6 cache_flush"
)

record() {
  local name=$1 seed=$2 faults=$3 rate=$4 day=$5 minutes=$6 clients=${7:-6} classes=${8:-}
  local extra=(--clients "$clients")
  [ "$faults" = no ] && extra+=(--no-faults)
  [ -n "$classes" ] && extra+=(--faults "$classes")
  nice -n 5 cargo xtask record-metrics --out "anomaly/data/$name" --seed "$seed" --rate "$rate" \
    --day-seconds "$day" --minutes "$minutes" "${extra[@]}" > "anomaly/data/$name.log" 2>&1
  gzip -9 -f "anomaly/data/$name/recording.csv"
}

only="${1:-run-}"
pids=()
for spec in "${RUNS[@]}"; do
  read -r name seed faults rate day minutes clients classes <<<"$spec"
  [[ "$name" =~ ^$only ]] || continue
  mkdir -p "anomaly/data/$name"
  record "$name" "$seed" "$faults" "$rate" "$day" "$minutes" "${clients:-6}" "${classes:-}" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
(cd anomaly/data && sha256sum run-*/recording.csv.gz run-*/labels.json run-*/manifest.json > MANIFEST.sha256)
