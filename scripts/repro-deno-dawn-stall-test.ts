/** Runs scripts/repro-deno-dawn-stall.ts inside `deno test`, where the stall shows (see that file). */
const deno = (
  globalThis as unknown as {
    Deno: {
      test(t: { name: string; sanitizeOps: boolean; sanitizeResources: boolean; fn: () => Promise<void> }): void;
    };
  }
).Deno;
deno.test({
  name: 'Dawn polling inside deno test',
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await import('./repro-deno-dawn-stall.ts');
  },
});
