#!/usr/bin/env bash
# Fetch the supervised training set: 275,601 NLI triplets (sent0, sent1, hard_neg) from SNLI+MNLI.
#   bash data/download_nli.sh                  # from the public Hugging Face dataset of the authors
#   bash data/download_nli.sh --local DIR      # copy nli_*.csv files from a local folder (no network)
set -euo pipefail
if [ "${1:-}" = "--local" ] && [ -n "${2:-}" ] && [ -d "$2" ]; then set -- "$1" "$(cd "$2" && pwd)"; fi
cd "$(dirname "$0")"
URL="https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/nli_for_simcse.csv"
if [ "${1:-}" = "--local" ]; then
  src="${2:?usage: download_nli.sh --local DIR}"
  [ -d "$src" ] || { echo "error: $src: no such folder" >&2; exit 2; }
  shopt -s nullglob
  files=("$src"/nli_*.csv)
  [ "${#files[@]}" -gt 0 ] || { echo "error: $src: no nli_*.csv file in it" >&2; exit 2; }
  for f in "${files[@]}"; do
    head -n 1 "$f" | tr -d '\r' | grep -q '^sent0,sent1,hard_neg$' || { echo "error: $f:1: header is not sent0,sent1,hard_neg" >&2; exit 2; }
    cp "$f" .; echo "copied $(basename "$f") ($(($(wc -l < "$f") - 1)) rows)"
  done
else
  wget -c "$URL" -O nli_for_simcse.csv
  rows=$(($(wc -l < nli_for_simcse.csv) - 1))
  [ "$rows" -eq 275601 ] || echo "warning: nli_for_simcse.csv has $rows rows, expected 275601" >&2
fi
