#!/bin/sh
# The GPU checks of issues 13 and 24 (part 5) in one go, for a machine with CUDA; run from the
# repository root after `make setup`, within about 12 minutes: every step has a time limit,
# a failing step is reported and the next one runs. Each step says where its figures go.
# Without a GPU the same steps run on the CPU (the CUDA-only ones say that they are skipped).
#   sh bench/gpu.sh                          the bundled models
#   UNRAVEL_GPU_MODEL=PATH sh bench/gpu.sh   also a RAVE export (e.g. w12s.ts) in the render
#                                            and voices steps
#   PY=python sh bench/gpu.sh                another interpreter than .venv/bin/python
PY=${PY:-.venv/bin/python}
MODEL=${UNRAVEL_GPU_MODEL:-}
START=$(date +%s)
FAILED=""

step() {  # step NAME LIMIT-SECONDS WHERE-THE-FIGURES-GO COMMAND...
    name=$1 limit=$2 goes=$3
    shift 3
    echo
    echo "=== $name (limit ${limit} s; figures -> $goes)"
    echo "\$ $*"
    t=$(date +%s)
    timeout -k 10 "$limit" "$@"
    rc=$?
    [ $rc -eq 124 ] && echo "--- $name: stopped after $limit s"
    [ $rc -ne 0 ] && FAILED="$FAILED
  $name (exit $rc)"
    echo "--- $name: $(( $(date +%s) - t )) s, exit $rc"
}

skip() {  # skip NAME WHY
    echo
    echo "=== $1: skipped ($2)"
}

"$PY" -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU'); print('load average', open('/proc/loadavg').read().split()[:3])"
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    DEV=cuda
else
    DEV=cpu
    echo "no CUDA GPU: the steps run on the CPU, the CUDA-only ones are skipped"
fi
[ -d build/unravel ] || echo "no build/unravel: the Pd steps need the external (make setup / cmake --build build)"

if [ $DEV = cuda ]; then
    step "CUDA tests" 120 "the note and bench/README.md, GPU section: tests" \
        "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_device.py tests/test_distributed.py
else
    step "CUDA tests (no GPU: only -k cuda, they skip)" 60 "nothing" \
        "$PY" -m pytest -q -p no:cacheprovider -rs -k cuda tests/test_device.py tests/test_distributed.py
fi

step "[unravel~ -g] against the CPU in pd -batch" 90 "bench/README.md, GPU section: render" \
    "$PY" bench/gpu_render.py --model default $MODEL --seconds 10

step "voices on the GPU, bundled model: 1 and 8 objects, -p -g, batch-1/batch-8 on $DEV" 90 \
    "bench/README.md, GPU section: voices (bundled)" \
    "$PY" bench/pd_poly.py --gpu --rounds 1 --seconds 1 3
if [ -n "$MODEL" ]; then
    step "voices on the GPU, $MODEL" 120 "bench/README.md, GPU section: voices (export)" \
        "$PY" bench/pd_poly.py --gpu --model "$MODEL" --rounds 1 --seconds 1 3 --skip "unravel~ x8"
fi

step "decode per block, $DEV" 45 "bench/README.md, GPU section: decode" \
    "$PY" bench/decode.py --device $DEV

if [ $DEV = cuda ]; then
    step "diffusion sampling, cuda" 75 "bench/README.md, GPU section: sampling (cuda)" \
        "$PY" bench/diffusion.py --device cuda --table-seeds 0 --repeats 2
else
    skip "diffusion sampling, cuda" "no CUDA GPU"
fi
step "diffusion sampling, cpu" 60 "bench/README.md, GPU section: sampling (cpu)" \
    "$PY" bench/diffusion.py --device cpu --table-seeds 0 --repeats 2

step "diffusion training throughput, cpu and $DEV" 90 "bench/README.md, GPU section: training" \
    "$PY" bench/train_scale.py --threads 4 --epochs 2

echo
echo "=== total $(( $(date +%s) - START )) s"
if [ -n "$FAILED" ]; then
    echo "failed steps:$FAILED"
    exit 1
fi
echo "every step passed"
