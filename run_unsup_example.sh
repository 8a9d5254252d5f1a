#!/usr/bin/env bash
# Unsupervised SimCSE with the paper's BERT-base hyperparameters (batch 64, lr 3e-5, 1 epoch,
# max length 32, tau 0.05, [CLS] with the MLP in training only), on one GPU or on the CPU.
# Extra arguments are passed through to train.py and override the ones below, e.g.
#   bash run_unsup_example.sh --max_steps 100 --eval_steps 50
# MODEL, TRAIN_FILE and OUTPUT_DIR may be set in the environment. --fp16 falls back to fp32
# (with a warning) on a machine without CUDA; pass --bf16 instead on Ampere or newer.
# For RoBERTa the paper used batch 512 and lr 1e-5 (base) / 3e-5 (large); for BERT-large lr 1e-5.
set -euo pipefail
cd "$(dirname "$0")"
MODEL="${MODEL:-bert-base-uncased}"
TRAIN_FILE="${TRAIN_FILE:-data/wiki1m_for_simcse.txt}"
OUTPUT_DIR="${OUTPUT_DIR:-result/my-unsup-simcse-$(basename "$MODEL")}"

python train.py \
    --model_name_or_path "$MODEL" \
    --train_file "$TRAIN_FILE" \
    --output_dir "$OUTPUT_DIR" \
    --num_train_epochs 1 \
    --per_device_train_batch_size 64 \
    --learning_rate 3e-5 \
    --max_seq_length 32 \
    --evaluation_strategy steps \
    --metric_for_best_model stsb_spearman \
    --load_best_model_at_end \
    --eval_steps 125 \
    --pooler_type cls \
    --mlp_only_train \
    --overwrite_output_dir \
    --temp 0.05 \
    --do_train \
    --do_eval \
    --fp16 \
    "$@"
