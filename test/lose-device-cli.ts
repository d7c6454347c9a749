/**
 * Test driver (not a test file): runs the odc CLI in this process with the GPU device destroyed right after
 * the Nth submit, as a driver reset would do at a random moment of a run.
 *   <runtime> test/lose-device-cli.ts N train ...odc flags
 */
import { initGpu } from '../src/gpu/device.ts';

const submits = Number(process.argv[2]);
if (!Number.isInteger(submits) || submits <= 0)
  throw new Error(`usage: lose-device-cli.ts SUBMITS odc-args..., got ${process.argv[2]}`);
process.argv.splice(2, 1); // the CLI reads its own arguments from process.argv
const gpu = await initGpu();
const flush = gpu.flush.bind(gpu);
gpu.flush = () => {
  flush();
  if (gpu.stats.submits === submits) gpu.device.destroy();
};
await import('../src/cli/main.ts');
