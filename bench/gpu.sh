#!/usr/bin/env bash
# The one-call GPU benchmark: everything a lent GPU machine should measure, in stages by priority, each
# appending its results under the output folder as it finishes (so a run cut off by the budget still
# returns every finished stage), then one table (table.md).
#
#   here:  bash ../shared/device/prepare.sh                      # builds .gpu/ (Bun, node_modules, Vulkan)
#   there: bash .gpu/remote.sh bash bench/gpu.sh --budget 540    # results under $OUT
#   CPU:   bash bench/gpu.sh --dry-run                           # lavapipe: small sizes, every stage, no PyTorch
#
# Stages: 1 check (every variant against the float64 reference), 2 tune (the autotuner, f32 then f16 and
# tensor-core cases; its table is cached in <out>/cache and used by the later stages), 3 gemm (f32 n^3,
# beside torch.mm with tf32 off and on, and in bf16 and f16), 4 gemm16 (f16 n^3 without and with tensor
# cores, beside torch.mm's f16, bf16 and tf32), 5 steps (the resnet18 CIFAR b512 and resnet50 224^2 b256 ODC
# steps, beside PyTorch's f32, tf32, bf16 autocast and f16 autocast + GradScaler steps), 6 steps16 (the same
# steps with --precision f16, without and with tensor cores), 7 memory (ImageNet-scale memory ops, beside
# PyTorch's), 8 quality (`--preset mnist`, 80 epochs, `odc eval`, for as many seeds as fit, up to 3;
# skipped, and says so, when the budget is spent). A stage is only started
# when the budget leaves it its minimum, and is stopped at the budget's end.
set -uo pipefail
cd "$(dirname "$0")/.."

budget=540
dry=0
out=${OUT:-bench/out/gpu}
while [ $# -gt 0 ]; do
  case $1 in
    --budget) budget=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "bench/gpu.sh: unknown argument \"$1\" (--budget SECONDS, --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
done
case $budget in '' | *[!0-9]*) echo "bench/gpu.sh: --budget takes whole seconds, got \"$budget\"" >&2; exit 2 ;; esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
export ODC_CACHE_DIR="$out/cache" ODC_TUNE=cached
if command -v bun >/dev/null 2>&1; then run=(bun); else run=(node --import tsx); fi
dryflag=()
[ $dry = 1 ] && dryflag=(--dry-run)
start=$(date +%s)
log="$out/stages.log"
: >"$log"

failed=0 # set by any stage that fails (not by one skipped or cut off for the budget): the exit status

left() { echo $((start + budget - $(date +%s))); }

# stage NAME MIN_SECONDS CMD...: runs CMD if the budget leaves MIN_SECONDS, within what is left; logs the outcome.
stage() {
  local name=$1 min=$2
  shift 2
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt "$min" ]; then
    echo "$name: skipped: ${remaining}s of the budget left, the stage needs ${min}s" | tee -a "$log"
    return 1
  fi
  local t0=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$remaining" "$@" 2>&1 | grep -v 'artificially reduced' | tee -a "$out/$name.out"
  local rc=${PIPESTATUS[0]}
  local status=ok
  [ "$rc" = 124 ] && status="cut off by the budget"
  if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
    status="failed (exit $rc)"
    failed=1
  fi
  echo "$name: $status in $(($(date +%s) - t0))s" | tee -a "$log"
  [ "$rc" = 0 ]
}

torch() { # torch MODE ARGS...: PyTorch's numbers beside ours (not in a dry run; needs python3 with torch)
  [ $dry = 1 ] && return 0
  python3 -c 'import torch' 2>/dev/null || { echo "torch-$1: skipped: no python3 with torch here" | tee -a "$log"; return 0; }
  stage "torch-$1" 20 python3 bench/torch_baseline.py "$@" --out "$out/torch-$1.json"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>/dev/null || echo "no nvidia-smi" >"$out/gpu.txt"
stage check 30 "${run[@]}" bench/gpu-stages.ts check --out "$out" "${dryflag[@]}"
stage tune 30 "${run[@]}" bench/gpu-stages.ts tune --out "$out" "${dryflag[@]}"
stage gemm 30 "${run[@]}" bench/gpu-stages.ts gemm --out "$out" "${dryflag[@]}"
torch gemm gemm --sizes 1024,2048,4096,8192
stage gemm16 30 "${run[@]}" bench/gpu-stages.ts gemm16 --out "$out" "${dryflag[@]}"
stage steps 45 "${run[@]}" bench/gpu-stages.ts steps --out "$out" "${dryflag[@]}"
torch steps steps
stage steps16 45 "${run[@]}" bench/gpu-stages.ts steps16 --out "$out" "${dryflag[@]}"
stage memory 45 "${run[@]}" bench/gpu-stages.ts memory --out "$out" "${dryflag[@]}"
torch memory memory

# Quality: --preset mnist (all 10,000 digits, K 100), 80 epochs, then odc eval, seed after seed while the
# budget lasts (a seed starts only if the last one's time still fits). Dry run: 1 epoch on 600 digits.
if [ $dry = 1 ]; then
  spec=$("${run[@]}" bench/gpu-stages.ts dry-data --out "$out" | tail -1)
  epochs=1 seeds=1 extra=(--data "$spec" --k 10 --batch-size 64) evalextra=(--probe-epochs 2 --no-baseline) min=10
else
  epochs=80 seeds=3 extra=() evalextra=() min=120
fi
need=$min
for seed in $(seq 1 $seeds); do
  q="$out/quality-seed$seed"
  if [ "$(left)" -lt "$need" ]; then
    echo "quality seed $seed: skipped: $(left)s of the budget left, a seed needs ~${need}s" | tee -a "$log"
    echo "{\"seed\": $seed, \"skipped\": \"budget spent ($(left)s left, ~${need}s needed)\"}" >"$q.json"
    continue
  fi
  t0=$(date +%s)
  if stage "quality-seed$seed-train" "$min" "${run[@]}" src/cli/main.ts train --preset mnist --epochs $epochs --seed $seed "${extra[@]}" --out "$q" --quiet &&
    stage "quality-seed$seed-eval" 5 "${run[@]}" src/cli/main.ts eval --run "$q" "${evalextra[@]}" --out "$q/eval.json"; then
    nmi=$(grep -o '"nmi":[^,}]*' "$q/log.jsonl" 2>/dev/null | tail -1 | cut -d: -f2)
    echo "{\"seed\": $seed, \"epochs\": $epochs, \"memoryNmi\": ${nmi:-null}, \"eval\": $(cat "$q/eval.json" 2>/dev/null || echo null)}" >"$q.json"
  else
    echo "{\"seed\": $seed, \"skipped\": \"cut off or failed: see stages.log\"}" >"$q.json"
  fi
  need=$(($(date +%s) - t0))
done

"${run[@]}" bench/gpu-stages.ts table --out "$out" | tee "$out/table.out"
echo "total $(($(date +%s) - start))s of a ${budget}s budget; results in $out$([ $failed = 1 ] && echo '; SOME STAGES FAILED (stages.log)')" | tee -a "$log"
exit $failed
