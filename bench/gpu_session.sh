#!/usr/bin/env bash
# Every GPU check in one go, for a short session on a machine with a CUDA GPU:
#   bench/gpu_session.sh OUTDIR
# The CUDA tests, the benchmark's GPU cases, a headless 124M run with --compile and
# its --resume, generation from it, and FSDP under torchrun with NCCL. Each step has
# its own time limit and a step that fails does not stop the next; all their output
# lands in OUTDIR/session.log, the benchmark's tables in OUTDIR/bench*.md.
# Runs from a checkout with the machine's own python3 (torch with CUDA); nothing is
# installed and no network is needed beyond what the checkout imports.
set -u
out=${1:?usage: bench/gpu_session.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TUI_GPT_DATA_DIR=$(mktemp -d)
export TUI_GPT_DATA_DIR
python=${PYTHON:-python3}
tui=("$python" -m tui_gpt)
log=$(mktemp)

step() {  # step NAME SECONDS COMMAND...: run it under a time limit; its output goes to OUTDIR/session.log
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name ($(date -u +%H:%M:%S) UTC)" | tee -a "$out/session.log"
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  cat "$log" >>"$out/session.log"
  tail -n "${TAIL:-12}" "$log"
  echo "== $name: exit $rc after $(($(date +%s) - start)) s" | tee -a "$out/session.log"
}

run_124m=(train --preset gpt2-small --context-length 1024 --batch-size 16 --max-steps 40 --eval-freq 20
          --eval-iter 2 --log-every 5 --sample-tokens 20 --run-name gpu-124m)

step machine 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv;
  $python -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(), torch.cuda.is_bf16_supported())'"
step tests 150 "$python" -m pytest -q -m gpu -p no:cacheprovider tests/test_cuda.py
TAIL=40 step bench 220 "$python" -m bench --device cuda --cases train-124m,decode-124m,first-token --repeats 3 --output "$out/bench.md"
step train-compile 150 "${tui[@]}" "${run_124m[@]}" --compile
step train-resume 90 "${tui[@]}" train --resume --run-name gpu-124m --max-steps 50 --log-every 5 --no-compile
step generate 60 "${tui[@]}" generate --run-name gpu-124m --prompt "Every effort moves you" --max-new-tokens 40
step fsdp 90 "$python" -m torch.distributed.run --standalone --nproc_per_node=1 -m tui_gpt train --fsdp \
  --preset gpt2-small --context-length 256 --batch-size 8 --max-steps 4 --eval-freq 2 --sample-tokens 5 --run-name gpu-fsdp
step fsdp-resume-plain 60 "${tui[@]}" train --resume --run-name gpu-fsdp --max-steps 6 --sample-tokens 5
TAIL=20 step bench-compile 200 "$python" -m bench --device cuda --compile --no-peers --cases train-124m --repeats 3 \
  --output "$out/bench-compile.md"
