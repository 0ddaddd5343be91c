/** Dataset loading (MVTec AD, MVTec 3D-AD, folders, list files) and the synthetic sample-part generator. */
export { IMAGE_EXTENSIONS, listImages, loadDataset, parseCsv } from './loaders.js';
export {
  SYNTHETIC_DEFECT_TYPES,
  SYNTHETIC_MANIFEST,
  generateSyntheticParts,
  renderSyntheticSample,
  resolveSyntheticOptions,
} from './synthetic.js';
export type { SyntheticDefectType, SyntheticOptions, SyntheticSample } from './synthetic.js';
