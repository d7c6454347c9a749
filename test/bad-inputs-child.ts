/**
 * Run by test/bad-inputs.test.ts in a child process: loads each data-set spec given (as a JSON list of
 * { name, spec } in argv[2]) and prints one JSON line per case with its outcome. Cases that could block
 * a read forever (named pipes, endless devices) run here, so a hang kills this child, not the suite.
 */
import { loadDataset } from '../src/data/registry.ts';

const cases = JSON.parse(process.argv[2]) as Array<{ name: string; spec: string }>;
for (const c of cases) {
  try {
    const ds = await loadDataset(c.spec);
    console.log(JSON.stringify({ name: c.name, ok: true, n: ds.n }));
  } catch (err) {
    console.log(JSON.stringify({ name: c.name, ok: false, message: err instanceof Error ? err.message : String(err) }));
  }
}
process.exit(0);
