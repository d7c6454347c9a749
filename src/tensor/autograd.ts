/**
 * Reverse-mode autograd in micrograd's style, lifted to tensors: each op that produces a tensor from
 * inputs that require grad attaches a GradNode whose `backward` closure maps the output gradient to
 * input gradients. backward() visits nodes in reverse topological order (not recursion), so a tensor
 * used twice (a residual connection) receives the sum of both gradients before it propagates.
 */
import type { Tensor } from './tensor.ts';
import { fmtShape, shapesEqual, type GradNode } from './tensor.ts';
import { keep, tidy } from './scope.ts';
import { addInPlace, axpbyNoGrad, clone, fill } from './kernels.ts';

let gradEnabled = true;

/** Runs fn without recording gradients (evaluation, feature extraction). */
export function noGrad<T>(fn: () => T): T {
  const before = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = before;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Attaches a backward closure to `output` when recording and some input requires grad. */
export function record<T extends Tensor>(
  output: T,
  op: string,
  inputs: readonly Tensor[],
  backward: GradNode['backward'],
): T {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    output.requiresGrad = true;
    output.node = { op, inputs, backward };
  }
  return output;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: Array<{ t: Tensor; expanded: boolean }> = [{ t: root, expanded: false }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.expanded) {
      order.push(top.t);
      continue;
    }
    if (visited.has(top.t)) continue;
    visited.add(top.t);
    stack.push({ t: top.t, expanded: true });
    for (const input of top.t.node?.inputs ?? [])
      if (input.requiresGrad && !visited.has(input)) stack.push({ t: input, expanded: false });
  }
  return order;
}

/**
 * Back-propagates from `output` (a scalar unless `gradOutput` is given). Leaf tensors that require grad
 * get `.grad` (accumulated if already set); intermediate gradients are freed as soon as they are used,
 * and the graph is released.
 */
export function backward(output: Tensor, gradOutput?: Tensor<'f32'>): void {
  if (!output.requiresGrad)
    throw new Error('backward(): the output does not require grad (no parameter with requiresGrad was used)');
  if (!gradOutput && output.size !== 1)
    throw new Error(`backward(): output has shape ${fmtShape(output.shape)}; pass gradOutput for non-scalars`);
  noGrad(() =>
    tidy(() => {
      const grads = new Map<Tensor, Tensor<'f32'>>();
      grads.set(output, gradOutput ? gradOutput.view() : fill(output.shape, 1));
      const order = topologicalOrder(output);
      for (let i = order.length - 1; i >= 0; i--) {
        const t = order[i];
        const g = grads.get(t);
        if (!g) continue;
        grads.delete(t);
        const node = t.node;
        if (!node) {
          // A leaf: the gradient becomes (or adds to) t.grad and outlives this scope.
          if (t.grad) {
            addInPlace(t.grad, g);
          } else {
            // Gradients of several inputs may be views of one buffer; a leaf's grad must be its own.
            t.grad = keep(g.isShared ? clone(g) : g.view());
          }
          g.dispose();
          continue;
        }
        const inputGrads = node.backward(g);
        g.dispose();
        node.inputs.forEach((input, k) => {
          const gi = inputGrads[k];
          if (!gi || !input.requiresGrad) {
            gi?.dispose();
            return;
          }
          if (!shapesEqual(gi.shape, input.shape)) {
            throw new Error(
              `autograd: ${node.op} returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(input.shape)}`,
            );
          }
          const existing = grads.get(input);
          if (existing) {
            // Out of place: `existing` may share its buffer with another pending gradient.
            grads.set(input, axpbyNoGrad(1, existing, 1, gi));
            existing.dispose();
            gi.dispose();
          } else {
            grads.set(input, gi);
          }
        });
        t.node = null; // release the closure and its saved tensors' references
      }
    }),
  );
}
