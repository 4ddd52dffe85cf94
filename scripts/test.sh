#!/usr/bin/env bash
# Builds the environment if needed, then runs the test suite (the full set, slow tests included, under CI=true).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k coco -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
set -euo pipefail
# The HTML reports are checked in a real headless browser (Debian's chromium). Install it when we
# can (root with apt); otherwise that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[gligen-eval] installing chromium for the browser check" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) >&2 \
    || echo "[gligen-eval] could not install chromium; the browser check will skip" >&2
fi
# Tests marked `slow` are deselected by default (tests/conftest.py); CI runs the full set.
# Locally: GLIGEN_EVAL_FULL=1 bash scripts/test.sh, or bash scripts/test.sh -m "".
if [ "${CI:-}" = "true" ]; then
  export GLIGEN_EVAL_FULL=1
fi
python -m pytest -p no:cacheprovider "$@"
