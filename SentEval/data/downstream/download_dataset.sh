#!/usr/bin/env bash
# Fetch SentEval's evaluation data into this folder and verify it against checksums.sha256.
#   ./download_dataset.sh                 download senteval.tar (princeton-nlp/datasets-for-simcse) and untar
#   ./download_dataset.sh --local DIR     copy the task folders from DIR (e.g. ../shared/data/senteval/downstream)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# a relative --local DIR is taken from the caller's folder, not from this script's
if [[ "${1:-}" == "--local" && -n "${2:-}" && -d "$2" ]]; then set -- "$1" "$(cd "$2" && pwd)"; fi
URL="https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/senteval.tar"
cd "$HERE"
if [[ "${1:-}" == "--local" ]]; then
    SRC="${2:?usage: $0 --local DIR}"
    [[ -d "$SRC" ]] || { echo "error: $SRC: not a directory" >&2; exit 2; }
    # copy exactly the files the checksum list names (paths relative to downstream/)
    while read -r _sum path; do
        [[ -f "$SRC/$path" ]] || { echo "error: $SRC/$path: missing" >&2; exit 2; }
        mkdir -p "$(dirname "$path")"
        cp "$SRC/$path" "$path"
    done < checksums.sha256
else
    command -v wget >/dev/null && wget -q -O senteval.tar "$URL" || curl -fsSL -o senteval.tar "$URL"
    tar xf senteval.tar
    rm senteval.tar
    # the tarball unpacks into downstream/ in some versions; move its content here
    if [[ -d downstream ]]; then cp -r downstream/. . && rm -rf downstream; fi
fi
if sha256sum --quiet -c checksums.sha256; then
    echo "SentEval data OK ($(wc -l < checksums.sha256) files verified)"
else
    echo "error: checksum mismatch (see above); the data differ from the verified copy" >&2
    exit 1
fi
