/**
 * tidy()/keep() scopes (tfjs semantics): every tensor created inside `tidy(fn)` is disposed when fn
 * returns, except tensors in its result and tensors passed to keep(). Tensors made outside any scope
 * (parameters, optimiser state, memories) live until disposed explicitly.
 */
interface Disposable {
  dispose(): void;
}

const scopes: Set<Disposable>[] = [];

export function trackTensor(t: Disposable): void {
  scopes[scopes.length - 1]?.add(t);
}

/** Removes a tensor from every open scope so it outlives them; returns it. */
export function keep<T extends Disposable>(t: T): T {
  for (let i = 0; i < scopes.length; i++) scopes[i].delete(t);
  return t;
}

function collect(value: unknown, out: Set<unknown>): void {
  if (value === null || typeof value !== 'object') return;
  if ('dispose' in value && typeof value.dispose === 'function' && 'shape' in value) {
    out.add(value);
    return;
  }
  const items = Array.isArray(value) ? value : Object.values(value);
  for (const v of items) collect(v, out);
}

/** Runs fn and disposes the tensors it created, except those it returns (in arrays/objects too). */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    for (const t of scope) t.dispose();
    throw err;
  } finally {
    scopes.pop();
  }
  const returned = new Set<unknown>();
  collect(result, returned);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}
