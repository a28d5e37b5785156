#!/usr/bin/env bash
# The GPU checks of cloud removal in one run of at most 8 minutes, figures written for RESULTS.md.
#
#   bash benchmarks/gpu_check.sh               # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --dry-run     # here: the same steps on the CPU, tiny sizes (checks the script)
#
# Steps, each under its own time limit (seconds), 470 s at most in all:
#   1. the GPU (nvidia-smi) and the generated 10980 x 10980 input tile (written once, 90);
#   2. the full tile through the full-width CRT-UNet (random weights: speed does not depend on them; 100),
#      DSen2-CR on a 4096 px crop extrapolated by tiles to the full tile (90), and the shipped methods
#      (the fill, Automatic for Sentinel-2 alone and with Sentinel-1 + DEM) on a 2048 px crop, extrapolated
#      (the fill runs on the CPU; 90);
#   3. the mixed-precision tolerance check (float16 within AMP_TOLERANCE of float32, CUDA vs CPU; 50);
#   4. training throughput of the full-width CRT-UNet (batch 8, 256 px, float16 autocast), samples/s (50).
# Output: benchmarks/out/gpu_check.md (markdown tables + the raw JSON), or --out FILE.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}  # a Python with CUDA PyTorch, rasterio, GDAL and the requirements
[ -x "$PY" ] || PY=python3
# the sample data (TOPOCLEAR_SHARED_DATA, default ../shared/data) and the plugin importable as `topoclear`
if ! "$PY" -c "import topoclear" 2>/dev/null; then
  mkdir -p build/plugins && ln -sfn "$PWD" build/plugins/topoclear
  export PYTHONPATH="$PWD/build/plugins${PYTHONPATH:+:$PYTHONPATH}"
fi
DRY=0
OUT=benchmarks/out/gpu_check.md
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "unknown argument $1 (use --dry-run, --out FILE)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$DRY" = 1 ]; then
  DEVICE=cpu SIZE=384 NET_CROP=256 DSEN_CROP=0 METHOD_CROP=256 STEPS=2 BATCH=1 PATCH=64 WIDTH=small LIMIT=300
else
  DEVICE=cuda SIZE=10980 NET_CROP=10980 DSEN_CROP=4096 METHOD_CROP=2048 STEPS=30 BATCH=8 PATCH=256 WIDTH=full LIMIT=0
fi
# limit SECONDS: the step's own limit on a GPU, a generous one in the dry run (CPU)
limit() { if [ "$LIMIT" = 0 ]; then echo "$1"; else echo "$LIMIT"; fi; }
mkdir -p "$(dirname "$OUT")" benchmarks/out
WORK=benchmarks/out/gpu_check_work
mkdir -p "$WORK"
START=$(date +%s)
{
  echo "## GPU check ($(date -u +%Y-%m-%dT%H:%MZ), device $DEVICE$([ "$DRY" = 1 ] && echo ', DRY RUN: CPU, tiny sizes'))"
  echo
  echo '```'
  if [ "$DRY" = 0 ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; fi
  "$PY" -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none', platform.processor())"
  echo '```'
  echo
  echo "### Full tile: networks (full width, random weights) and shipped methods"
  echo
} > "$OUT"

# the input tile first (bench_clouds.py writes it once, then every run reuses it)
timeout "$(limit 90)" "$PY" benchmarks/bench_clouds.py --size "$SIZE" --models "" --methods "" --workdir "$WORK" \
  2>&1 | grep '^input' >> "$OUT" || echo "input tile: stopped (time limit or error)" >> "$OUT"
bench() {  # bench LABEL LIMIT ARGS...: one bench_clouds.py run, its table rows into the report
  local label=$1 seconds=$2; shift 2
  timeout "$seconds" "$PY" benchmarks/bench_clouds.py --device "$DEVICE" --size "$SIZE" --workdir "$WORK" \
    --json "$WORK/$label.json" "$@" > "$WORK/$label.log" 2>&1
  local rc=$?
  grep '^|' "$WORK/$label.log" | tail -n +3 >> "$OUT"
  [ $rc = 0 ] || echo "$label: stopped (rc $rc: time limit $seconds s or error; $WORK/$label.log)" >> "$OUT"
}
echo "| model | crop (px) | device | tiles (size, overlap) | time (s) | Mpx/s | full tile, extrapolated (tiles) | peak RSS (MiB) | GPU peak (GiB) |" >> "$OUT"
echo "|---|---|---|---|---|---|---|---|---|" >> "$OUT"
bench networks "$(limit 100)" --crops "$NET_CROP" --models crt_unet --methods ""
if [ "$DSEN_CROP" = 0 ]; then  # full-width DSen2-CR takes minutes per tile on a CPU
  echo "dsen2cr: skipped in the dry run (full width on the CPU takes minutes per tile)" >> "$OUT"
else
  bench dsen2cr "$(limit 90)" --crops "$DSEN_CROP" --models dsen2cr --methods ""
fi
bench methods "$(limit 90)" --crops "$METHOD_CROP" --models "" --methods fill,auto-s2,auto-s1-dem

{
  echo
  echo "### Mixed precision (float16 autocast within tolerance of float32)"
  echo
  echo '```'
} >> "$OUT"
if [ "$DRY" = 1 ]; then
  timeout "$(limit 50)" "$PY" -c "from topoclear.engine.clouds.device import AMP_TOLERANCE; print('AMP_TOLERANCE', AMP_TOLERANCE, '(no CUDA: the check needs a GPU)')" >> "$OUT" 2>&1
else
  timeout "$(limit 50)" xvfb-run -a "$PY" -m pytest -q -p no:cacheprovider tests/test_inference.py \
    -k "mixed_precision" 2>&1 | tail -n 3 >> "$OUT"
fi
echo '```' >> "$OUT"

{
  echo
  echo "### Training throughput (CRT-UNet, $WIDTH width, batch $BATCH, $PATCH px, autocast on CUDA)"
  echo
  echo '```'
} >> "$OUT"
timeout "$(limit 50)" "$PY" - "$DEVICE" "$STEPS" "$BATCH" "$PATCH" "$WIDTH" >> "$OUT" 2>&1 <<'EOF' || echo "training: stopped (time limit or error)" >> "$OUT"
import sys, time
import torch
from topoclear.models import build_model
device, steps, batch, patch, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
options = {} if width == "full" else {"widths": [8, 16, 32, 64, 128, 154]}
model = build_model("crt_unet", s2_bands=10, s1_bands=2, terrain_bands=4, **options).to(device)
opt = torch.optim.Adam(model.parameters(), 2e-4)
cuda = device.startswith("cuda")
scaler = torch.amp.GradScaler("cuda", enabled=cuda)
x = {"s2": torch.rand(batch, 10, patch, patch, device=device), "s1": torch.rand(batch, 2, patch, patch, device=device),
     "terrain": torch.rand(batch, 4, patch, patch, device=device)}
def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.float16, enabled=cuda):
        loss = (model(**x).float() - x["s2"]).abs().mean()
    scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
step()
if cuda: torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(steps): step()
if cuda: torch.cuda.synchronize()
s = time.perf_counter() - t
print(f"crt_unet ({sum(p.numel() for p in model.parameters()):,} parameters): {steps} steps in {s:.2f} s, "
      f"{steps * batch / s:.1f} samples/s on {device}"
      + (f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if cuda else ""))
EOF
echo '```' >> "$OUT"
for f in "$WORK/networks.json" "$WORK/dsen2cr.json" "$WORK/methods.json"; do
  if [ -f "$f" ]; then { echo; echo "Raw: $(basename "$f")"; echo '```json'; cat "$f"; echo; echo '```'; } >> "$OUT"; fi
done
echo "total $(( $(date +%s) - START )) s" >> "$OUT"
echo "wrote $OUT ($(( $(date +%s) - START )) s)"
