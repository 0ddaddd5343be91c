/** `partscan export`: a fitted model as one ONNX graph. */

import path from 'node:path';
import { exportModelOnnx } from '../../export/onnx-export.js';
import { Model } from '../../model/model.js';
import { EXIT_OK } from '../exit-codes.js';
import { formatBytes, toJson, type CliIo } from '../format.js';

export async function exportCommand(modelFile: string, f: { onnx: string; raw?: boolean; weights?: string; json?: boolean }, io: CliIo): Promise<number> {
  const t0 = performance.now();
  const model = await Model.load(modelFile, f.weights ? { backbone: { backbone: 'resnet50', weights: f.weights } } : {});
  try {
    const r = await exportModelOnnx(model, f.onnx, f.raw ? { raw: true } : {});
    const summary = { onnx: path.resolve(r.file), bytes: r.bytes, externalData: r.externalData ?? null, seconds: (performance.now() - t0) / 1000 };
    io.out(f.json ? toJson(summary) + '\n' : `${summary.onnx} (${formatBytes(r.bytes)}${r.externalData ? `, weights in ${r.externalData}` : ''})\n`);
  } finally {
    await model.dispose();
  }
  return EXIT_OK;
}
