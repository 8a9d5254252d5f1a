#!/usr/bin/env bash
# GPU check of the real training path: train.py under torchrun (NCCL, world size 1), bf16, a
# BERT-base-sized model from config (random weights; benchmarks.harness.save_random_encoder with TOK, a tokenizer
# folder or vocab.txt, default the small test vocab), unsup SimCSE on the wiki sample for STEPS steps at
# batch 64, with in-training SentEval dev evaluation, best-checkpoint reload and export. Prints
# train.py's metrics; writes them to $OUT (or ./gpu_check) as JSON.
#   bash benchmarks/gpu_train_check.sh WIKI_TXT SENTEVAL_DOWNSTREAM_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
WIKI="${1:?wiki txt}"; SENTEVAL="${2:?senteval downstream dir}"
STEPS="${STEPS:-200}"
DEST="${OUT:-gpu_check}"; mkdir -p "$DEST"
WORK="$(mktemp -d)"
python3 -c "import sys; from pathlib import Path; \
from benchmarks.harness import save_random_encoder; save_random_encoder(sys.argv[1], Path(sys.argv[2]))" \
  "${TOK:-tests/fixtures/vocab.txt}" "$WORK/bert-base-random"  # BERT-base shape, random weights
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
torchrun --nproc_per_node 1 train.py --model_name_or_path "$WORK/bert-base-random" --train_file "$WIKI" \
  --output_dir "$WORK/run" --max_steps "$STEPS" --per_device_train_batch_size 64 --learning_rate 3e-5 \
  --max_seq_length 32 --evaluation_strategy steps --eval_steps $((STEPS / 2)) --metric_for_best_model stsb_spearman \
  --load_best_model_at_end --pooler_type cls --mlp_only_train --temp 0.05 --do_train --bf16 \
  --senteval_data_dir "$SENTEVAL" --overwrite_output_dir --logging_steps 50 --report_to none \
  --disable_tqdm true --dataloader_num_workers 2 > "$DEST/train.log" 2>&1 \
  || { grep -vE "Warning|warn" "$DEST/train.log" | tail -40; exit 1; }
grep -E "train_|eval_stsb|'loss'" "$DEST/train.log" | tail -12
cp "$WORK/run/all_results.json" "$DEST/gpu_train_results.json"
cp "$WORK/run/log_history.json" "$DEST/gpu_log_history.json"
python3 -c "
import json; r = json.load(open('$DEST/gpu_train_results.json')); print('GPU train.py check:', json.dumps(r))"
ls "$WORK/run"
