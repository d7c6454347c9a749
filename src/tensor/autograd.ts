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
  if (!gradEnabled) return output;
  for (let i = 0; i < inputs.length; i++) {
    if (inputs[i].requiresGrad) {
      output.requiresGrad = true;
      output.node = { op, inputs, backward };
      break;
    }
  }
  return output;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  // a stack of (tensor, expanded) pairs as two parallel arrays: no object per entry
  const stack: Tensor[] = [root];
  const expanded: boolean[] = [false];
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (expanded.pop()) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push(t);
    expanded.push(true);
    const inputs = t.node?.inputs;
    if (!inputs) continue;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i];
      if (input.requiresGrad && !visited.has(input)) {
        stack.push(input);
        expanded.push(false);
      }
    }
  }
  return order;
}

/** Reused by collectedGrads: a node's backward reads it only during its call. */
const pendingScratch: Array<Tensor<'f32'> | null> = [];

/**
 * The gradients `inputs` have collected so far that a node may add into in place (GradNode.backward's `pending`):
 * those in storage of their own, of an input the node takes once. Undefined when there is none.
 */
function collectedGrads(
  inputs: readonly Tensor[],
  grads: Map<Tensor, Tensor<'f32'>>,
): ReadonlyArray<Tensor<'f32'> | null> | undefined {
  let any = false;
  pendingScratch.length = inputs.length;
  for (let k = 0; k < inputs.length; k++) {
    const existing = grads.get(inputs[k]);
    const usable =
      existing !== undefined &&
      !existing.isShared &&
      inputs.indexOf(inputs[k]) === k &&
      inputs.lastIndexOf(inputs[k]) === k;
    pendingScratch[k] = usable ? existing : null;
    any ||= usable;
  }
  return any ? pendingScratch : undefined;
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
        const inputs = node.inputs;
        const inputGrads = node.backward(g, collectedGrads(inputs, grads));
        g.dispose();
        for (let k = 0; k < inputs.length; k++) {
          const input = inputs[k];
          const gi = inputGrads[k];
          if (!gi || !input.requiresGrad) {
            gi?.dispose();
            continue;
          }
          if (!shapesEqual(gi.shape, input.shape)) {
            throw new Error(
              `autograd: ${node.op} returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(input.shape)}`,
            );
          }
          const existing = grads.get(input);
          if (gi === existing) continue; // the node added its gradient into the collected one
          if (existing) {
            // Out of place: `existing` may share its buffer with another pending gradient.
            grads.set(input, axpbyNoGrad(1, existing, 1, gi));
            existing.dispose();
            gi.dispose();
          } else {
            grads.set(input, gi);
          }
        }
        t.node = null; // release the closure and its saved tensors' references
      }
    }),
  );
}
