#!/usr/bin/env bash
# GPU check of the WebGPU path on a bare x86-64 GPU machine (python3 needed; no Node.js, no package registry).
# Needs the payload built by `bash scripts/gpu-check/pack.sh` (carried in scripts/gpu-check/payload/).
# Stages, each under its own time limit (capped by what is left of GPU_CHECK_TOTAL_S, default 540 s):
#   adapters   the WebGPU adapters Dawn finds
#   bench      npm run bench:compute -- --backend webgpu --arch resnet34 --size 224 --bs 64 (img/s, peak device
#              memory, per-kernel table; per-shape convolution GFLOP/s)
#   parity     the tiny-ResNet PyTorch parity on webgpu (same tolerances as on wasm)
#   smoke      a one-GPU main job: coordinator + 1 local worker on --backend webgpu, 12 photos, 1 epoch
# Results: $OUT/gpu-check.log (everything), $OUT/<stage>.log, $OUT/bench.json; OUT defaults to /tmp/gpu-check-out.
# Env: GPU_CHECK_SMALL=1 tiny sizes (for lavapipe/CPU), GPU_CHECK_STAGES to choose stages, GPU_CHECK_WORK (unpack dir).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=$HERE/payload
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
W=${GPU_CHECK_WORK:-/tmp/gpu-check-run}
TOTAL=${GPU_CHECK_TOTAL_S:-540}
SMALL=${GPU_CHECK_SMALL:-0}
STAGES=${GPU_CHECK_STAGES:-adapters parity bench smoke}
exec > >(tee -a "$OUT/gpu-check.log") 2>&1
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
echo "=== gpu-check $(date -u +%FT%TZ) host=$(hostname) small=$SMALL budget=${TOTAL}s stages: $STAGES"

SMI=$(command -v nvidia-smi || true)
# stage NAME LIMIT_S CMD...: runs under timeout (capped by the budget left), logs to $OUT/NAME.log, samples GPU memory.
stage() {
  local name=$1 lim=$2; shift 2
  local left=$(( TOTAL - $(elapsed) ))
  if (( left < 10 )); then echo "=== [$name] SKIPPED: budget spent ($(elapsed)s)"; return; fi
  (( lim > left )) && lim=$left
  echo "=== [$name] start (limit ${lim}s, t=$(elapsed)s): $*"
  local mempid=""
  if [[ -n $SMI ]]; then
    "$SMI" --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$OUT/mem-$name.txt" 2>/dev/null & mempid=$!
  fi
  ( cd "$W" && timeout -k 5 "$lim" "$@" ) 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  if [[ -n $mempid ]]; then
    kill "$mempid" 2>/dev/null; wait "$mempid" 2>/dev/null
    echo "[$name] PEAK GPU memory.used (nvidia-smi, whole GPU): $(sort -n "$OUT/mem-$name.txt" | tail -1) MiB"
  fi
  (( rc == 124 || rc == 137 )) && echo "=== [$name] TIMED OUT after ${lim}s"
  echo "=== [$name] rc=$rc (t=$(elapsed)s)"
}

echo "--- GPUs"
if [[ -n $SMI ]]; then "$SMI" -L; "$SMI" --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv,noheader; else echo "nvidia-smi: not found"; fi

echo "--- unpacking the payload into $W"
rm -rf "$W"; mkdir -p "$W/sysroot"
python3 - "$P" "$W" <<'PY' || { echo "UNPACK FAILED"; exit 1; }
import lzma, os, shutil, sys, tarfile, io, glob
src, dst = sys.argv[1], sys.argv[2]
with lzma.open(os.path.join(src, "node.xz")) as f, open(os.path.join(dst, "node"), "wb") as g:
    shutil.copyfileobj(f, g)
os.chmod(os.path.join(dst, "node"), 0o755)
for name in ("modules.tar.xz", "app.tar.xz", "data.tar.xz"):
    with tarfile.open(os.path.join(src, name)) as t:
        t.extractall(dst)
# .deb = ar archive holding data.tar.*: unpack into sysroot/ without dpkg or root.
def ar_members(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"!<arch>\n", path
        while True:
            h = f.read(60)
            if len(h) < 60: return
            name, size = h[:16].decode().strip().rstrip("/"), int(h[48:58].decode().strip())
            data = f.read(size)
            if size % 2: f.read(1)
            yield name, data
for deb in sorted(glob.glob(os.path.join(src, "debs", "*.deb"))):
    for name, data in ar_members(deb):
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as t:
                t.extractall(os.path.join(dst, "sysroot"))
    print("unpacked", os.path.basename(deb))
PY
cp "$HERE/adapters.mjs" "$W/"
NODE=$W/node
"$NODE" --version || { echo "node does not run"; exit 1; }

echo "--- Vulkan loader, driver and device-select layer"
LIBDIR=$W/sysroot/usr/lib/x86_64-linux-gnu
rm -rf "$W/sysroot/usr/share/vulkan/icd.d"   # the carried Mesa drivers are not wanted, only its layer
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  echo "libvulkan.so.1 missing on this machine: using the carried loader"
fi
# The carried libraries come after the machine's own (which win when present).
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$LIBDIR
if [[ -f $W/sysroot/usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json ]]; then
  export XDG_DATA_DIRS=${XDG_DATA_DIRS:-/usr/local/share:/usr/share}:$W/sysroot/usr/share
  echo "Mesa device-select layer: carried (DRI_PRIME=pci-… picks a GPU per worker)"
fi
ICDS=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null)
echo "ICD files: ${ICDS:-none}"
if [[ -z ${VK_DRIVER_FILES:-} && -z ${VK_ICD_FILENAMES:-} ]] && ! grep -qs nvidia <<<"$ICDS"; then
  for j in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [[ -f $j ]]; then export VK_DRIVER_FILES=$j; break; fi
  done
fi
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"

if [[ $SMALL == 1 ]]; then
  BENCH=(--arch resnet18 --size 32 --bs 2 --reps 1); SMOKE=(--arch resnet10 --size 32 --bs 2)
else
  BENCH=(--arch resnet34 --size 224 --bs 64 --reps 3); SMOKE=(--arch resnet34 --size 128 --bs 8)
fi
mkdir -p "$W/smoke/data"
cp "$W"/photos/* "$W/smoke/data/"
echo '{"stages":[{"kind":"one_cycle","name":"stage-1","epochs":1,"maxLr":"1e-3","frozen":false}]}' > "$W/smoke/stages.json"

for s in $STAGES; do
  case $s in
    adapters) stage adapters 30 "$NODE" adapters.mjs ;;
    parity)   stage parity 120 "$NODE" app/scripts/parity.js --backend webgpu --arch tiny \
                --weights fixtures/resnet-tiny/weights.safetensors --case fixtures/resnet-tiny/case.safetensors ;;
    bench)    stage bench 300 "$NODE" app/scripts/bench-compute.js --backend webgpu "${BENCH[@]}"
              stage bench-json 200 "$NODE" app/scripts/bench-compute.js --backend webgpu "${BENCH[@]}" --reps 1 --json
              grep '^{' "$OUT/bench-json.log" > "$OUT/bench.json" 2>/dev/null ;;
    smoke)    stage smoke 240 "$NODE" --input-type=module -e \
                "const m = await import('./app/src/coordinator/cli.js'); process.exitCode = await m.main(process.argv.slice(1));" -- \
                --data smoke/data --pretrained none "${SMOKE[@]}" --backend webgpu --workers 1 --config smoke/stages.json \
                --metrics-port -1 --bind tcp://127.0.0.1:0 --run-dir smoke/run --plain ;;
    *) echo "unknown stage $s" ;;
  esac
done
echo "--- summary"
grep -hE '^ADAPTER|^backend:|PASS|FAIL|images/s|peak device memory|total of kernels|error_rate|TIMED OUT|PEAK|rc=' "$OUT/gpu-check.log" | sed 's/^/  /'
echo "=== gpu-check finished in $(elapsed)s; log: $OUT/gpu-check.log"
