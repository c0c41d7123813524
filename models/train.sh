#!/usr/bin/env bash
# Retrain the shipped model (models/dga-cnn) from ../shared/data, or pass options through:
#   models/train.sh                                  # the default model, ~15 minutes on 2 cores
#   models/train.sh --extra-csv verdicts.csv         # add your organisation's labelled names
#   models/train.sh --csv names.csv --out /tmp/m     # train only on your own CSV
# See models/README.md and `models/train.sh --help`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../scripts/env.sh"
py="${DOHGUARD_PYTHON:-python3}"
[ -x "$py" ] || py="$(command -v python3)"
cd "$here"
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  exec "$py" -m dohguard_models train --help
fi
# nice: other work (builds, tests) shares the two cores; training yields to it.
exec nice -n 10 "$py" -m dohguard_models train "$@"
