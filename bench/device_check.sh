#!/usr/bin/env bash
# The one-call GPU check (bench/device_check.sh), run from the repository root on the lent
# GPU machine with $OUT set (the folder that comes back):
#   1. the card (nvidia-smi)          2. build + install for sm_90, fail fast on a compiler error
#   3. gpu (and cudasim) tests        4. compute-sanitizer memcheck + racecheck on bench/gpu_smoke.py
#   5. kernel benchmarks (native, nn, numba rows) -> $OUT/bench.json
#   6. the pyengine bench suite (GPU against CPU, whole training steps) -> $OUT/suite.json
#   7. pyengine demo (native and numba against the CPU), its table into the log
#   8. the Markdown table, last on stdout and in $OUT/summary.md
# DEVICE_CHECK_SKIP="bench suite demo" leaves stages out; DEVICE_CHECK_SUITE_ARGS adds
# arguments to stage 6 (e.g. "--families train") and DEVICE_CHECK_DEMO_ARGS to stage 7 (e.g. "--sweep"); DEVICE_CHECK_WORKERS sets the pytest-xdist
# workers of stage 3 (default 8, 0 for one process).
# Every stage runs under `timeout`, sized from what is left of the budget (DEVICE_CHECK_BUDGET
# seconds, default 450: on an H100 the build takes ~40 s, the core gpu tests ~12 s, both
# sanitizers ~12 s, the quick benchmarks ~16 s); a failing test run is recorded and the
# benchmarks still run. Call the device tool with timeout_s a little above the budget. $OUT holds at most 8 files:
# device_check.log build.log pytest.log gpu-tests.xml sanitizer.log bench.json suite.json summary.md
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
LOG="$OUT/device_check.log"
BUDGET=${DEVICE_CHECK_BUDGET:-450}
START=$(date +%s)
declare -a RESULTS=()

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# stage_timeout CAP RESERVE: CAP seconds, or less so that RESERVE seconds stay for later stages.
stage_timeout() { local t=$(( $(left) - $2 )); (( t > $1 )) && t=$1; (( t < 5 )) && t=5; echo "$t"; }
say() { echo "== [$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
record() { RESULTS+=("| $1 | $2 | $(( $(date +%s) - $3 ))s |"); }

say "1. device"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.total --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import sys, cupy, torch; print(sys.version.split()[0], 'cupy', cupy.__version__, 'torch', torch.__version__)" 2>&1 | tee -a "$LOG"

say "2. build (sm_90) and install"
t0=$(date +%s)
export PYENGINE_CUDA=ON  # pyproject passes it to CMake: no silent CUDA-less build
export CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90 -Dpybind11_DIR=$(python3 -m pybind11 --cmakedir)"
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
if ! timeout "$(stage_timeout 150 60)" python3 -m pip install --no-build-isolation --no-deps -v . >"$OUT/build.log" 2>&1; then
  say "BUILD FAILED; the compiler said:"
  grep -E "error|Error|FAILED" "$OUT/build.log" | head -40 | tee -a "$LOG"
  tail -30 "$OUT/build.log" | tee -a "$LOG"
  exit 1
fi
grep -E "spill|stack frame" "$OUT/build.log" | grep -v " 0 bytes" | head -10 | tee -a "$LOG"
# The checkout's own pyengine/ shadows the installed one when run from here: put the built
# extension beside the sources too (ignored by git: *.so).
SO=$(cd /tmp && python3 -c "import pyengine._C as c; print(c.__file__)")
cp "$SO" pyengine/ && echo "extension: $SO" | tee -a "$LOG"
python3 -c "from pyengine.backend import cuda_backend as cb; print('available:', cb.available())" 2>&1 | tee -a "$LOG"
record build ok "$t0"

say "3. gpu and cudasim tests"
t0=$(date +%s)
# --maxfail instead of -x: this run is rare, so it should show every failure it can.
# DEVICE_CHECK_TESTS narrows the run to some test files (default: every gpu/cudasim test).
# SIGINT at the stage limit lets pytest still write its summary and the junit XML; a per-test
# limit (pytest-timeout, where installed) keeps one hung test from eating the stage.
PER_TEST=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90")
# pytest-xdist (on the lent machines' image) spreads the tests over a few processes sharing the
# GPU; DEVICE_CHECK_WORKERS=0 runs them in one process. With 12 workers (2026-11-27, third
# run) every test passed but the workers' teardown hung until the stage limit, losing the
# summary line; 6 and 8 finished cleanly.
WORKERS=${DEVICE_CHECK_WORKERS:-8}
# DEVICE_CHECK_JUNIT=0 leaves out the junit XML (frees one of $OUT's 8 files).
JUNIT=$( [[ ${DEVICE_CHECK_JUNIT:-1} == 0 ]] || echo "--junitxml=$OUT/gpu-tests.xml")
XDIST=$( ((WORKERS > 0)) && python3 -c "import xdist" 2>/dev/null && echo "-n $WORKERS")
# shellcheck disable=SC2086
PYENGINE_DEVICE_TESTS=1 timeout -s INT -k 15 "$(stage_timeout 150 60)" python3 -m pytest ${DEVICE_CHECK_TESTS:-} \
  -m "gpu or cudasim" -q -rfE $PER_TEST $XDIST --maxfail=150 -p no:cacheprovider $JUNIT >"$OUT/pytest.log" 2>&1
rc=$?
grep -E "^(FAILED|ERROR) " "$OUT/pytest.log" | head -30 | tee -a "$LOG"
tail -3 "$OUT/pytest.log" | tee -a "$LOG"
record "gpu tests" "$( ((rc == 0)) && echo pass || echo "FAIL rc=$rc ($(tail -1 "$OUT/pytest.log"))")" "$t0"

say "4. compute-sanitizer"
for tool in memcheck racecheck; do
  t0=$(date +%s)
  timeout "$(stage_timeout 30 30)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    python3 bench/gpu_smoke.py >"$OUT/sanitizer.$tool.tmp" 2>&1
  rc=$?
  { echo "===== $tool"; cat "$OUT/sanitizer.$tool.tmp"; } >>"$OUT/sanitizer.log"; rm -f "$OUT/sanitizer.$tool.tmp"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|FAIL|gpu_smoke:|=====" "$OUT/sanitizer.log" | tail -4 | tee -a "$LOG"
  record "$tool" "$( ((rc == 0)) && echo clean || echo "rc=$rc (see sanitizer.log)")" "$t0"
done

# DEVICE_CHECK_SKIP names stages to leave out, e.g. "bench" or "bench suite".
skip() { [[ " ${DEVICE_CHECK_SKIP:-} " == *" $1 "* ]]; }

say "5. benchmarks"
t0=$(date +%s)
if skip bench; then record benchmarks skipped "$t0"; else
BENCH_RESERVE=60; skip suite && skip demo && BENCH_RESERVE=3
timeout "$(stage_timeout 90 "$BENCH_RESERVE")" python3 bench/gpu_bench.py --quick --out "$OUT/bench.json" \
  --summary "$OUT/summary.md" >>"$LOG" 2>&1
rc=$?
record benchmarks "$( ((rc == 0)) && echo ok || echo "rc=$rc")" "$t0"
fi

say "6. pyengine bench suite (GPU and CPU side by side)"
t0=$(date +%s)
if skip suite; then record "bench suite" skipped "$t0"; else
timeout "$(stage_timeout 90 3)" python3 -m pyengine.cli bench --quick --device all ${DEVICE_CHECK_SUITE_ARGS:-} --out /tmp/suite >>"$LOG" 2>&1
rc=$?
cp /tmp/suite/bench.json "$OUT/suite.json" 2>/dev/null
record "bench suite" "$( ((rc == 0)) && echo ok || echo "rc=$rc")" "$t0"
fi

say "7. pyengine demo on every provider (the README's first command, shorter)"
t0=$(date +%s)
if skip demo; then record demo skipped "$t0"; else
timeout "$(stage_timeout 60 3)" python3 -m pyengine.cli demo --steps "${DEVICE_CHECK_DEMO_STEPS:-40}" --kernels both \
  ${DEVICE_CHECK_DEMO_ARGS:-} --out /tmp/demo >>"$LOG" 2>&1
rc=$?
record demo "$( ((rc == 0)) && echo ok || echo "rc=$rc")" "$t0"
fi

say "8. summary"
STAGES=$(printf '| stage | result | time |\n|---|---|---:|\n'; printf '%s\n' "${RESULTS[@]}")
[ -f "$OUT/summary.md" ] || echo "(no benchmark table: see device_check.log)" >"$OUT/summary.md"
printf '\n%s\n' "$STAGES" >>"$OUT/summary.md"
echo | tee -a "$LOG"
tee -a "$LOG" <"$OUT/summary.md"
