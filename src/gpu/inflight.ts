/**
 * A bounded window of work in flight, oldest first: the one mechanism that bounds how far the host runs ahead
 * of the GPU. Producers `push` an entry as soon as its work is recorded or started, and call `settleTo(n)` (or
 * `makeRoom`) before starting more: the oldest entries are settled, in order, by the window's `settle`
 * function until at most n remain. Memory stays flat because no more than `limit` entries (and the buffers
 * they hold) exist at once.
 *
 * Users: the ODC small-cluster decisions (src/odc/small-clusters.ts: an iteration's late check is an entry,
 * settling it decides the rare path and submits the next iteration's held work; MAX_ITERATIONS_IN_FLIGHT);
 * a prefetching data source fits the same shape (an entry per batch being loaded, settled when consumed).
 */

/** Training iterations in flight at most: one executing on the GPU while the host records the next. */
export const MAX_ITERATIONS_IN_FLIGHT = 2;

export class InFlightWindow<T> {
  private readonly entries: T[] = [];

  /**
   * `settle(entry, next)` finishes the oldest entry; `next` is the entry after it (now the oldest), if any.
   * An error thrown there empties the window, handing each later entry to `drop` (they depended on it), and
   * reaches settleTo's caller.
   */
  constructor(
    readonly limit: number,
    private readonly settle: (entry: T, next: T | undefined) => Promise<void>,
    private readonly drop: (entry: T) => void = () => {},
  ) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`InFlightWindow: limit must be an integer >= 1, got ${limit}`);
  }

  /** Entries in flight. */
  get size(): number {
    return this.entries.length;
  }

  /** Adds an entry; refuses one over the limit (call makeRoom first). */
  push(entry: T): void {
    if (this.entries.length >= this.limit)
      throw new Error(`InFlightWindow: ${this.limit} entries in flight already; call makeRoom() first`);
    this.entries.push(entry);
  }

  /** Settles the oldest entries, in order, until at most `count` remain. */
  async settleTo(count: number): Promise<void> {
    while (this.entries.length > count) {
      const entry = this.entries.shift()!;
      try {
        await this.settle(entry, this.entries[0]);
      } catch (err) {
        for (const later of this.entries.splice(0)) this.drop(later);
        throw err;
      }
    }
  }

  /** Settles the oldest entries until one more fits. */
  makeRoom(): Promise<void> {
    return this.settleTo(this.limit - 1);
  }
}
