#!/usr/bin/env bash
# Builds the GPU check's payload into scripts/gpu-check/payload/ (ignored by git; ~50 MiB): everything run.sh needs on
# a bare x86-64 GPU machine that has python3 but no Node.js and no package registry.
#   node.xz          the Node.js binary running this script, xz-compressed (run.sh unpacks it with python3's lzma)
#   modules.tar.xz   the project's production node_modules, pruned: webgpu's dawn.node for linux-x64 only, zeromq's and
#                    sharp's linux-x64 builds only, no optional native tfjs backends, no source maps or docs
#   app.tar.xz       src/ and the bench/parity scripts compiled to JavaScript, package.json
#   data.tar.xz      the tiny-ResNet parity fixture (../shared/fixtures/resnet-tiny) and 2 × 6 photos of the shared
#                    Pets sample for the main-job smoke run
#   debs/*.deb       libvulkan1 (the Vulkan loader, unpacked by run.sh when the machine lacks libvulkan.so.1) and,
#                    when available, mesa-vulkan-drivers (its device-select layer picks a GPU per worker)
# Usage (from the repository root, after npm ci): bash scripts/gpu-check/pack.sh
# Then, with the device tool: carry scripts/gpu-check/payload and run `bash scripts/gpu-check/run.sh`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
P=$HERE/payload
SHARED=${PETS_SHARED:-$ROOT/../shared}
rm -rf "$P"; mkdir -p "$P/debs"
cd "$ROOT"
[[ -d node_modules/webgpu/dist/linux-x64 ]] || { echo "pack: node_modules/webgpu missing: run npm ci first" >&2; exit 1; }

echo "pack: node $(node --version) → node.xz"
xz -6 -T0 -c "$(command -v node)" > "$P/node.xz"

echo "pack: compiling src/ and scripts → app"
npx tsc -p "$HERE/tsconfig.payload.json"
cp package.json "$P/app/"
tar -C "$P" -cf - app | xz -6 -T0 > "$P/app.tar.xz"
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
find "$M/zeromq/build" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
find "$M/zeromq/build/linux" -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
rm -rf "$M/zeromq/src" "$M/@tensorflow/tfjs-backend-webgl"
find "$M" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' -o -name '*.ts' -o -name '*.cc' -o -name '*.h' \) -type f -delete
tar -C "$STAGE/m" -cf - node_modules | xz -6 -T0 > "$P/modules.tar.xz"

echo "pack: parity fixture and smoke photos → data.tar.xz"
mkdir -p "$STAGE/d/fixtures" "$STAGE/d/photos"
cp -a "$SHARED/fixtures/resnet-tiny" "$STAGE/d/fixtures/"
for breed in Abyssinian beagle; do
  ls "$SHARED/datasets/oxford-iiit-pet-sample/images/" | grep "^${breed}_" | head -6 |
    while read -r f; do cp "$SHARED/datasets/oxford-iiit-pet-sample/images/$f" "$STAGE/d/photos/"; done
done
tar -C "$STAGE/d" -cf - fixtures photos | xz -6 -T0 > "$P/data.tar.xz"

echo "pack: Vulkan loader (and Mesa's device-select layer) .debs"
( cd "$P/debs" && apt-get -oAPT::Architecture=amd64 download libvulkan1 >/dev/null 2>&1 ) || echo "pack: apt-get download libvulkan1 failed (run.sh then needs libvulkan.so.1 on the GPU machine)"
( cd "$P/debs" && apt-get -oAPT::Architecture=amd64 download mesa-vulkan-drivers >/dev/null 2>&1 ) || echo "pack: apt-get download mesa-vulkan-drivers failed (per-worker GPU choice then needs it on the GPU machine)"
du -sh "$P"/* | sed 's/^/pack:   /'
total=$(du -sm "$P" | cut -f1)
echo "pack: payload ${total} MiB in $P"
(( total < 64 )) || { echo "pack: payload over 64 MiB" >&2; exit 1; }
