#!/usr/bin/env bash
# CUDA measurements in one go (< 5 minutes on one GPU), printed as tables:
#   1. bandwidth of the batched torch selectors at [64, 49152] against a device-to-device copy
#      (benchmarks/bench_selectors.py);
#   2. the optimal verifier per row (benchmarks/bench_optimal.py);
#   3. the chain verifier (speculative + block verification) against HF's _speculative_sampling looped
#      over rows and a vLLM-semantics reimplementation, gamma = 1 and 4, B = 64 (bench_peers_torch.py);
#   4. per-round cost of the tree verifiers next to SpecTr's K-SEQ tree (bench_chain.py).
#
# Usage: bash benchmarks/gpu.sh [--device cuda|cpu] [--out DIR]
#   --device cpu runs the same python parts at small sizes on the CPU (a smoke test of this script);
#   without CUDA and without --device cpu it prints a message and exits 0.
set -u
cd "$(dirname "$0")/.."
DEVICE=cuda
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"

if [ "$DEVICE" = cuda ]; then
  if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu.sh: no CUDA device (torch.cuda.is_available() is False): nothing measured."
    echo "gpu.sh: run 'bash benchmarks/gpu.sh --device cpu' to smoke-test the script on the CPU."
    exit 0
  fi
  $PY -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
  SEL="--batch 64 --vocab 49152 --ks 1,2,4,8 --repeats 5"
  OPT="--repeats 3"
  PEERS="--batch 64 --vocab 49152 --gammas 1,4 --repeats 7 --threads 0"
  CHAIN="--batch 64 --vocab 49152 --ks 2,4 --Ls 2,4 --repeats 5 --threads 0 --dtype float32 --methods spectr,bv,gbv,blend"
  LIMIT=70  # 4 parts: under 5 minutes in all
elif [ "$DEVICE" = cpu ]; then
  echo "gpu.sh: --device cpu: small sizes, correctness of the script only (timings mean nothing)"
  SEL="--quick --ks 1,2"
  OPT="--quick --repeats 1"
  PEERS="--batch 4 --vocab 2048 --gammas 1,4 --repeats 2"
  CHAIN="--batch 2 --vocab 512 --ks 2 --Ls 2 --repeats 1"
  LIMIT=600
else
  echo "gpu.sh: --device must be cuda or cpu, got $DEVICE" >&2
  exit 2
fi

[ -n "$OUT" ] && mkdir -p "$OUT"
status=0
run() {  # name, command...
  local name="$1"; shift
  echo
  echo "==================== $name"
  if [ -n "$OUT" ]; then
    timeout "$LIMIT" "$@" 2>&1 | tee "$OUT/$name.txt"
    rc=${PIPESTATUS[0]}
  else
    timeout "$LIMIT" "$@" 2>&1
    rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    echo "gpu.sh: $name exited with status $rc$([ "$rc" -eq 124 ] && echo " (over ${LIMIT}s)")"
    status=1
  fi
}

start=$(date +%s)
run selectors_bandwidth $PY benchmarks/bench_selectors.py --device "$DEVICE" $SEL
run optimal_per_row $PY benchmarks/bench_optimal.py --device "$DEVICE" $OPT
JSON=()
[ -n "$OUT" ] && JSON=(--json "$OUT/peers.json")
run chain_vs_peers $PY benchmarks/bench_peers_torch.py --device "$DEVICE" $PEERS "${JSON[@]}"
run tree_verifiers $PY benchmarks/bench_chain.py --device "$DEVICE" $CHAIN
echo
echo "gpu.sh: done in $(( $(date +%s) - start )) s (status $status)"
exit $status
