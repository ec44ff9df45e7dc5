#!/usr/bin/env bash
# Builds the GPU check's payload into scripts/gpu-check/payload/ (ignored by git; ~40 MiB): everything run.sh needs on
# a bare x86-64 GPU machine that has python3 but no Node.js and no package registry.
#   node.xz          the Node.js binary running this script, stripped, xz-compressed (run.sh unpacks it with python3's
#                    lzma); node.sha256 lets a later pack.sh keep it
#   modules.tar.xz   the project's production node_modules, pruned: webgpu's dawn.node for linux-x64 only, zeromq's
#                    linux-x64 build only, tfjs packages reduced to the bundle Node loads, no optional native tfjs
#                    backends, no source maps, sources or docs
#   app.tar.xz       src/ and the bench/parity scripts compiled to JavaScript, package.json
#   data.tar.xz      2 × 6 photos of the shared Pets sample for the main-job smoke run (the parity case is made on the
#                    GPU machine by scripts/parity/make-case.py)
#   vulkan.tar.xz    libvulkan.so.1 and Mesa's device-select layer (+ the libraries it links), used where missing
# Usage (from the repository root, after npm ci): bash scripts/gpu-check/pack.sh    Env: GPU_CHECK_XZ (default "-1 -T2").
# Then, with the device tool: carry scripts/gpu-check/payload and run `bash scripts/gpu-check/run.sh` (see
# docs/performance-gpu.md, "The GPU check", for the exact call).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
P=$HERE/payload
SHARED=${PETS_SHARED:-$ROOT/../shared}
# node.xz is kept when it was made from the same Node binary (its sha256 beside it): xz of ~90 MB is the slow part.
KEEP=$(mktemp -d)
if [[ -f $P/node.xz && -f $P/node.sha256 ]] && sha256sum -c --status "$P/node.sha256" 2>/dev/null; then
  mv "$P/node.xz" "$P/node.sha256" "$KEEP/"
fi
rm -rf "$P"; mkdir -p "$P"
# (Nothing kept on a first pack: the glob then matches nothing, and under set -e a failing mv ended the script
# silently with status 1.)
for f in "$KEEP"/*; do [[ -e $f ]] && mv "$f" "$P/"; done
rmdir "$KEEP"
cd "$ROOT"
[[ -d node_modules/webgpu/dist/linux-x64 ]] || { echo "pack: node_modules/webgpu missing: run npm ci first" >&2; exit 1; }

# xz level and threads: -1 compresses the stripped Node binary (86 MB) to 26 MB in ~10 s of CPU, close to -9e's 24 MB
# at a fraction of the time (on the loaded 2-core build machine -6 did not finish in minutes). GPU_CHECK_XZ overrides.
XZ=(xz ${GPU_CHECK_XZ:--1 -T2})
NODE_BIN=$(command -v node)
if [[ -f $P/node.xz ]]; then
  echo "pack: node.xz kept (same $NODE_BIN)"
else
  echo "pack: node $(node --version) ($NODE_BIN) → node.xz (${XZ[*]})"
  STRIPPED=$(mktemp)
  # Debian's and nodejs.org's binaries keep their symbols (99 MB); the stripped copy runs the same and is 13 MB smaller.
  if command -v strip >/dev/null && strip -o "$STRIPPED" "$NODE_BIN" && "$STRIPPED" -e 0; then NODE_BIN=$STRIPPED; fi
  "${XZ[@]}" -c "$NODE_BIN" > "$P/node.xz"
  rm -f "$STRIPPED"
  sha256sum "$(command -v node)" > "$P/node.sha256"
fi

echo "pack: compiling src/ and scripts → app"
npx tsc -p "$HERE/tsconfig.payload.json"
cp package.json "$P/app/"
# The shared-memory all-reduce addon (libc + libstdc++ only), so that N workers on one GPU machine all-reduce through
# /dev/shm as here rather than the ring (the GPU machine has no compiler). The oneDNN addon stays: it needs libdnnl.
if [[ -f native/build/pets_shm.node ]]; then
  mkdir -p "$P/app/native/build" && cp native/build/pets_shm.node "$P/app/native/build/"
else
  echo "pack: native/build/pets_shm.node not built (npm run build:native): workers on the GPU machine will use the ring"
fi
tar -C "$P" -cf - app | "${XZ[@]}" > "$P/app.tar.xz"
rm -rf "$P/app"

echo "pack: pruned production node_modules → modules.tar.xz"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s#^$ROOT/##" | grep '^node_modules/' |
  awk -F/ '{ if ($2 ~ /^@/) print $1"/"$2"/"$3; else print $1"/"$2 }' | sort -u |
  grep -vE '^node_modules/@tensorflow/tfjs-node' > "$STAGE/list"
mkdir -p "$STAGE/m"
while read -r d; do mkdir -p "$STAGE/m/$(dirname "$d")"; cp -a "$d" "$STAGE/m/$d"; done < "$STAGE/list"
M=$STAGE/m/node_modules
find "$M/webgpu/dist" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
find "$M/zeromq/build" -mindepth 1 -maxdepth 1 ! -name linux ! -name manifest.json -exec rm -rf {} +
find "$M/zeromq/build/linux" -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
# zeromq ships one addon per Node ABI and libc (~2 MB each): keep the one this Node loads (the carried one is this Node).
ADDON=$(node -e "require('zeromq'); const m = require('fs').readFileSync('/proc/self/maps', 'utf8');
  const a = m.split('\\n').map((l) => l.split(/\\s+/)[5] ?? '').find((f) => f.endsWith('/addon.node')); console.log(a ?? '')")
if [[ $ADDON == $ROOT/node_modules/zeromq/build/linux/x64/node/*/addon.node ]]; then
  find "$M/zeromq/build/linux/x64/node" -mindepth 1 -maxdepth 1 ! -name "$(basename "$(dirname "$ADDON")")" -exec rm -rf {} +
fi
find "$M" -mindepth 2 -maxdepth 3 -type d \( -name test -o -name tests -o -name example -o -name examples -o -name benchmark \) \
  ! -path '*/dist/*' ! -path '*/build/*' ! -path '*/lib/*' -prune -exec rm -rf {} +
rm -rf "$M/zeromq/src" "$M/@tensorflow/tfjs-backend-webgl"
find "$M" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' -o -name '*.ts' -o -name '*.cc' -o -name '*.h' \) -type f -delete
# tfjs packages ship 6-8 bundles (UMD, minified, ES2017, fesm, node) and the ESM tree; Node loads only `main`, and
# from tfjs-core also the ESM tree's register_all_gradients.js (see src/training/compute/kernels/gradients.ts).
for pkg in "$M"/@tensorflow/tfjs-*; do
  main=$(node -p "require('$pkg/package.json').main")
  if [[ $(basename "$pkg") == tfjs-core ]]; then
    find "$pkg/dist" -maxdepth 1 -type f -name 'tf-core*.js' ! -path "$pkg/$main" -delete
  else
    find "$pkg/dist" -type f ! -path "$pkg/$main" ! -name '*.wasm' -delete
  fi
  rm -rf "$pkg/wasm-out" "$pkg/src"
  find "$pkg/dist" -type d -empty -delete
done
tar -C "$STAGE/m" -cf - node_modules | "${XZ[@]}" > "$P/modules.tar.xz"

# The parity case is not carried (29 MB of float weights and references that do not compress): run.sh makes it on
# the GPU machine with scripts/parity/make-case.py (python3 + torch + torchvision, seeded; about 10 s on a CPU).
echo "pack: smoke photos → data.tar.xz"
mkdir -p "$STAGE/d/photos"
for breed in Abyssinian beagle; do
  ls "$SHARED/datasets/oxford-iiit-pet-sample/images/" | grep "^${breed}_" | head -6 |
    while read -r f; do cp "$SHARED/datasets/oxford-iiit-pet-sample/images/$f" "$STAGE/d/photos/"; done
done
# Every sample photo, shrunk to 224 px on the short side (JPEG q 75, sharp), for the scaling stage: the 29 MB originals
# would not fit the device tool's 64 MiB with the rest.
echo "pack: sample photos at 224 px → data.tar.xz (scaling/)"
node -e "
const sharp = require('sharp'); const fs = require('fs'); const path = require('path');
const [src, dst] = process.argv.slice(1); fs.mkdirSync(dst, { recursive: true });
(async () => { for (const f of fs.readdirSync(src).filter((n) => n.endsWith('.jpg'))) {
  try { await sharp(path.join(src, f)).rotate().resize({ width: 224, height: 224, fit: 'outside' }).jpeg({ quality: 75 }).toFile(path.join(dst, f)); } catch {} } })();
" "$SHARED/datasets/oxford-iiit-pet-sample/images" "$STAGE/d/scaling"
tar -C "$STAGE/d" -cf - photos scaling | "${XZ[@]}" > "$P/data.tar.xz"

# The Vulkan loader and Mesa's device-select layer (with the libraries the layer links), copied from this machine
# (Debian 12 + Mesa 25 from bookworm-backports): run.sh puts each one on LD_LIBRARY_PATH only where the GPU machine
# lacks it. The layer lets each local worker pick its GPU by PCI address (DRI_PRIME), see docs/performance-gpu.md.
echo "pack: Vulkan loader and device-select layer → vulkan.tar.xz"
V=$STAGE/v; mkdir -p "$V/lib" "$V/implicit_layer.d"
LAYER_JSON=/usr/share/vulkan/implicit_layer.d/VkLayer_MESA_device_select.json
LDCACHE=$(ldconfig -p)
LOADER=$(awk '/libvulkan.so.1 .*x86-64/ { print $NF }' <<<"$LDCACHE" | head -1)
[[ -n $LOADER ]] || { echo "pack: no libvulkan.so.1 here (apt-get install libvulkan1)" >&2; exit 1; }
cp -L "$LOADER" "$V/lib/libvulkan.so.1"
if [[ -f $LAYER_JSON ]]; then
  LAYER=$(awk '/libVkLayer_MESA_device_select.so .*x86-64/ { print $NF }' <<<"$LDCACHE" | head -1)
  LAYER=${LAYER:-/usr/lib/x86_64-linux-gnu/libVkLayer_MESA_device_select.so}
  cp -L "$LAYER" "$V/lib/"
  cp "$LAYER_JSON" "$V/implicit_layer.d/"
  ldd "$LAYER" | awk '/=> \// { print $3 }' | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
    while read -r lib; do cp -L "$lib" "$V/lib/"; done
else
  echo "pack: $LAYER_JSON missing (apt-get install mesa-vulkan-drivers from bookworm-backports): per-worker GPU choice then needs it on the GPU machine"
fi
# glvnd's dispatch libraries (Debian libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2, the set the probe unpacked):
# NVIDIA's Vulkan ICD lives in libGLX_nvidia.so.0, which gets its entry points through glvnd; on a machine without
# them (the H200 host of 2026-11-30) the loader found the ICD but "Could not get 'vkCreateInstance' via
# 'vk_icdGetInstanceProcAddr'", and Dawn saw no adapter.
for name in libGLdispatch.so.0 libGLX.so.0 libEGL.so.1 libGL.so.1 libOpenGL.so.0 libGLESv2.so.2; do
  lib=$(awk -v n="$name" '$1 == n && /x86-64/ { print $NF }' <<<"$LDCACHE" | head -1)
  [[ -n $lib ]] || { echo "pack: $name not here (apt-get install libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2)" >&2; exit 1; }
  cp -L "$lib" "$V/lib/$name"
  ldd "$lib" | awk '/=> \// { print $3 }' | { grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' || true; } |
    while read -r dep; do [[ -e $V/lib/$(basename "$dep") ]] || cp -L "$dep" "$V/lib/"; done
done
ls "$V/lib" | sed 's/^/pack:     /'
tar -C "$V" -cf - lib implicit_layer.d | "${XZ[@]}" > "$P/vulkan.tar.xz"

du -sh "$P"/* | sed 's/^/pack:   /'
total=$(du -sm "$P" | cut -f1)
tracked=$(git ls-files -z | xargs -0 du -cm | tail -1 | cut -f1)
echo "pack: payload ${total} MiB in $P; with the tracked files (${tracked} MiB): $(( total + tracked )) MiB (limit 64 MiB)"
(( total + tracked < 56 )) || { echo "pack: payload + checkout over 56 MiB (the device tool carries at most 64 MiB)" >&2; exit 1; }
