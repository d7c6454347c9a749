/** The model and optimiser of a configuration (training, evaluation and the benches build them here). */
import { SGD } from '../optim/sgd.ts';
import { OdcModel } from '../models/odc-model.ts';
import type { Rng } from '../util/rng.ts';
import type { TrainConfig } from '../config/settings.ts';

/** The configured network; the neck exists only in ODC mode (DeepCluster clusters backbone features). */
export function buildModel(config: TrainConfig, inChannels: number, rng: Rng): OdcModel {
  return new OdcModel(
    {
      backbone: config.model.backbone,
      stem: config.model.stem,
      inChannels,
      neckHidden: config.model.neckHidden,
      featureDim: config.model.featureDim,
      numClusters: config.odc.k,
      dropout: config.model.dropout,
      withNeck: config.mode === 'odc',
    },
    rng,
  );
}

/** SGD with the head in its own group (ODC: head momentum 0). Parameter order = model.parameters(). */
export function buildOptimizer(model: OdcModel, config: TrainConfig): SGD {
  const head = new Set(model.head.parameters());
  const body = model.parameters().filter((p) => !head.has(p));
  const o = config.optim;
  return new SGD([{ params: body }, { params: model.head.parameters(), momentum: o.headMomentum }], {
    lr: o.lr,
    momentum: o.momentum,
    weightDecay: o.weightDecay,
    nesterov: o.nesterov,
  });
}
