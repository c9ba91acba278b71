#!/usr/bin/env bash
# Runs every bench/variants/*.py on the lent GPU after bench/device_check.sh has built and
# installed the extension (it copies _C beside the sources). Each script compares versions of
# one kernel family side by side in one process (CUDA events, warm-up, median; see
# ../shared/DESIGN.md) and prints a short Markdown table. Output: $OUT/variants.log, and the
# tables on stdout. DEVICE_VARIANTS_BUDGET seconds in all (default 120), split evenly.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
LOG="$OUT/variants.log"
BUDGET=${DEVICE_VARIANTS_BUDGET:-120}
mapfile -t SCRIPTS < <(ls bench/variants/*.py 2>/dev/null | sort)
(( ${#SCRIPTS[@]} )) || { echo "no bench/variants/*.py" | tee -a "$LOG"; exit 0; }
EACH=$(( BUDGET / ${#SCRIPTS[@]} ))
for s in "${SCRIPTS[@]}"; do
  echo "===== $s (limit ${EACH}s)" | tee -a "$LOG"
  PYTHONUNBUFFERED=1 timeout -k 5 "$EACH" python3 "$s" 2>&1 | tee -a "$LOG" | tail -40
  echo "rc=${PIPESTATUS[0]}" | tee -a "$LOG"
done
