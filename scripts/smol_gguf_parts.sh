#!/usr/bin/env bash
# Carries the SmolLM2 GGUF (98 MB, the teacher of issue 15's linearization) to the GPU machine,
# which has no network and takes at most 64 MiB of carried files a call.
#
#   scripts/smol_gguf_parts.sh pack      here: split the installed GGUF into .gpukit/g0 and g1
#                                        (git-ignored, 47 MiB each) with its checksum
#   scripts/smol_gguf_parts.sh unpack    there, in each call carrying a part: keep it in
#                                        /root/smol-gguf; once both are there, join and check
#                                        them and print the GGUF's path
#
# Then: SMOL_GGUF=/root/smol-gguf/SmolLM2-135M-Instruct.Q4_1.gguf scripts/linearize_gpu.sh text
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
PARTS=2
case "${1:-}" in
pack)
    PY=${PYTHON:-.venv/bin/python}
    src=$("$PY" -c "from m1_runtime.engine.smol_m1 import gguf_path; print(gguf_path())")
    grep -qx '/.gpukit/' .git/info/exclude 2>/dev/null || echo '/.gpukit/' >> .git/info/exclude
    rm -rf .gpukit/g* && tmp=$(mktemp -d)
    size=$(stat -c %s "$src")
    split -d -b $(( (size + PARTS - 1) / PARTS )) "$src" "$tmp/gguf.part"
    for i in $(seq 0 $((PARTS - 1))); do
        mkdir -p ".gpukit/g$i" && mv "$tmp/gguf.part0$i" ".gpukit/g$i/"
        sha256sum "$src" | cut -d' ' -f1 > ".gpukit/g$i/gguf.sha256"
    done
    rmdir "$tmp"
    ls -l .gpukit/g*/ >&2
    ;;
unpack)
    stash=/root/smol-gguf
    mkdir -p "$stash"
    for d in .gpukit/g*/; do
        [ -d "$d" ] || continue
        cp -n "$d"gguf.part* "$stash"/ && cp -f "$d"gguf.sha256 "$stash"/
    done
    if [ -f "$stash/$NAME" ]; then echo "$stash/$NAME"; exit 0; fi
    have=$(ls "$stash"/gguf.part* 2>/dev/null | wc -l)
    if [ "$have" -lt "$PARTS" ]; then
        echo "smol-gguf: $have of $PARTS parts here" >&2
        exit 0
    fi
    cat "$stash"/gguf.part* > "$stash/$NAME.tmp"
    [ "$(sha256sum "$stash/$NAME.tmp" | cut -d' ' -f1)" = "$(cat "$stash/gguf.sha256")" ] ||
        { echo "smol-gguf: checksum mismatch" >&2; exit 1; }
    mv "$stash/$NAME.tmp" "$stash/$NAME" && rm -f "$stash"/gguf.part*
    echo "$stash/$NAME"
    ;;
*)
    echo "usage: $0 pack|unpack" >&2
    exit 2
    ;;
esac
