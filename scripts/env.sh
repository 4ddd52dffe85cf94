#!/usr/bin/env bash
# Creates (once) and activates the project's virtual environment.
#
# The environment lives outside the clone, keyed by the hash of the dependency pins,
# (requirements/constraints.txt; a new dependency goes there and in pyproject.toml),
# so that fresh clones reuse it: $GLIGEN_EVAL_VENV_ROOT (default ~/.cache/gligen-eval).
# Source this file; afterwards `python`, `pip`, `gligen-eval` and `pytest` are the project's.
set -euo pipefail
_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_py="${PYTHON:-python3}"
_key="$(sha256sum < "$_repo/requirements/constraints.txt" | cut -c1-16)"
_root="${GLIGEN_EVAL_VENV_ROOT:-$HOME/.cache/gligen-eval}"
_venv="$_root/venv-$_key"
if [ ! -x "$_venv/bin/python" ] || [ ! -f "$_venv/.complete" ]; then
  echo "[gligen-eval] building the environment in $_venv (once per dependency set; ~6 GB)" >&2
  rm -rf "$_venv"
  mkdir -p "$_root"
  "$_py" -m venv "$_venv"
  # pip upgrades itself through `python -m pip`; should that leave it broken, ensurepip restores one.
  "$_venv/bin/python" -m pip install -q --upgrade pip >&2 || true
  "$_venv/bin/python" -m pip --version >/dev/null 2>&1 || "$_venv/bin/python" -m ensurepip --upgrade >&2
  # torch/torchvision first and exactly pinned: this pairing is the one that works with ultralytics.
  "$_venv/bin/python" -m pip install -q -c "$_repo/requirements/constraints.txt" torch torchvision >&2
  "$_venv/bin/python" -m pip install -q -c "$_repo/requirements/constraints.txt" -e "$_repo[test]" >&2
  touch "$_venv/.complete"
fi
# Point the editable install at this checkout (cheap, no dependency resolution). The check runs
# outside the checkout: inside it, `import gligen_eval` would find the checkout itself whatever
# the install points at, and subprocesses started elsewhere (pytester) would import another copy.
if ! (cd / && "$_venv/bin/python" - "$_repo") <<'PY' >/dev/null 2>&1
import sys, pathlib, gligen_eval
sys.exit(0 if pathlib.Path(gligen_eval.__file__).resolve().parent.parent == pathlib.Path(sys.argv[1]).resolve() else 1)
PY
then
  "$_venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$_repo" >&2
fi
export VIRTUAL_ENV="$_venv"
export PATH="$_venv/bin:$PATH"
# Offline by default: no hub look-ups, no ultralytics downloads, isolated ultralytics settings.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export YOLO_OFFLINE="${YOLO_OFFLINE:-1}"
export YOLO_AUTOINSTALL="${YOLO_AUTOINSTALL:-false}"
export YOLO_CONFIG_DIR="${YOLO_CONFIG_DIR:-$_root/ultralytics-config}"
mkdir -p "$YOLO_CONFIG_DIR"
set +euo pipefail
