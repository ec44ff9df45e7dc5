#!/usr/bin/env bash
# GPU check of the WebGPU path on a bare x86-64 GPU machine (python3 needed; no Node.js, no package registry).
# Needs the payload built by `bash scripts/gpu-check/pack.sh` (carried in scripts/gpu-check/payload/); uses only the
# Node.js, node_modules and (where the machine lacks them) Vulkan loader and device-select layer carried there.
# Stages, each under its own time limit, all within GPU_CHECK_TOTAL_S (default 480 s; a stage gets what is left):
#   adapters  20 s   the WebGPU adapters Dawn finds, and which libvulkan / layer files the process mapped; then
#                    (adapters-select, 20 s) the same with DRI_PRIME = the first NVIDIA GPU, as a local worker asks
#                    (parity and bench run with NODEVICE_SELECT=1: a device-select fault cannot hide their figures)
#   case      45 s   the tiny-ResNet PyTorch parity case, made here by scripts/parity/make-case.py (python3 + torch)
#   parity    75 s   npm run parity -- --backend webgpu --arch tiny (same tolerances as on wasm)
#   bench    210 s   npm run bench:compute -- --backend webgpu --arch resnet34 --size 224 --bs 64 --reps 3: per-shape
#                    convolution GFLOP/s, img/s, peak device memory, per-kernel table
#   dgrad-ab 150 s   scripts/gpu-check/input-grad-ab.ts (same arch/size/bs as bench): tfjs's Conv2DBackpropInput against
#                    this project's (PETS_WEBGPU_INPUT_GRAD=tfjs vs unset) in one process: per shape GPU ms, GFLOP/s and
#                    relative difference, the whole step's img/s, the per-kernel table of one step under each
#   smoke    120 s   the main job: coordinator + 1 local worker (GPU given by the coordinator, as for N workers) on
#                    --backend webgpu, 12 photos, one epoch
#   scaling  200 s   (not in the default list: GPU_CHECK_STAGES=scaling) bench:scaling with 1 and 2 worker processes
#                    on the first GPU (webgpu via --backend auto), resnet34 224 px bs 32, the 296 sample photos at 224 px
# Results under $OUT (default /tmp/gpu-check-out): summary.txt (rewritten after every stage, so it exists whatever
# happens later), gpu-check.log (everything), <stage>.log, mem-<stage>.txt (nvidia-smi samples).
# Env: GPU_CHECK_SMALL=1 tiny sizes (lavapipe/CPU); GPU_CHECK_STAGES (subset, in order); GPU_CHECK_TOTAL_S;
#      GPU_CHECK_WORK (unpack dir, default /tmp/gpu-check-run); GPU_CHECK_FORCE_CARRIED=1 uses the carried Vulkan
#      loader and layer even where the machine has its own (to test the carried files on a machine that has them);
#      GPU_CHECK_BENCH_ARGS (the bench stage's arguments); GPU_CHECK_AB_ARGS (the dgrad-ab stage's); GPU_CHECK_SMOKE_WORKERS (default 1); GPU_CHECK_SMOKE_ARGS; GPU_CHECK_NO_GLVND=1; GPU_CHECK_PYTHON (default python3); GPU_CHECK_LIMIT_SCALE=k multiplies every stage limit (slow machines).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
P=$HERE/payload
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
W=${GPU_CHECK_WORK:-/tmp/gpu-check-run}
TOTAL=${GPU_CHECK_TOTAL_S:-480}
SMALL=${GPU_CHECK_SMALL:-0}
STAGES=${GPU_CHECK_STAGES:-adapters case parity bench dgrad-ab smoke}
PY=${GPU_CHECK_PYTHON:-python3}
SCALE=${GPU_CHECK_LIMIT_SCALE:-1}
LOG=$OUT/gpu-check.log
exec > >(tee -a "$LOG") 2>&1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
echo "=== gpu-check $(date -u +%FT%TZ) host=$(hostname) small=$SMALL budget=${TOTAL}s stages: $STAGES"

# summary: the figures of every stage so far, from the stage logs, into $OUT/summary.txt.
summary() {
  {
    echo "gpu-check summary ($(date -u +%FT%TZ), t=$(elapsed)s of ${TOTAL}s, small=$SMALL)"
    echo "GPUs: ${GPUS:-unknown}"
    grep -hE '^ADAPTER|^MAPPED' "$OUT/adapters.log" 2>/dev/null
    grep -hE '^ADAPTER' "$OUT/adapters-select.log" 2>/dev/null | sed 's/^/with DRI_PRIME of the first GPU: /'
    grep -hiE 'error|fail|could not|not found|undefined symbol|dlopen' "$OUT/adapters-debug.log" 2>/dev/null | head -40 | sed 's/^/loader: /'
    grep -hE '^VK_|^carried' "$OUT/env.txt" 2>/dev/null
    for s in $STAGES; do
      [[ -f $OUT/$s.log ]] || continue
      echo "[$s] $(grep -hE '^=== \['"$s"'\] (rc|TIMED|SKIPPED)' "$LOG" | tail -2 | tr '\n' ' ')"
      grep -hE '^backend:' "$OUT/$s.log" | head -1 | sed 's/^/  /'
      case $s in
        case)   grep -hE '^make-case:' "$OUT/$s.log" | sed 's/^/  /' ;;
        parity) grep -hE '^(PASS|FAIL)' "$OUT/$s.log" | sed 's/^/  /'
                sort -t' ' -k1,1 "$OUT/$s.log" | awk '$0 ~ / rel [0-9.e+-]+ / { for (i = 1; i < NF; i++) if ($i == "rel") print $(i + 1), $2 }' |
                  sort -g | tail -1 | sed 's/^/  largest relative error: /' ;;
        bench)  grep -hiE 'whole training step|whole step|images/s|peak device memory|peak RSS|dispatch|^host:|total of kernels|^total \(weighted' "$OUT/$s.log" | sed 's/^/  /'
                # The profile table's calls column (composite ops, marked *, left out): tfjs kernels per step (a kernel
                # may take more than one dispatch, e.g. the split-K filter gradient takes two). Only that table (its
                # header has an ms column): the dispatch table and the host line after it are not summed.
                awk '/^kernel +calls +ms/ { on = 1; next } /^total of kernels/ { on = 0 } on && $NF != "*" { n += $2 }
                     END { if (n) print "  tfjs kernel calls in one training step (sum of the table rows, tf.profile): " n }' "$OUT/$s.log" ;;
        dgrad-ab) grep -hE '^input gradients of one step|^whole training step|^Conv2DBackpropInput |^total of kernels' "$OUT/$s.log" | sed 's/^/  /' ;;
        smoke)  grep -hE '^\[worker [0-9]+\] backend:' "$OUT/$s.log" | sed 's/^/  /'
                grep -hE 'final error_rate|shutdown|ERR_|Error:' "$OUT/$s.log" | tail -4 | sed 's/^/  /' ;;
        scaling) grep -vE '^(Warning|    at |$)' "$OUT/$s.log" | tail -20 | sed 's/^/  /' ;;
      esac
      grep -hE "^\[$s\] PEAK" "$LOG" | sed 's/^/  /'
    done
  } > "$OUT/summary.txt" 2>/dev/null
}

SMI=$(command -v nvidia-smi || true)
# stage NAME LIMIT_S CMD...: runs in $W under timeout (capped by the budget left), logs to $OUT/NAME.log, samples
# the GPU's memory with nvidia-smi, then rewrites the summary.
stage() {
  local name=$1 lim=$(( $2 * SCALE )); shift 2
  local left=$(( TOTAL - $(elapsed) ))
  if (( left < 10 )); then echo "=== [$name] SKIPPED: budget spent ($(elapsed)s)"; : > "$OUT/$name.log"; summary; return 1; fi
  (( lim > left )) && lim=$left
  echo "=== [$name] start (limit ${lim}s, t=$(elapsed)s): $*"
  local mempid=""
  if [[ -n $SMI ]]; then
    "$SMI" --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$OUT/mem-$name.txt" 2>/dev/null & mempid=$!
  fi
  ( cd "$W" && timeout -k 5 "$lim" "$@" ) > "$OUT/$name.log" 2>&1
  local rc=$?
  cat "$OUT/$name.log"
  if [[ -n $mempid ]]; then
    kill "$mempid" 2>/dev/null; wait "$mempid" 2>/dev/null
    echo "[$name] PEAK GPU memory.used (nvidia-smi, whole GPU): $(sort -n "$OUT/mem-$name.txt" | tail -1) MiB"
  fi
  (( rc == 124 || rc == 137 )) && echo "=== [$name] TIMED OUT after ${lim}s"
  echo "=== [$name] rc=$rc (t=$(elapsed)s)"
  summary
  return $rc
}

echo "--- GPUs"
if [[ -n $SMI ]]; then
  "$SMI" -L
  GPUS=$("$SMI" --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv,noheader | tr '\n' ';')
else
  GPUS="nvidia-smi not found"
fi
echo "$GPUS"
summary

echo "--- unpacking the payload into $W"
[[ -f $P/node.xz ]] || { echo "no payload in $P: run bash scripts/gpu-check/pack.sh first (and carry scripts/gpu-check/payload)"; summary; exit 1; }
rm -rf "$W"; mkdir -p "$W/vk" "$W/lib"
"$PY" - "$P" "$W" <<'PY' || { echo "UNPACK FAILED"; summary; exit 1; }
import lzma, os, shutil, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with lzma.open(os.path.join(src, "node.xz")) as f, open(os.path.join(dst, "node"), "wb") as g:
    shutil.copyfileobj(f, g)
os.chmod(os.path.join(dst, "node"), 0o755)
for name, sub in (("modules.tar.xz", ""), ("app.tar.xz", ""), ("data.tar.xz", ""), ("vulkan.tar.xz", "vk")):
    path = os.path.join(src, name)
    if os.path.exists(path):
        with tarfile.open(path) as t:
            t.extractall(os.path.join(dst, sub))
        print("unpacked", name)
PY
cp "$HERE/adapters.mjs" "$W/"
NODE=$W/node
"$NODE" --version || { echo "the carried node does not run"; summary; exit 1; }

echo "--- Vulkan: loader, layer, driver"
{
  # Each carried library goes on LD_LIBRARY_PATH (via $W/lib) only where the machine's linker cannot find its own.
  LDCACHE=$( { command -v ldconfig >/dev/null && ldconfig -p; } 2>/dev/null || /sbin/ldconfig -p 2>/dev/null)
  for f in "$W"/vk/lib/*; do
    [[ -e $f ]] || continue
    n=$(basename "$f")
    # GPU_CHECK_NO_GLVND=1 leaves glvnd's libraries out (to see the trainer's own diagnosis of a host without them).
    if [[ ${GPU_CHECK_NO_GLVND:-0} == 1 && $n =~ ^lib(GLdispatch|GLX|EGL|GL|OpenGL|GLESv2)\.so ]]; then echo "carried $n: left out (GPU_CHECK_NO_GLVND)"; continue; fi
    if [[ ${GPU_CHECK_FORCE_CARRIED:-0} == 1 ]] || ! grep -q "^[[:space:]]*$n " <<<"$LDCACHE"; then
      ln -sf "$f" "$W/lib/$n"; echo "carried $n: used"
    else
      echo "carried $n: not needed (the machine has it)"
    fi
  done
  # The device-select layer's manifest, where the machine has none (found through XDG_DATA_DIRS/vulkan/implicit_layer.d).
  if [[ -f $W/vk/implicit_layer.d/VkLayer_MESA_device_select.json ]] &&
     { [[ ${GPU_CHECK_FORCE_CARRIED:-0} == 1 ]] || [[ -z $(ls /usr/share/vulkan/implicit_layer.d/*device_select* /etc/vulkan/implicit_layer.d/*device_select* /usr/local/share/vulkan/implicit_layer.d/*device_select* 2>/dev/null) ]]; }; then
    mkdir -p "$W/share/vulkan"; cp -r "$W/vk/implicit_layer.d" "$W/share/vulkan/"
    echo "carried VkLayer_MESA_device_select.json: used"
  fi
} | tee "$OUT/env.txt"
export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
[[ -d $W/share/vulkan ]] && export XDG_DATA_DIRS=$W/share:${XDG_DATA_DIRS:-/usr/local/share:/usr/share}
ICDS=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
echo "ICD files: ${ICDS:-none}"
if [[ -z ${VK_DRIVER_FILES:-} && -z ${VK_ICD_FILENAMES:-} ]] && ! grep -qs nvidia <<<"$ICDS"; then
  # NVIDIA's container toolkit puts the driver's ICD outside the loader's search path (as the probe found).
  for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [[ -f $j ]]; then export VK_DRIVER_FILES=$j; break; fi
  done
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset} LD_LIBRARY_PATH=$LD_LIBRARY_PATH XDG_DATA_DIRS=${XDG_DATA_DIRS:-unset}" | tee -a "$OUT/env.txt"

# The parity case has the shared fixture's shape in both modes: at 32 px, batch 2, layer4's BatchNorm normalises 2
# values per channel, so every gradient upstream is rounding noise (PyTorch fp32's own error 8.8e-4 against float64,
# 2.6e-6 at 64 px, batch 4) and wasm fails it as often as webgpu.
CASE=(--size 64 --batch 4)
if [[ $SMALL == 1 ]]; then
  BENCH=(--arch resnet18 --size 32 --bs 2 --reps 1); SMOKE=(--arch resnet10 --size 32 --bs 2)
  AB=(--arch resnet18 --size 32 --bs 2 --reps 1 --steps 1)
  SCALING=(--arch resnet10 --size 32 --bs 8 --steps 2 --warmup 1)
else
  BENCH=(--arch resnet34 --size 224 --bs 64 --reps 3); SMOKE=(--arch resnet34 --size 128 --bs 8)
  AB=(--arch resnet34 --size 224 --bs 64 --reps 5 --steps 3)
  # 1 and 2 worker processes on the first GPU, the trainer's whole step (decode, all-reduce, AdamW) on the 296 photos.
  SCALING=(--arch resnet34 --size 224 --bs 32 --steps 2 --warmup 1)
fi
# GPU_CHECK_BENCH_ARGS replaces the bench stage's arguments (one word each), e.g. "--arch resnet34 --size 224 --bs 128".
[[ -n ${GPU_CHECK_BENCH_ARGS:-} ]] && read -r -a BENCH <<<"$GPU_CHECK_BENCH_ARGS"
[[ -n ${GPU_CHECK_AB_ARGS:-} ]] && read -r -a AB <<<"$GPU_CHECK_AB_ARGS"
[[ -n ${GPU_CHECK_SMOKE_ARGS:-} ]] && read -r -a SMOKE <<<"$GPU_CHECK_SMOKE_ARGS"
mkdir -p "$W/smoke/data"
cp "$W"/photos/* "$W/smoke/data/"
echo '{"stages":[{"kind":"one_cycle","name":"stage-1","epochs":1,"maxLr":"1e-3","frozen":false}]}' > "$W/smoke/stages.json"

for s in $STAGES; do
  case $s in
    adapters) stage adapters 20 "$NODE" adapters.mjs
              # No hardware adapter: the loader's own account of the drivers it tried, into the summary.
              if ! grep -qE '^ADAPTER .*fallback=false' "$OUT/adapters.log" 2>/dev/null; then
                stage adapters-debug 20 env VK_LOADER_DEBUG=error,warn,driver,layer "$NODE" adapters.mjs
              fi
              # As a local worker asks for its GPU: Mesa's device-select layer with DRI_PRIME = the first NVIDIA GPU.
              first=$(ls /proc/driver/nvidia/gpus 2>/dev/null | sort | head -1)
              if [[ $first =~ ^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$ ]]; then
                tag="pci-${BASH_REMATCH[1]}_${BASH_REMATCH[2]}_${BASH_REMATCH[3]}_${BASH_REMATCH[4]}"
                stage adapters-select 20 env DRI_PRIME="${tag,,}" MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 "$NODE" adapters.mjs
              fi ;;
    case)     stage case 45 "$PY" "$ROOT/scripts/parity/make-case.py" --arch tiny "${CASE[@]}" --classes 37 --seed 0 --threads 4 --out case ;;
    parity)   stage parity 75 env NODEVICE_SELECT=1 "$NODE" app/scripts/parity.js --backend webgpu --arch tiny \
                --weights case/weights.safetensors --case case/case.safetensors ;;
    bench)    stage bench 210 env NODEVICE_SELECT=1 "$NODE" app/scripts/bench-compute.js --backend webgpu "${BENCH[@]}" ;;
    dgrad-ab) stage dgrad-ab 150 env NODEVICE_SELECT=1 "$NODE" app/scripts/gpu-check/input-grad-ab.js "${AB[@]}" ;;
    scaling)  stage scaling 200 "$NODE" app/scripts/bench-scaling.js "${SCALING[@]}" --workers 1,2 --data scaling --threads 4 ;;
    smoke)    stage smoke 120 "$NODE" --input-type=module -e \
                "const m = await import('./app/src/coordinator/cli.js'); process.exitCode = await m.main(process.argv.slice(1));" -- \
                --data smoke/data --pretrained none "${SMOKE[@]}" --backend webgpu --workers "${GPU_CHECK_SMOKE_WORKERS:-1}" --config smoke/stages.json \
                --metrics-port -1 --bind tcp://127.0.0.1:0 --run-dir smoke/run --plain ;;
    *) echo "unknown stage $s" ;;
  esac
done
summary
echo "--- summary ($OUT/summary.txt)"
cat "$OUT/summary.txt"
echo "=== gpu-check finished in $(elapsed)s; log: $LOG"
