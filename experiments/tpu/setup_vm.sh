#!/usr/bin/env bash
# On a TPU VM: a virtual environment with the pinned project and the TPU build of the same JAX version.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q -r requirements.txt
JAX_VERSION=$(python -c 'import jax; print(jax.__version__)')
pip install -q "jax[tpu]==${JAX_VERSION}" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html
pip install -q --no-deps -e .
python -c 'import jax; print(jax.device_count(), "devices:", jax.devices()[0].device_kind)'
