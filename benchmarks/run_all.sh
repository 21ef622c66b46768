#!/usr/bin/env bash
# Run every benchmark and collect their Markdown sections into benchmarks/RESULTS.md.
# Usage: bash benchmarks/run_all.sh [--quick]
#   --quick: smaller inputs (minutes instead of tens of minutes); the sizes used are printed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
QUICK=${1:-}
if [ "$QUICK" = "--quick" ]; then
  R=1000000
else
  R=6000000
fi
out=RESULTS.md
tmp=$(mktemp)
{
  echo "# readtax benchmark results"
  echo
  echo "Machine: $($PY -c 'from common import machine; print(machine())')  "
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')  "
  echo "Reads at 1x: $R (150 bp, 3,507 skewed classes, synthetic; benchmarks/synth.py)"
  echo
} > "$tmp"
# SKIP="subset accuracy" leaves those benchmarks out.
SKIP=${SKIP:-}
run() {
  local name=$1; shift
  case " $SKIP " in *" $name "*) echo "(skipped $name)" >&2; return 0;; esac
  echo ">> $name" >&2
  local part
  part=$(mktemp)
  if "$PY" "$@" > "$part"; then
    if grep -q '^## ' "$part"; then cat "$part" >> "$tmp"
    else  # plain-text reports get a heading and a code fence
      { echo "## $name"; echo; echo '```'; cat "$part"; echo '```'; } >> "$tmp"
    fi
  else
    { cat "$part"; echo "($name failed)"; } >> "$tmp"
  fi
  echo >> "$tmp"
  rm -f "$part"
}
run stats bench_stats.py --reads "$R"
run subset bench_subset.py --reads "$R"
run store bench_store.py --reads "$R"
run stream bench_stream.py --reads "$R"
run models bench_models.py
run predict bench_predict.py
# Without CUDA only the CPU smoke mode runs (tiny models: says nothing about GPU throughput).
GPU_FLAG=$("$PY" -c 'import torch; print("" if torch.cuda.is_available() else "--tiny")')
run gpu_train gpu_train.py $GPU_FLAG
run kraken kraken_compare.py
if [ "$QUICK" = "--quick" ]; then
  run accuracy accuracy_compare.py --quick
  run real-genomes real_genomes.py --quick
else
  run accuracy accuracy_compare.py
  run real-genomes real_genomes.py
fi
mv "$tmp" "$out"
echo "wrote benchmarks/$out" >&2
