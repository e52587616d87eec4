#!/usr/bin/env bash
# A shell in the parcae-runner image on this node, as you, with the checkout, data and results mounted.
#
#   docker/launch_interactive.sh [command ...]             default: bash
#   srun --pty --gres=gpu:1 docker/launch_interactive.sh   on a node of a Slurm allocation, with its GPUs
#
# Environment:
#   IMAGE        the image (default parcae-runner:latest)
#   RESULTS_DIR  mounted as <checkout>/results (default: the checkout's results/)
#   DATA_DIR     mounted as <checkout>/.cache, the data cache (default: the checkout's .cache/)
#   GPUS         all | none | 0,1,... (default: the allocation's GPUs in a Slurm job, else all where the node
#                has the NVIDIA container runtime, else none)
# WANDB_API_KEY (and WANDB_*, HF_TOKEN, HF_HOME) pass by name from your environment: the value is not on the
# command line and is written into no file and no image. The container runs as your uid, without --privileged,
# and is removed when the shell exits; nothing else is touched.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
image="${IMAGE:-parcae-runner:latest}"
results="${RESULTS_DIR:-$repo/results}"
data="${DATA_DIR:-$repo/.cache}"
mkdir -p "$results" "$data"

gpus="${GPUS:-${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-}}}"
if [ -z "$gpus" ] && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
    gpus=all
fi

args=(run --rm --init --name "parcae-interactive-$(id -un)-$$"
    --user "$(id -u):$(id -g)" --network=host --ipc=host
    -v "$repo:$repo" -v "$results:$repo/results" -v "$data:$repo/.cache" -w "$repo"
    -e "PARCAE_CONFIG_DIR=$repo/launch_configs")
if [ -n "${HF_HOME:-}" ] && [ -d "$HF_HOME" ]; then args+=(-v "$HF_HOME:$HF_HOME"); fi
for g in $(id -G); do
    [ "$g" = "$(id -g)" ] || args+=(--group-add "$g")
done
case "$gpus" in
"" | none) ;;
all) args+=(--gpus all) ;;
*) args+=(--gpus "\"device=$gpus\"") ;;
esac
for name in WANDB_API_KEY WANDB_MODE WANDB_ENTITY WANDB_PROJECT HF_TOKEN HF_HOME; do
    # by name only: docker reads the value from this process's environment
    if [ -n "${!name:-}" ]; then args+=(-e "$name"); fi
done
if [ -t 0 ] && [ -t 1 ]; then args+=(-it); else args+=(-i); fi

if [ $# -eq 0 ]; then
    exec docker "${args[@]}" --entrypoint bash "$image"
fi
exec docker "${args[@]}" --entrypoint "$1" "$image" "${@:2}"
