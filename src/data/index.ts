/**
 * odc-webgpu/data: image data sets. `loadDataset('folder:DIR')` and the other `--data` specs, the loaders
 * behind them, `registerDataset` for a source of your own, and the PNG/JPEG codecs. An ImageDataset is
 * n images of height x width x channels bytes (HWC, row-major) with optional labels.
 */
export { loadDataset, registerDataset, listDatasets, NoSplitError } from './registry.ts';
export type { LoadOptions, DatasetLoader } from './registry.ts';
export { checkDataset, headDataset } from './dataset.ts';
export type { ImageDataset } from './dataset.ts';
export { loadTrainingData, subsetDataset, evaluationSplits } from './training-data.ts';
export { loadImageFolder, decodeImageFile } from './image-folder.ts';
export type { ImageFolderOptions, FitMode } from './image-folder.ts';
export { loadIdx, loadMnist, loadFashionMnist } from './idx.ts';
export { loadCifar10, loadCifar100 } from './cifar.ts';
export { loadMnistPackage } from './mnist-package.ts';
export { encodePng, decodePng } from './png.ts';
export type { DecodedImage } from './png.ts';
export { decodeJpeg } from './jpeg.ts';
