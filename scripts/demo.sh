#!/usr/bin/env bash
# Builds the environment if needed, then runs the main job on the embedded default:
# the bundled sample layouts through a tiny randomly initialised GLIGEN model and detector, offline.
# Extra arguments go to `gligen-eval run`, e.g. `bash scripts/demo.sh --out runs/demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
set -euo pipefail
gligen-eval run "$@"
