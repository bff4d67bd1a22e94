#!/usr/bin/env bash
# jsnn vs SpikingJelly (+ torchattacks) on one NVIDIA GPU, in one prepared run of at most ~8 minutes.
#
#   bash bench/gpu.sh                      # a GPU host: install what is missing, then every benchmark
#   bash bench/gpu.sh --wheels DIR         # a GPU host without internet: pure-Python peers from DIR
#   bash bench/gpu.sh --fetch-wheels DIR   # here (PyPI reachable): fill DIR for --wheels (~1.5 MB)
#   bash bench/gpu.sh --cpu                # no GPU: every benchmark at tiny sizes on the CPU, no installs
#
# What it prints, each figure under the exact command that made it (peer measured in the same run):
#   1. LIF forward+backward at the Open Neuromorphic shapes, B=16, T=500, N=4096 and 16384 (published on
#      an RTX 4090, fwd+bwd at 16k: Spyx fp32 0.076 s, SpikingJelly-CuPy 0.118 s, SpikingJelly-torch 1.34 s):
#      jsnn vs SpikingJelly 2.0 (SJ_LIF_CUDA_IMPLEMENTATION=torch and =triton, its fused kernel) and
#      SpikingJelly 0.0.0.0.14 (LIFNode backend='torch' and backend='cupy', the benchmark's CuPy kernel);
#   2. VGG-11 (CIFAR shapes, 32x32x3, T=8, batch 128, same weights in both): training step, PGD-10 and
#      APGD-CE vs SpikingJelly 2.0 + torchattacks;
#   3. the issue-16 CIFAR setting (T=4, batch 32), same benchmark;
#   4. randomized-smoothing certification throughput (forwards/s; one image, n = 100,000).
# Installs (GPU mode, only what is missing): jax with CUDA (jax[cuda13] for a CUDA 13 driver, else
# jax[cuda12]), torch with CUDA, cupy-cuda13x/12x, and into a private --target folder spikingjelly 2.0.0,
# torchattacks 3.5.1, loguru, ml_collections (jsnn itself runs from this checkout via PYTHONPATH) and,
# in a second folder, spikingjelly 0.0.0.0.14 for the CuPy backend. Every step has a timeout; a failed
# step is reported as FAILED and the others still run; the log is also written to $OUT_DIR/gpu_bench.log.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=gpu
WHEELS=""
OUT_DIR="${OUT_DIR:-${OUT:-/tmp/jsnn_gpu_bench}}"
WORK="${JSNN_GPU_WORK:-/tmp/jsnn_gpu}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-480}"   # 8 minutes in all: a step whose timeout would pass it is skipped

PEER_PINS=(spikingjelly==2.0.0 torchattacks==3.5.1 loguru ml_collections)
LEGACY_PIN=spikingjelly==0.0.0.0.14

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) MODE=cpu; shift ;;
    --wheels) WHEELS="$(cd "$2" && pwd)"; shift 2 ;;
    --fetch-wheels)
      mkdir -p "$2"
      # pure-Python wheels (py3-none-any): the same files serve any Python 3 on the GPU host
      "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$2" "${PEER_PINS[@]}"
      "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$2" "$LEGACY_PIN"  # apart: two versions
      ls -l "$2"; exit 0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument '$1'; allowed: --cpu, --wheels DIR, --fetch-wheels DIR" >&2; exit 2 ;;
  esac
done

mkdir -p "$OUT_DIR" "$WORK"
LOG="$OUT_DIR/gpu_bench.log"
: >"$LOG"
T0=$(date +%s)
FAILED=()
say() { echo "$*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - T0 )); }

# step NAME TIMEOUT_S CMD...: prints the command, runs it under a timeout, keeps going on failure.
step() {
  local name="$1" limit="$2"; shift 2
  if (( $(elapsed) + limit > BUDGET_S + 60 )); then
    say ""; say "### $name: SKIPPED (elapsed $(elapsed) s + timeout $limit s > budget ${BUDGET_S} s)"; return 0
  fi
  say ""; say "### $name   [t=$(elapsed) s, timeout ${limit} s]"
  say "command: $*"
  local rc=0
  timeout --kill-after=10 "$limit" "$@" 2>&1 | grep -v "Triton not available" | tee -a "$LOG" || rc=$?
  [[ $rc -eq 0 ]] || { FAILED+=("$name (rc $rc)"); say "### $name: FAILED (rc $rc)"; }
  return 0
}

pip_install() {  # pip_install TARGET_DIR PKG...: from --wheels DIR if given, else the registry
  local target="$1"; shift
  if [[ -n "$WHEELS" ]]; then
    timeout 120 "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --target "$target" "$@"
  else
    timeout 300 "$PY" -m pip install -q --no-deps --target "$target" "$@"
  fi
}

export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
say "bench/gpu.sh mode=$MODE on $(hostname), $(date -u +%FT%TZ), repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"

if [[ $MODE == gpu ]]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
  CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -1)
  CUDA_MAJOR=${CUDA_MAJOR:-12}; (( CUDA_MAJOR >= 13 )) && CU=13 || CU=12
  say "driver supports CUDA $CUDA_MAJOR -> cuda$CU wheels"
  if ! timeout 120 "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    say "installing jax[cuda$CU]"; timeout 300 "$PY" -m pip install -q -U "jax[cuda$CU]"
  fi
  if ! timeout 120 "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    say "installing torch (PyPI's Linux wheel is a CUDA build)"; timeout 400 "$PY" -m pip install -q torch
  fi
  if ! timeout 60 "$PY" -c "import cupy" 2>/dev/null; then
    say "installing cupy-cuda${CU}x"; timeout 200 "$PY" -m pip install -q "cupy-cuda${CU}x" || say "cupy install failed: the CuPy peer will be reported FAILED"
  fi
  for mod in spikingjelly torchattacks loguru ml_collections; do
    timeout 60 "$PY" -c "import $mod" 2>/dev/null || { pip_install "$WORK/site" "${PEER_PINS[@]}"; break; }
  done
  [[ -d "$WORK/sj14/spikingjelly" ]] || pip_install "$WORK/sj14" "$LEGACY_PIN" || say "spikingjelly 0.0.0.0.14 install failed"
  PEER="$PY"
  XLA_PYTHON_CLIENT_PREALLOCATE=false   # jax and torch share the GPU in turn
  export XLA_PYTHON_CLIENT_PREALLOCATE
else
  PY="${PYTHON:-python}"
  PEER="${PEER_PYTHON:-/work/peer/bin/python}"
  [[ -x "$PEER" ]] || { say "no peer interpreter at $PEER (set PEER_PYTHON): peer columns skipped"; PEER=""; }
  export JAX_PLATFORMS=cpu
fi
export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
# the legacy peer: the same interpreter with spikingjelly 0.0.0.0.14 first on its path
LEGACY="$WORK/python_sj14"
printf '#!/bin/sh\nPYTHONPATH="%s:$PYTHONPATH" exec "%s" "$@"\n' "$WORK/sj14" "$(command -v "${PEER:-$PY}")" >"$LEGACY"
chmod +x "$LEGACY"
[[ -d "$WORK/sj14/spikingjelly" ]] || LEGACY=""

"$PY" -c "import jax; d = jax.devices()[0]; print('jax', jax.__version__, d.platform, d.device_kind)" | tee -a "$LOG"
[[ -z "$PEER" ]] || "$PEER" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | grep -v Triton | tee -a "$LOG"
say "install/check done at t=$(elapsed) s"
cd "$REPO"

PEER_ARG=(); [[ -z "$PEER" ]] || PEER_ARG=(--peer_python="$PEER")
LEGACY_ARG=(); [[ -z "$LEGACY" ]] || LEGACY_ARG=(--legacy_peer_python="$LEGACY")
if [[ $MODE == gpu ]]; then
  step "LIF fwd+bwd, Open Neuromorphic shapes (B=16, T=500, N=4096, 16384)" 150 \
    "$PY" bench/neuron.py "${PEER_ARG[@]}" --peer_device=cuda --peer_impls=torch,triton "${LEGACY_ARG[@]}" \
    --legacy_backends=torch,cupy --Ts=500 --batch=16 --features=4096,16384 --noloop --repeats=20 --slow_repeats=5
  step "LIF fwd+bwd at T=8 and T=128 (B=64, N=1024)" 60 \
    "$PY" bench/neuron.py "${PEER_ARG[@]}" --peer_device=cuda --peer_impls=torch,triton "${LEGACY_ARG[@]}" \
    --legacy_backends=cupy --Ts=8,128 --batch=64 --features=1024 --noloop --repeats=20 --slow_repeats=10
  step "VGG-11 CIFAR, T=8, batch 128: train step, PGD-10, APGD-CE" 170 \
    "$PY" bench/cifar.py "${PEER_ARG[@]}" --peer_device=cuda --peer_impl=auto --T=8 --batch=128 \
    --steps=5 --repeats=5 --attacks=pgd10,apgd-ce --apgd_steps=100
  step "VGG-11 CIFAR, T=4, batch 32 (issue 16): train step, PGD-10" 70 \
    "$PY" bench/cifar.py "${PEER_ARG[@]}" --peer_device=cuda --peer_impl=auto --T=4 --batch=32 \
    --steps=10 --repeats=5 --attacks=pgd10
  step "certification throughput (default digits model, n=100,000)" 60 \
    "$PY" bench/certify.py --n=100000 --n_rate=100000 --batch_size=10000 --repeats=3
else
  step "LIF fwd+bwd (tiny, CPU)" 120 \
    "$PY" bench/neuron.py "${PEER_ARG[@]}" --peer_device=cpu "${LEGACY_ARG[@]}" --legacy_backends=torch \
    --Ts=8,16 --batch=4 --features=64,128 --noloop --repeats=3 --slow_repeats=2
  step "VGG-11 x1/16 CIFAR shapes (tiny, CPU): train step, PGD-10, APGD-CE" 240 \
    "$PY" bench/cifar.py "${PEER_ARG[@]}" --peer_device=cpu --width=0.0625 --T=2 --batch=8 \
    --steps=2 --repeats=2 --attacks=pgd10,apgd-ce --apgd_steps=5 --peer_threads=1
  step "certification throughput (tiny, CPU)" 120 \
    "$PY" bench/certify.py --n=2000 --n_rate=2000 --batch_size=500 --repeats=1
fi

say ""
say "bench/gpu.sh done in $(elapsed) s; log $LOG"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  say "FAILED steps: ${FAILED[*]}"; exit 1
fi
