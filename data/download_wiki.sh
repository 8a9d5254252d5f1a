#!/usr/bin/env bash
# Fetch the unsupervised training corpus: 10^6 English Wikipedia sentences (wiki1m_for_simcse.txt).
#   bash data/download_wiki.sh                 # from the public Hugging Face dataset of the authors
#   bash data/download_wiki.sh --local DIR     # copy from a local folder instead (no network needed)
# With --local, DIR may hold wiki1m_for_simcse.txt, or a sample such as wiki1m_sample.txt (the first
# N lines of it, e.g. ../shared/data/wiki), which is then copied under its own name.
set -euo pipefail
if [ "${1:-}" = "--local" ] && [ -n "${2:-}" ] && [ -d "$2" ]; then set -- "$1" "$(cd "$2" && pwd)"; fi
cd "$(dirname "$0")"
URL="https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/wiki1m_for_simcse.txt"
if [ "${1:-}" = "--local" ]; then
  src="${2:?usage: download_wiki.sh --local DIR}"
  [ -d "$src" ] || { echo "error: $src: no such folder" >&2; exit 2; }
  found=0
  for f in "$src"/wiki1m_for_simcse.txt "$src"/wiki1m_sample.txt "$src"/wiki_10k.txt; do
    if [ -f "$f" ]; then cp "$f" .; echo "copied $(basename "$f") ($(wc -l < "$f") lines)"; found=1; fi
  done
  [ "$found" = 1 ] || { echo "error: $src: no wiki1m_for_simcse.txt or wiki sample in it" >&2; exit 2; }
else
  wget -c "$URL" -O wiki1m_for_simcse.txt
  lines=$(wc -l < wiki1m_for_simcse.txt)
  [ "$lines" -eq 1000000 ] || { echo "error: wiki1m_for_simcse.txt has $lines lines, expected 1000000" >&2; exit 1; }
fi
