#!/usr/bin/env bash
# Supervised SimCSE with the paper's hyperparameters: NLI entailment pairs as positives and
# contradictions as hard negatives, 4 GPUs x 128 = global batch 512 (negatives are gathered
# across the GPUs), lr 5e-5, 3 epochs, max length 32, tau 0.05, [CLS] with the MLP kept at test time.
# Extra arguments are passed through to train.py and override the ones below.
# NUM_GPU (default 4), MODEL, TRAIN_FILE, OUTPUT_DIR may be set in the environment. With NUM_GPU=1
# it runs as a single process (then 128 per step, no gathering).
# Multi-node: run this script on every node with the same NNODES, MASTER_ADDR (the NODE_RANK 0 node's
# address) and MASTER_PORT, and NODE_RANK 0, 1, ... The port is fixed (default 29500) so that every node
# uses the same one. Further torchrun flags go through TORCHRUN_ARGS.
set -euo pipefail
cd "$(dirname "$0")"
NUM_GPU="${NUM_GPU:-4}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
MODEL="${MODEL:-bert-base-uncased}"
TRAIN_FILE="${TRAIN_FILE:-data/nli_for_simcse.csv}"
OUTPUT_DIR="${OUTPUT_DIR:-result/my-sup-simcse-$(basename "$MODEL")}"

torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    --nproc_per_node "$NUM_GPU" ${TORCHRUN_ARGS:-} train.py \
    --model_name_or_path "$MODEL" \
    --train_file "$TRAIN_FILE" \
    --output_dir "$OUTPUT_DIR" \
    --num_train_epochs 3 \
    --per_device_train_batch_size 128 \
    --learning_rate 5e-5 \
    --max_seq_length 32 \
    --evaluation_strategy steps \
    --metric_for_best_model stsb_spearman \
    --load_best_model_at_end \
    --eval_steps 125 \
    --pooler_type cls \
    --overwrite_output_dir \
    --temp 0.05 \
    --do_train \
    --do_eval \
    --fp16 \
    "$@"
