/** Runs scripts/repro-deno-dawn-stall.ts inside `deno test`, where the stall shows (see that file). */
Deno.test({ name: 'Dawn polling inside deno test', sanitizeOps: false, sanitizeResources: false, fn: async () => {
  await import('./repro-deno-dawn-stall.ts');
} });
