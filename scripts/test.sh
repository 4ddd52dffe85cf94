#!/usr/bin/env bash
# Builds the environment if needed, then runs the whole test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k coco -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
set -euo pipefail
python -m pytest -p no:cacheprovider "$@"
