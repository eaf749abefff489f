#!/usr/bin/env bash
# The GPU benchmarks of bench/RESULTS.md in one go (run on a lent H100/H200; writes tables under $OUT or ./gpu_out).
set -uo pipefail
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
nvidia-smi -L; python3 -c "import jax, flax, transformers, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
# training: SFT step MFU, random-weight Qwen2.5-Coder-1.5B shape, bf16 compute / f32 master weights
timeout 150 python3 bench/training.py --model qwen2.5-coder-1.5b --random-init --dtype bfloat16 --no-torch --no-dpo --steps 3 --results "$OUT/training.md" 2>&1 | grep -v Warning | tail -4
timeout 150 python3 bench/training.py --model qwen2.5-coder-1.5b --random-init --dtype bfloat16 --no-torch --no-dpo --steps 3 --batch 32 --results "$OUT/training.md" 2>&1 | grep -v Warning | tail -4
# sampling: SmolLM2-135M shape (random weights: the GGUF cannot travel to the device), transformers on the same card
timeout 200 python3 bench/sampling.py --model smollm2-135m-instruct --random-init --dtype bfloat16 --batches 1 16 64 --repeats 2 --results "$OUT/sampling.md" 2>&1 | grep -v Warning | tail -8
cat "$OUT"/*.md
