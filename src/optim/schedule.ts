/**
 * Learning-rate schedules by epoch (ODC-SPEC 3.2: lr 0.06, times 0.4 from epoch 400).
 */

export interface MultiStepOptions {
  /** Epochs at which the lr is multiplied by gamma (PyTorch MultiStepLR milestones). */
  steps: number[];
  gamma: number;
}

/** Multi-step decay: baseLr * gamma^(number of steps <= epoch). */
export function stepLr(baseLr: number, epoch: number, opts: MultiStepOptions): number {
  if (!Number.isFinite(baseLr) || !Number.isFinite(opts.gamma))
    throw new RangeError(`stepLr: baseLr and gamma must be finite, got ${baseLr}, ${opts.gamma}`);
  if (!Number.isInteger(epoch) || epoch < 0)
    throw new RangeError(`stepLr: epoch must be an integer >= 0, got ${epoch}`);
  const passed = opts.steps.filter((s) => s <= epoch).length;
  return baseLr * opts.gamma ** passed;
}

/** One decay step: baseLr before `step`, baseLr * gamma from epoch `step` on. */
export function singleStepLr(baseLr: number, epoch: number, step: number, gamma: number): number {
  return stepLr(baseLr, epoch, { steps: [step], gamma });
}
