#!/usr/bin/env bash
# The whole GPU check in one call (about 8 minutes on an H100/H200), each part with its own time limit:
#   1. benchmarks.gpu_train_epoch: train.py's steady rate at batch 64 (eager bf16, compile + CUDA graphs,
#      compile) and the projected 1M-sentence epoch;
#   2. benchmarks.bench_gpu at batch 512: bf16 autocast eager / compiled, pure bf16 compiled (with and
#      without cuDNN attention), MFU, and a kernel-time profile of the compiled modes.
# Usage: bash benchmarks/gpu_session.sh WIKI_TXT SENTEVAL_DOWNSTREAM_DIR TOKENIZER_DIR   (results in $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
WIKI="${1:?wiki txt}"; SENTEVAL="${2:?senteval downstream dir}"; TOK="${3:?tokenizer dir}"
DEST="${OUT:-gpu_session}"; mkdir -p "$DEST"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
timeout "${EPOCH_LIMIT:-330}" python3 -m benchmarks.gpu_train_epoch --train_file "$WIKI" --senteval_data_dir "$SENTEVAL" \
  --tokenizer "$TOK" --steps 300 --timeout 150 --variants eager_bf16 compile_cg_bf16 compile_bf16 \
  --out "$DEST/train_epoch.json" 2>&1 | grep -vE "Warning|warn\(" | tee "$DEST/train_epoch.log"
timeout "${BENCH_LIMIT:-200}" python3 -m benchmarks.bench_gpu --batch_sizes 512 \
  --modes bf16 bf16_compile bf16_pure_compile bf16_pure_compile_mea --repeats 3 \
  --profile bf16_compile bf16_pure_compile bf16_pure_compile_mea \
  --out "$DEST/gpu_b512.json" 2>&1 | grep -vE "Warning|warn\(" | tee "$DEST/bench_gpu.log"
echo "session done"
