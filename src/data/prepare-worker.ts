/**
 * A worker thread of `odc prepare`: decodes the files the main thread sends (one job at a time per
 * message) and answers with the stored pixels (transferred, not copied) or the error's message.
 */
import { parentPort } from 'node:worker_threads';
import { decodeStored, loadSharp, type DecodeJob } from './decode-stored.ts';

/** A request: decode `job`, answer with `id`. */
export interface WorkerRequest {
  id: number;
  job: DecodeJob;
}

/** An answer: the stored image, or why it could not be decoded. */
export type WorkerAnswer =
  { id: number; ok: true; width: number; height: number; data: Uint8Array } | { id: number; ok: false; error: string };

const port = parentPort;
if (port) {
  // one libvips thread per worker: the pool's size is the parallelism
  void loadSharp().then((sharp) => sharp?.concurrency(1));
  port.on('message', (request: WorkerRequest) => {
    decodeStored(request.job).then(
      (img) => {
        const data = img.data.slice(); // its own buffer, so the transfer moves exactly these bytes
        const answer: WorkerAnswer = { id: request.id, ok: true, width: img.width, height: img.height, data };
        port.postMessage(answer, [data.buffer]);
      },
      (err: unknown) =>
        port.postMessage({
          id: request.id,
          ok: false,
          error: err instanceof Error ? err.message : String(err),
        } satisfies WorkerAnswer),
    );
  });
}
