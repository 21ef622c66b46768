#!/usr/bin/env bash
# Run every benchmark: each writes its figures to benchmarks/results/<name>.md (a Markdown
# fragment), then report.py assembles benchmarks/RESULTS.md from all fragments.
# Usage: bash benchmarks/run_all.sh [--quick]
#   --quick: smaller inputs (minutes instead of tens of minutes); fragments get a -quick suffix
#   so that they never replace full-size figures.
# SKIP="subset accuracy" leaves those benchmarks out (their fragments stay as they are).
# A benchmark that fails keeps its previous fragment; the script then exits 1 after the report.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
QUICK=${1:-}
if [ "$QUICK" = "--quick" ]; then
  R=1000000; SUFFIX=-quick
else
  R=6000000; SUFFIX=
fi
SKIP=${SKIP:-}
MACHINE=$($PY -c 'from common import machine; print(machine())')
mkdir -p results
failed=""
run() {
  local name=$1; shift
  case " $SKIP " in *" $name "*) echo "(skipped $name)" >&2; return 0;; esac
  echo ">> $name" >&2
  local part frag=results/$name$SUFFIX.md
  part=$(mktemp)
  if "$PY" "$@" > "$part"; then
    if grep -q '^## ' "$part"; then cp "$part" "$frag.tmp"
    else  # plain-text reports get a dated heading and a code fence
      { echo "## $name ($(date -u '+%Y-%m-%d %H:%M UTC'); $MACHINE; load average" \
             "$(cut -d' ' -f1 /proc/loadavg) at the end${SUFFIX:+; $QUICK})"
        echo; echo '```'; cat "$part"; echo '```'; } > "$frag.tmp"
    fi
    mv "$frag.tmp" "$frag"
  else
    cat "$part" >&2
    echo "($name failed; $frag left as it was)" >&2
    failed="$failed $name"
  fi
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
run accuracy accuracy_compare.py $QUICK
run real-genomes real_genomes.py $QUICK
"$PY" report.py
echo "wrote benchmarks/RESULTS.md" >&2
if [ -n "$failed" ]; then
  echo "failed:$failed" >&2
  exit 1
fi
