#!/usr/bin/env bash
# CUDA path of the benchmarks, end to end, on a borrowed GPU machine (no internet needed there).
#
# Runs original / masked (α = 0) / shrunk (/ torch-pruning, if importable) for relu3_1 and relu5_1
# at batch 32, 256x256, keep 0.5 on encoder and decoder (the masked row is the gates' eval
# overhead), then the gate overhead of a training step; shrunk vs original with channels_last
# and bf16 autocast on/off; a latency budget built on CUDA (twice: the second from the cache);
# prints the tables and writes CSVs into "${OUT:-reports/gpu}". Takes about 2-5 minutes; every
# step has its own timeout (STEP_TIMEOUT, default 150 s).
#
#   bash benchmarks/gpu_check.sh                  # uses python3 on the PATH
#   PYTHON=/opt/torch/.venv/bin/python3 OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-reports/gpu}"
mkdir -p "$OUT_DIR"
# No install needed: the package is pure Python under lib/ (its dependencies must be present).
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
LIMIT="${STEP_TIMEOUT:-150}"  # seconds per step, so a hang cannot eat the whole lease

echo "== versions"
"$PY" --version
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available(), 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu --format=csv || true
else
    echo "nvidia-smi: not on PATH"
fi
"$PY" - <<'EOF'
import importlib
for name in ("numpy", "pandas", "psutil", "tqdm", "torch_pruning"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError as exc:
        extra = " (optional: no 'torch-pruning' row)" if name == "torch_pruning" else " (REQUIRED)"
        print(f"{name}: NOT importable{extra}: {exc}")
try:
    import pynvml
    pynvml.nvmlInit()
    print("pynvml OK, driver", pynvml.nvmlSystemGetDriverVersion(), "devices", pynvml.nvmlDeviceGetCount())
except Exception as exc:  # ImportError or NVMLError
    print(f"pynvml NOT usable ({exc!r}): gpu_util_pct_* and nvml_mem_used_mib will be empty")
import torch
print("cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
import alphaprune
print("alphaprune", alphaprune.__version__, "from", alphaprune.__file__)
EOF
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "ERROR: torch.cuda.is_available() is False: nothing to check on this machine" >&2; exit 1; }

for layer in relu3_1 relu5_1; do
    echo "== inference: $layer, batch 32, 256x256, keep 0.5, target both"
    timeout "$LIMIT" "$PY" benchmarks/shrink_speed.py --device cuda --layer "$layer" \
        --batch 32 --size 256 --keeps 0.5 --targets both --repeats 300 --warmup 5 \
        --min-block-s 0.5 --sample-interval 0.05 --no-progress \
        --out "$OUT_DIR/shrink_speed_${layer}.csv" --samples-out "$OUT_DIR/samples_${layer}.csv"
done

echo "== training step: gate overhead, relu3_1, batch 32, 256x256"
timeout "$LIMIT" "$PY" benchmarks/gate_overhead.py --device cuda --layer relu3_1 --batch 32 \
    --size 256 --steps 30 --warmup 5 --no-progress --out "$OUT_DIR/gate_overhead_cuda.csv"

echo "== deployment: shrunk vs original, channels_last x bf16 autocast, relu3_1, batch 32, 256x256"
timeout "$LIMIT" "$PY" benchmarks/deploy_gpu.py formats --device cuda --layer relu3_1 \
    --batch 32 --size 256 --keep 0.5 --repeats 30 --out "$OUT_DIR"

echo "== latency budget 0.5 built on CUDA: relu3_1, target both, batch 32, 256x256"
timeout "$LIMIT" "$PY" benchmarks/deploy_gpu.py latency-budget --device cuda --layer relu3_1 \
    --batch 32 --size 256 --budget 0.5 --repeats 30 --cache-dir "$OUT_DIR/latency-cache" \
    --out "$OUT_DIR"

echo "== inference at the report's small size: relu3_1, batch 8, 128x128 (utilisation < 100 %)"
timeout "$LIMIT" "$PY" benchmarks/shrink_speed.py --device cuda --layer relu3_1 \
    --batch 8 --size 128 --keeps 0.5 --targets both --repeats 2000 --warmup 20 \
    --min-block-s 0.5 --sample-interval 0.05 --no-progress \
    --out "$OUT_DIR/shrink_speed_relu3_1_b8_128.csv"

# Engine on CUDA (needs pydantic and pytorch-msssim; carry them as wheels if missing):
# tiny baseline + α-decay pruning + evaluation at the stored α + verified shrink, via the CLI.
if "$PY" -c "import pydantic, pytorch_msssim" 2>/dev/null; then
    echo "== engine on CUDA: train, prune, evaluate, shrink (relu2_1, crop 64)"
    RUNS="$(mktemp -d)"
    cat > "$RUNS/cuda.yaml" <<YAML
name: base
output_dir: $RUNS/runs
device: cuda
epochs: 2
steps_per_epoch: 5
model: {layer: relu2_1}
data: {crop: 64, batch_size: 8, val_crops: 2}
pruning: {keep: 0.5, target: both}
schedule: {kind: linear, start: 1.0, end: 0.0, epochs: 1}
YAML
    timeout "$LIMIT" "$PY" -m alphaprune train "$RUNS/cuda.yaml" --no-progress
    timeout "$LIMIT" "$PY" -m alphaprune prune "$RUNS/cuda.yaml" --set name=pruned \
        --set init_from="$RUNS/runs/base/checkpoints/last.pt" --no-progress
    cat "$RUNS/runs/pruned/metrics.csv"
    timeout "$LIMIT" "$PY" -m alphaprune evaluate "$RUNS/cuda.yaml" --set name=pruned
    timeout "$LIMIT" "$PY" -m alphaprune shrink "$RUNS/cuda.yaml" --set name=pruned
    cp "$RUNS/runs/pruned/metrics.csv" "$OUT_DIR/engine_cuda_metrics.csv"
else
    echo "== engine on CUDA: SKIPPED (pydantic / pytorch-msssim not importable; carry wheels)"
fi

echo "== done; CSVs in $OUT_DIR"
ls -l "$OUT_DIR"
