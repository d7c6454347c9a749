import { writeSync } from 'node:fs';
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
writeSync(2, 'A before create\n');
const gpu = create(['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia']);
writeSync(2, 'B after create\n');
const p = gpu.requestAdapter({ powerPreference: 'high-performance' });
writeSync(2, 'C after requestAdapter call (sync part)\n');
const adapter = await p;
writeSync(2, `D adapter resolved ${!!adapter}\n`);
if (adapter) { const d = adapter.requestDevice(); writeSync(2, 'E after requestDevice call\n'); await d; writeSync(2, 'F device\n'); }
process.exit(0);
