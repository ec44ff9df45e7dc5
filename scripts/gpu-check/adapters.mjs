// Lists the WebGPU adapters Dawn finds (one line each: vendor, device, description, fallback, key limits), the way
// the trainer's backend choice sees them, then the Vulkan files it mapped (MAPPED lines). Run from the unpacked payload
// (node_modules beside it).
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create((process.env.PETS_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean));
for (const opts of [{ powerPreference: 'high-performance' }, { forceFallbackAdapter: true }]) {
  const a = await gpu.requestAdapter(opts);
  if (!a) { console.log(`ADAPTER ${JSON.stringify(opts)}: none`); continue; }
  const i = a.info, l = a.limits;
  console.log(`ADAPTER ${JSON.stringify(opts)}: vendor=${i.vendor} device=${i.device} description="${i.description}" fallback=${i.isFallbackAdapter} ` +
    `maxStorageBufferBindingSize=${l.maxStorageBufferBindingSize} maxBufferSize=${l.maxBufferSize} timestamp-query=${a.features.has('timestamp-query')}`);
}
// Which Vulkan loader, layers and drivers this process loaded (carried or the machine's own).
import { readFileSync } from 'node:fs';
const mapped = new Set(readFileSync('/proc/self/maps', 'utf8').split('\n').map((l) => l.split(/\s+/)[5] ?? '')
  .filter((f) => /libvulkan|VkLayer|nvidia|lvp|vulkan/i.test(f)));
for (const f of mapped) console.log(`MAPPED ${f}`);
process.exit(0);
