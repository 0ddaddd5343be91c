/** `partscan info`: a model file's header and sections. */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BACKBONES } from '../../backbone/registry.js';
import { readCheckedModelFile } from '../../model/model-sections.js';
import type { ModelHeader } from '../../model/model.js';
import { EXIT_OK } from '../exit-codes.js';
import { formatBytes, toJson, type CliIo } from '../format.js';
import { formatOperatingPoint } from '../format-thresholds.js';

export async function infoCommand(modelFile: string, f: { json?: boolean }, io: CliIo): Promise<number> {
  // Reads the file only: no ONNX Runtime session is created for the backbone.
  // Every known section is read and verified (the statistics for resuming too); unknown ones are listed, not read.
  const { header: parsed } = await readCheckedModelFile(modelFile, { read: () => true });
  const { sections, ...header } = parsed;
  const bytes = (await fs.stat(modelFile)).size;
  const info = {
    file: path.resolve(modelFile),
    fileBytes: bytes,
    header,
    sections: sections.map((s) => ({ name: s.name, dtype: s.dtype, shape: s.shape, bytes: s.byteLength })),
  };
  if (f.json) {
    io.out(toJson(info) + '\n');
    return EXIT_OK;
  }
  const h = header as ModelHeader;
  const t = h.thresholds;
  const p = h.preprocess;
  io.out(
    [
      `file        ${info.file} (${formatBytes(bytes)})`,
      `format      ${h.format} ${h.formatVersion.join('.')}, written by partscan ${h.partscanVersion}`,
      `backbone    ${h.backbone.name} (${h.backbone.precision ?? 'fp32'}, layers ${h.backbone.layers.join(',')}, sha256 ${h.backbone.sha256.slice(0, 12)}…, ${h.backbone.embedded ? 'embedded' : BACKBONES[h.backbone.name]?.kind === 'bundled' ? 'not embedded: ships with partscan' : 'not embedded: needs the cached weights'})`,
      `preprocess  ${p.imageSize} px${p.cropSize ? `, crop ${p.cropSize}` : ''}, ${p.kernel}`,
      `embedding   d ${h.embedding.channels} of ${h.embedding.totalChannels}, seed ${h.embedding.seed}, grid ${h.embedding.gridW}×${h.embedding.gridH}`,
      `statistics  ${h.gaussian.images} images, ε ${h.gaussian.epsilon}, ${h.gaussian.resumable ? `resumable (${h.gaussian.resumeState === 'samples' ? 'keeps the samples' : 'keeps scatter matrices'})` : 'compact'}`,
      `image score ${h.imageScore?.kind === 'standardized' ? 'standardised per position (maximum of the blurred standardised distance map)' : h.imageScore ? 'anomaly-map maximum' : 'anomaly-map maximum (format < 1.3: re-fit for the per-position standardised score)'}`,
      t ? formatOperatingPoint(t, 12) : 'thresholds  none',
      ...(h.calibration
        ? [
            `calibration ${h.calibration.good} good scores (${h.calibration.sources.leaveOneOut} leave-one-out, ${h.calibration.sources.heldOut} held out, ${h.calibration.sources.added} added), ${h.calibration.defect} labelled defects${h.calibration.reviewed ? `, ${h.calibration.reviewed.good + h.calibration.reviewed.defect} reviewed labels (${h.calibration.reviewed.good} good, ${h.calibration.reviewed.defect} defect)` : ''}`,
          ]
        : []),
      ...(h.tiling ? [`tiling      ${h.tiling.tile} px tiles, overlap ${h.tiling.overlap}`] : []),
      ...(h.roi ? [`roi         ${h.roi.width}×${h.roi.height}`] : []),
      `sections    ${info.sections.map((s) => `${s.name} ${formatBytes(s.bytes)}`).join(', ')}`,
    ].join('\n') + '\n',
  );
  return EXIT_OK;
}
