#!/usr/bin/env bash
# Launch an o1jax command on every host of a Cloud TPU VM slice (JAX's own multi-host runtime: jax.distributed;
# on TPU the peers are auto-detected, so each host runs the same command with mesh.distributed=true).
#
#   tpu/launch.sh --name my-v5p-64 --zone us-east5-a [--project P] [--create v5p-64 --version v2-alpha-tpuv5]
#                 [--dry-run] -- o1jax train sft --model deepseek-coder-1.3b-instruct --data tcg_sft.jsonl --out gs://...
#
# Steps: (optionally) create the slice; copy this checkout to every host; install jax[tpu] and o1jax there; run the
# command on all hosts at once (stdout of each host is prefixed by gcloud). Each host also starts its own execution
# service for rewards: nothing here is a cluster layer of ours.
set -euo pipefail

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

NAME="" ZONE="" PROJECT="" CREATE="" VERSION="v2-alpha-tpuv5" DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --create) CREATE="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "$NAME" && -n "$ZONE" ]] || { echo "error: --name and --zone are required (see --help)" >&2; exit 2; }
[[ $# -gt 0 ]] || { echo "error: no command after -- (e.g. -- o1jax train sft ...)" >&2; exit 2; }

REPO="$(cd "$(dirname "$0")/.." && pwd)"
GC=(gcloud compute tpus tpu-vm)
PROJ=(); [[ -n "$PROJECT" ]] && PROJ=(--project "$PROJECT")
CMD="$(printf '%q ' "$@")"
# Every o1jax train run on a pod turns on jax.distributed; other commands run as given.
if [[ "$1" == "o1jax" && "${2:-}" == "train" ]]; then CMD+=" mesh.distributed=true"; fi

run() { if [[ $DRY == 1 ]]; then printf '+ %s\n' "$*"; else "$@"; fi; }

if [[ -n "$CREATE" ]]; then
  run "${GC[@]}" create "$NAME" --zone "$ZONE" "${PROJ[@]}" --accelerator-type "$CREATE" --version "$VERSION"
fi
TARBALL="$(mktemp -d)/o1jax.tar.gz"
run git -C "$REPO" archive --format=tar.gz -o "$TARBALL" HEAD
run "${GC[@]}" scp "$TARBALL" "$NAME:~/o1jax.tar.gz" --zone "$ZONE" "${PROJ[@]}" --worker=all
run "${GC[@]}" ssh "$NAME" --zone "$ZONE" "${PROJ[@]}" --worker=all --command \
  "mkdir -p ~/o1jax && tar -xzf ~/o1jax.tar.gz -C ~/o1jax && cd ~/o1jax && python3 -m venv ~/.o1jax && . ~/.o1jax/bin/activate && pip install -q -U 'jax[tpu]' -e ."
run "${GC[@]}" ssh "$NAME" --zone "$ZONE" "${PROJ[@]}" --worker=all --command \
  "cd ~/o1jax && . ~/.o1jax/bin/activate && $CMD"
