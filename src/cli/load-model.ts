/** Model loading for the commands that score (score, eval). */

import type { BackboneSpec } from '../backbone/registry.js';
import { readModelFile } from '../model/model-file.js';
import { parseModelHeader } from '../model/header-schema.js';
import { Model } from '../model/model.js';

/**
 * Loads a model; `weights` supplies local safetensors for a model saved without its backbone
 * (--no-embed-backbone) when the registry weights are not cached.
 */
export async function loadModel(file: string, threads?: number, weights?: string): Promise<Model> {
  const opts: Parameters<typeof Model.load>[1] = threads !== undefined ? { threads } : {};
  if (weights) {
    const header = parseModelHeader((await readModelFile(file, { sections: () => false })).header, file);
    const spec: BackboneSpec = { backbone: header.backbone.name, weights, offline: true };
    if (header.backbone.seed !== undefined) spec.seed = header.backbone.seed;
    opts.backbone = spec;
  }
  return Model.load(file, opts);
}
