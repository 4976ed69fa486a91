#!/usr/bin/env bash
# Runs `python -m cospec_jax.main "$@"` on every VM of a TPU pod slice at once, with jax.distributed enabled.
# Usage: TPU_NAME=<slice> ZONE=<zone> bash experiments/tpu/launch_pod.sh --config=... --workdir=<shared path> ...
# The repository is expected at ~/cospec_jax on every VM (e.g. `--worker=all --command="git clone ..."` first, then
# `bash experiments/tpu/setup_vm.sh` on all workers).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM slice}" "${ZONE:?set ZONE to its zone}"
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  cd ~/cospec_jax && . .venv/bin/activate && \
  COSPEC_DISTRIBUTED=1 python -m cospec_jax.main${ARGS} 2>&1 | tee -a ~/cospec_run.log"
