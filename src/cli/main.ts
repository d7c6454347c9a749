#!/usr/bin/env node
/**
 * odc: the command-line interface (`npx odc` runs the compiled dist/cli/main.js; from a clone,
 * `npx tsx src/cli/main.ts`, `bun src/cli/main.ts` or `deno run -A src/cli/main.ts`).
 *   odc train   [--preset demo] [--config file.json] [--set key=value]... [--out DIR] [--resume] [--quiet]
 *   odc eval    --run DIR [--no-baseline] [--probe-epochs N] [--out report.json]
 *   odc extract --run DIR --out features.safetensors [--split train|test] [--layer backbone|neck]
 *   odc export  --run DIR --out backbone.safetensors
 *   odc report  --run DIR [--compare DIR2]... [--out report.html]
 *   odc clusters --run DIR [--out clusters.csv|.jsonl]
 *   odc assign  --run DIR --data SOURCE[:PATH] --out assign.csv|.jsonl
 *   odc prepare --data SOURCE[:PATH] --out FILE.odcpack [--size N] [--skip-bad] ...   (no GPU)
 *   odc info
 *   odc tune [--repeats N]
 * Shortcuts map to settings (--epochs, --batch-size, --lr, --k, ...: declared in src/config/settings.ts beside
 * the key each sets); flags are parsed and checked in ./args.ts before the GPU starts.
 * A resumed run starts from its own config.json, with only the flags given on that command applied.
 * The first SIGINT/SIGTERM stops training after the current iteration with a checkpoint; a second one
 * exits at once without writing one.
 */
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureWritableFolder } from '../data/files.ts';
import { closeGpu, initGpu } from '../gpu/device.ts';
import { commandFromArgv, type PrepareCommand } from './args.ts';
import { abandonPendingWrites } from '../odc/checkpoint-io.ts';
import { CHECKPOINT_FILE, type EpochSummary } from '../odc/checkpoint.ts';
import { GpuDeviceLostError, GpuOutOfMemoryError } from '../gpu/errors.ts';
import type { TrainingSession } from '../odc/session.ts';

/** Exit codes of a run stopped by a signal (128 + its number, as a shell reports a process it killed). */
const SIGNAL_EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** The exact command that resumes the run in outDir, under the runtime running now. */
function resumeCommand(outDir: string): string {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  const runner = g.Deno ? 'deno run -A' : g.Bun ? 'bun' : import.meta.url.endsWith('.js') ? 'node' : 'npx tsx';
  const script = relative(process.cwd(), fileURLToPath(import.meta.url));
  const quote = (s: string): string => (/^[\w./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return `${runner} ${quote(script)} train --out ${quote(outDir)} --resume`;
}

/**
 * SIGINT/SIGTERM during training. The first asks `stop` to stop: training finishes the iteration, writes
 * a checkpoint and returns. The second exits at once: a checkpoint write in progress is abandoned (its
 * temporary file removed), so the last complete checkpoint stays exactly as it was. Returns a function
 * that removes the handlers.
 */
function installStopHandlers(stop: AbortController, outDir: string): () => void {
  const onSignal = (signal: string): void => {
    if (!stop.signal.aborted) {
      stop.abort(signal);
      console.error(
        `\nodc: ${signal}: stopping after this iteration to write a checkpoint (a second Ctrl-C or SIGTERM aborts at once, without one)`,
      );
      return;
    }
    abandonPendingWrites();
    const kept = existsSync(join(outDir, CHECKPOINT_FILE))
      ? `the last complete checkpoint is kept; resume with: ${resumeCommand(outDir)}`
      : 'no checkpoint had been written yet: start the run again';
    console.error(`\nodc: a second stop signal (${signal}): aborted without writing a checkpoint; ${kept}`);
    process.exit(SIGNAL_EXIT_CODES[signal]);
  };
  for (const signal of Object.keys(SIGNAL_EXIT_CODES)) process.on(signal, onSignal);
  return () => {
    for (const signal of Object.keys(SIGNAL_EXIT_CODES)) process.off(signal, onSignal);
  };
}

/** An output file's folder is made and proven writable before the work that ends by writing it. */
function checkOutputFile(path: string | undefined): void {
  if (path !== undefined) ensureWritableFolder(dirname(resolve(path)), `folder of --out ${path}`);
}

async function main(argv: string[]): Promise<number> {
  const request = commandFromArgv(argv);
  if (request.command === 'help') {
    console.log(request.text);
    return 0;
  }
  if (request.command === 'prepare') return runPrepare(request);
  const gpu = await initGpu();
  switch (request.command) {
    case 'info': {
      console.log(`adapter: ${gpu.adapterName}\nimplementation: ${gpu.implementation} (${gpu.runtime})`);
      console.log(`features: ${JSON.stringify(gpu.features)}`);
      const l = gpu.limits;
      console.log(
        `maxStorageBufferBindingSize ${l.maxStorageBufferBindingSize}, maxBufferSize ${l.maxBufferSize}, storage buffers/stage ${l.maxStorageBuffersPerShaderStage}`,
      );
      const { variantsInfo } = await import('../odc/tuning.ts');
      console.log(variantsInfo(gpu));
      const { precisionPaths } = await import('../ops/tensor-cores-info.ts');
      for (const line of await precisionPaths()) console.log(line);
      return 0;
    }
    case 'tune': {
      const { tuneAndSave } = await import('../odc/tuning.ts');
      console.log(await tuneAndSave(gpu, request.repeats));
      return 0;
    }
    case 'train': {
      const { train } = await import('../odc/trainer.ts');
      const { config, outDir, resume, quiet, initFrom, report } = request;
      console.log(
        `odc train: preset ${config.preset}, mode ${config.mode}, ${config.model.backbone}, K = ${config.odc.k}, ${config.optim.epochs} epochs, batch ${config.optim.batchSize} -> ${outDir}`,
      );
      console.log(`GPU: ${gpu.adapterName} (${gpu.implementation} under ${gpu.runtime})`);
      const stop = new AbortController();
      const removeHandlers = installStopHandlers(stop, outDir);
      const onEpoch = report
        ? async (_: EpochSummary, session: TrainingSession) => {
            const { writeLiveReport } = await import('../report/write.ts');
            const path = await writeLiveReport(session);
            session.progress.message(`report: ${path}`);
          }
        : undefined;
      try {
        const result = await train({ config, outDir, resume, quiet, initFrom, signal: stop.signal, onEpoch }).catch(
          (err: unknown) => {
            throw withCheckpointNote(err, outDir);
          },
        );
        if (result.interrupted) {
          const p = result.position;
          console.log(
            `\nstopped at epoch ${p.epoch + 1}, batch ${p.batchInEpoch} (iteration ${p.iteration}); checkpoint ${result.checkpoint}`,
          );
          console.log(`resume with: ${resumeCommand(outDir)}`);
          return SIGNAL_EXIT_CODES[String(stop.signal.reason)] ?? 1;
        }
        console.log(
          `done: ${result.iterations} iterations in ${result.seconds.toFixed(1)} s; checkpoint ${result.checkpoint}`,
        );
      } finally {
        removeHandlers();
      }
      return 0;
    }
    case 'eval': {
      const { evaluateRun } = await import('../eval/run-eval.ts');
      checkOutputFile(request.out);
      await evaluateRun({
        runDir: request.runDir,
        baseline: request.baseline,
        probeEpochs: request.probeEpochs,
        out: request.out,
      });
      return 0;
    }
    case 'extract': {
      const { extractToFile } = await import('../eval/run-eval.ts');
      checkOutputFile(request.out);
      await extractToFile({ runDir: request.runDir, out: request.out, split: request.split, layer: request.layer });
      return 0;
    }
    case 'report': {
      const { writeReport } = await import('../report/write.ts');
      checkOutputFile(request.out);
      console.log(
        `report: ${await writeReport({ runDir: request.runDir, compare: request.compare, out: request.out })}`,
      );
      return 0;
    }
    case 'clusters': {
      const { writeClusters } = await import('../report/assignments.ts');
      checkOutputFile(request.out);
      const rows = await writeClusters({ runDir: request.runDir, out: request.out });
      console.log(`wrote ${request.out}: ${rows} images (id, label, similarity, rank)`);
      return 0;
    }
    case 'assign': {
      const { writeAssignment } = await import('../report/assignments.ts');
      checkOutputFile(request.out);
      const rows = await writeAssignment({ runDir: request.runDir, data: request.data, out: request.out });
      console.log(`wrote ${request.out}: ${rows} images (id, label, similarity, rank)`);
      return 0;
    }
    case 'export': {
      const { exportBackbone } = await import('../eval/run-eval.ts');
      checkOutputFile(request.out);
      await exportBackbone({ runDir: request.runDir, out: request.out });
      return 0;
    }
  }
}

/** `odc prepare`: writes the pack, then says what it holds, what was skipped and how to train from it. */
async function runPrepare(request: PrepareCommand): Promise<number> {
  const { prepare } = await import('../data/prepare.ts');
  checkOutputFile(request.out);
  const r = await prepare({ ...request, progress: !request.quiet });
  const rate = r.n / Math.max(r.seconds, 1e-9);
  console.log(
    `odc prepare: ${r.n} images of ${r.width}x${r.height}x${r.channels} -> ${r.path} in ${r.seconds.toFixed(1)} s (${rate.toFixed(0)} img/s, decoder ${r.decoder}, ${r.workers} worker threads)`,
  );
  if (r.skipped.length > 0) {
    console.log(`skipped ${r.skipped.length} image(s) that could not be decoded (--skip-bad):`);
    for (const s of r.skipped) console.log(`  ${s.reason}`);
  }
  console.log(`train from it with: odc train --data pack:${r.path} ...`);
  return 0;
}

/** A GPU fault's message, plus whether the last checkpoint is there (a fault never writes one) and how to go on. */
function withCheckpointNote(err: unknown, outDir: string): unknown {
  if (!(err instanceof GpuDeviceLostError || err instanceof GpuOutOfMemoryError)) return err;
  const path = `${outDir}/checkpoint.odc`;
  if (!existsSync(path)) err.message += ' No checkpoint had been written yet.';
  else if (err instanceof GpuDeviceLostError)
    err.message += ` The last checkpoint, ${path}, is intact: run the same command with --resume to go on.`;
  else
    err.message += ` The last checkpoint, ${path}, is intact (--resume continues it on a larger GPU; a smaller batch or model needs a new run).`;
  return err;
}

main(process.argv.slice(2)).then(
  // the GPU ends in order (work finished, device destroyed) before the runtime does, as in the tests
  (code) => closeGpu().then(() => process.exit(code)),
  (err: unknown) => {
    console.error(`\nodc: ${err instanceof Error ? err.message : String(err)}`);
    if (process.env.ODC_DEBUG && err instanceof Error) console.error(err.stack);
    process.exit(1);
  },
);
