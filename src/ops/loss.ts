/**
 * Weighted softmax cross-entropy with ODC's reduction (ODC-SPEC 1.4), shaders/loss.wgsl.
 *
 * Rows are split into chunks like `torch.chunk`: chunk size s = ceil(B / chunks), chunk c holds rows
 * [c*s, min((c+1)*s, B)), so only the last chunk may be shorter and the number of non-empty chunks is
 * C = ceil(B / s) (which is `chunks` whenever B is a multiple of it, e.g. 512 rows in 8 chunks of 64).
 * Per chunk, L_c = sum_i w[y_i] CE_i / sum_i w[y_i] (PyTorch CrossEntropyLoss(weight=w), mean), and the
 * loss is (1/C) sum_c L_c: the mean of per-GPU weighted means that DDP optimises. chunks = 1 is one
 * weighted mean; null weights give the plain mean. Scaling w by a constant leaves the loss unchanged.
 *
 * CE_i = logsumexp(x_i) - x_i[y_i], computed max-subtracted. A chunk whose weights sum to 0 gives NaN,
 * like PyTorch. Labels are only checked for dtype and shape on the host (their values would need a
 * readback): a label outside [0, K) is never used as an index, and it makes the loss (and its row's
 * gradient) NaN.
 *
 * Differentiable in logits only; the backward recomputes the row statistics from the logits (nothing is
 * saved), so logits, labels and classWeights must stay alive until backward() has run.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { loss } from '../kernels/loss.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

export interface CrossEntropyOptions {
  /** Number of row chunks whose weighted means are averaged (default 1). */
  chunks?: number;
}

/** Rows per chunk for B rows split into `chunks` chunks (torch.chunk's rule). */
export function chunkRows(rows: number, chunks: number): number {
  return Math.max(1, Math.ceil(rows / chunks));
}

export function weightedCrossEntropy(
  logits: Tensor<'f32'>,
  labels: Tensor<'u32'>,
  classWeights: Tensor<'f32'> | null,
  opts: CrossEntropyOptions = {},
): Tensor<'f32'> {
  const op = 'weightedCrossEntropy';
  expectDType(logits, 'f32', `${op}: logits`);
  if (logits.rank !== 2) throw new RangeError(`${op}: logits must be [B, K], got ${fmtShape(logits.shape)}`);
  const [rows, cols] = logits.shape;
  if (rows === 0 || cols === 0) throw new RangeError(`${op}: logits ${fmtShape(logits.shape)} are empty`);
  expectDType(labels, 'u32', `${op}: labels`);
  if (labels.rank !== 1 || labels.shape[0] !== rows) {
    throw new RangeError(`${op}: labels must be [${rows}] (one per logits row), got ${fmtShape(labels.shape)}`);
  }
  if (classWeights) {
    expectDType(classWeights, 'f32', `${op}: classWeights`);
    if (classWeights.rank !== 1 || classWeights.shape[0] !== cols) {
      throw new RangeError(
        `${op}: classWeights must be [${cols}] (one per class), got ${fmtShape(classWeights.shape)}`,
      );
    }
  }
  const chunks = opts.chunks ?? 1;
  if (!Number.isInteger(chunks) || chunks < 1)
    throw new RangeError(`${op}: chunks must be a positive integer, got ${chunks}`);
  const chunk = chunkRows(rows, chunks);
  const weighted = classWeights !== null;
  // Unweighted: the weights binding must still hold a buffer; the kernel does not read it.
  const weightsBuffer = classWeights ? classWeights.buffer : logits.buffer;

  const terms = Tensor.empty([rows, 2], 'f32');
  const out = Tensor.empty([1], 'f32');
  dispatchKernel(loss.ce_rows, {
    params: { rows, cols, weighted },
    bindings: { logits: logits.buffer, labels: labels.buffer, weights: weightsBuffer, terms: terms.buffer },
    workgroups: grid(rows),
  });
  dispatchKernel(loss.ce_reduce, {
    params: { rows, chunk },
    bindings: { terms: terms.buffer, loss: out.buffer },
    workgroups: [1],
  });
  terms.dispose();

  return record(out, op, [logits], (g) => {
    const coef = Tensor.empty([rows], 'f32');
    const grad = Tensor.empty([rows, cols], 'f32');
    dispatchKernel(loss.ce_coef, {
      params: { rows, cols, chunk, weighted },
      bindings: { gout: g.buffer, labels: labels.buffer, weights: weightsBuffer, coef: coef.buffer },
      workgroups: [1],
    });
    dispatchKernel(loss.ce_backward, {
      params: { rows, cols },
      bindings: { logits: logits.buffer, labels: labels.buffer, coef: coef.buffer, grad: grad.buffer },
      workgroups: grid(rows),
    });
    coef.dispose();
    return [grad];
  });
}
