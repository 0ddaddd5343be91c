/**
 * Single-graph ONNX export of a fitted model: backbone → PaDiM embedding → per-position Mahalanobis
 * distance → bilinear upsampling → Gaussian blur → anomalib min-max normalisation, in one file that
 * plain ONNX Runtime (or any opset-17 runtime) can run without partscan.
 *
 * Only image decoding and preprocessing stay outside the graph (they depend on an image library); the
 * recipe is written into the model's `metadata_props` so it can be reproduced exactly.
 *
 * Models whose initializers do not fit protobuf's 2 GiB message limit (d = 550 at 224 px holds a
 * 3.8 GB inverse-covariance tensor) are written with ONNX external data: the big tensors go into one
 * `<out>.data` file beside the model, streamed to disk chunk by chunk so no buffer near 2 GiB is built.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { PartscanError } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { exportOnnxOptionsSchema } from '../options/schemas.js';
import { writeFileAtomic, outputError } from '../util/atomic-write.js';
import { PARTSCAN_VERSION, type Model } from '../model/model.js';
import { gaussianKernel1d } from '../postprocess/blur.js';
import { OnnxDataType } from '../onnx/graph.js';
import { buildPadimGraph, EXTERNAL, inlineInitializer, padimModelProto, type InitializerSpec } from '../model/scoring-graph.js';

import { EXPORT_IR_VERSION as IR_VERSION, EXPORT_OPSET as OPSET } from '../model/scoring-graph.js';

/** Default-domain opset of exported graphs (raised to the backbone's own opset when that is newer). */
export const EXPORT_OPSET: number = OPSET;
/** Smallest IR version of exported graphs. */
export const EXPORT_IR_VERSION: number = IR_VERSION;

const { onnx } = onnxProto;

/**
 * Total initializer size above which {@link exportModelOnnx} switches to external data by default:
 * 1.5 GiB, comfortably below protobuf's hard 2 GiB message limit (the graph, names and metadata need
 * room too).
 */
export const EXTERNAL_DATA_AUTO_TOTAL_BYTES = 1.5 * 1024 ** 3;

/**
 * Per-tensor size above which a tensor goes to the external data file once external data is used
 * automatically (the same default as `onnx.save_model(..., size_threshold=1024)`): shape constants stay
 * in the graph, where tools can read them.
 */
export const EXTERNAL_DATA_AUTO_TENSOR_BYTES = 1024;

/** Offsets of tensors in the external data file are multiples of this (lets runtimes mmap them). */
export const EXTERNAL_DATA_ALIGNMENT = 4096;

/** Options of {@link exportModelOnnx}. */
export interface ExportOnnxOptions {
  /**
   * Tensors larger than this many bytes are written to the external data file `<out>.data`. Default:
   * no external data unless the initializers total more than {@link EXTERNAL_DATA_AUTO_TOTAL_BYTES},
   * then every tensor above {@link EXTERNAL_DATA_AUTO_TENSOR_BYTES}. 0 puts every tensor outside.
   */
  externalDataThreshold?: number;
  /**
   * Skip normalisation: `anomaly_map` and `image_score` are raw Mahalanobis-distance scores (what
   * `ScoreResult.anomalyMap` / `imageScore` hold). `pred_mask` is still computed from the thresholds.
   */
  raw?: boolean;
}

/** What {@link exportModelOnnx} wrote. */
export interface ExportOnnxResult {
  /** The `.onnx` file. */
  file: string;
  /** The external data file (`<file>.data`), when tensors were written outside the graph. */
  externalData?: string;
  /** Size of the `.onnx` file in bytes. */
  bytes: number;
  /** Size of the external data file in bytes, when there is one. */
  externalDataBytes?: number;
}

/** The preprocessing recipe, spelled out for `metadata_props` and for people. */
function preprocessRecipe(model: Model): Record<string, unknown> {
  const p = model.header.preprocess;
  return {
    imageSize: p.imageSize,
    cropSize: p.cropSize ?? null,
    inputSize: model.size,
    mean: p.mean,
    std: p.std,
    background: p.background,
    kernel: p.kernel,
    channelOrder: 'RGB',
    layout: 'NCHW',
    dtype: 'float32',
    autoOrient: true,
    steps: [
      'decode; apply the EXIF orientation (auto-orient)',
      'convert to 8-bit sRGB RGB (grey replicated to 3 channels, 16-bit scaled to 8-bit, CMYK converted)',
      'flatten alpha onto `background` (0..255 RGB)',
      'resize to imageSize × imageSize ignoring the aspect ratio, with `kernel` (sharp/libvips; linear = antialiased bilinear)',
      'if cropSize: centre crop cropSize × cropSize at offset round_half_even((imageSize − cropSize) / 2)',
      'value = (v / 255 − mean[c]) / std[c] per RGB channel c',
      'lay out as [N, 3, inputSize, inputSize] (NCHW, channel 0 = R)',
    ],
    maxPixels: p.maxPixels,
  };
}

/**
 * Exports `model` as ONE self-contained ONNX graph (opset 17) that turns preprocessed images into
 * anomaly maps, image scores and defect masks, identical (to float32 rounding) to {@link Model.score}.
 *
 * Input `input`: float32 [N, 3, S, S], S = `cropSize ?? imageSize`, preprocessed as recorded in the
 * metadata key `partscan.preprocess` (RGB, NCHW, (v/255 − mean)/std, see docs/EXPORT.md).
 * Outputs:
 * - `anomaly_map` float32 [N, 1, S, S]: normalised 0..1 (threshold at 0.5), or raw when the model has
 *   no thresholds or `opts.raw` is set (metadata `partscan.normalized` says which);
 * - `image_score` float32 [N]: the raw map's maximum, normalised with the image statistics (raw likewise);
 * - `pred_mask` uint8 [N, 1, S, S]: 1 where the normalised map is > 0.5 (and inside the ROI, if any);
 *   only when the model has thresholds. uint8 rather than bool because more consumers read it.
 *
 * Written atomically (temp file + rename). When external data is used, the tensors go to
 * `<outFile>.data` beside the model (written first, so a complete `.onnx` never points at a partial
 * data file); keep both files together.
 * @throws PartscanError 'OPTIONS' for tiled models (stitching happens outside the graph) or maps too
 *   small for the blur; 'ONNX_FORMAT' for backbones that cannot be merged; 'OUTPUT' when writing fails.
 *
 * @example
 * const model = await Model.load('bottle.partscan');
 * const { file, bytes } = await exportModelOnnx(model, 'bottle.onnx');
 */
export async function exportModelOnnx(model: Model, outFile: string, opts: ExportOnnxOptions = {}): Promise<ExportOnnxResult> {
  parseOptions(exportOnnxOptionsSchema, opts, 'exportModelOnnx', 'externalDataThreshold: a byte count ≥ 0, e.g. 1024 (leave it out for automatic external data above 1.5 GiB); raw: a boolean');
  const header = model.header;
  if (header.tiling) {
    throw new PartscanError('OPTIONS', 'Tiled models cannot be exported as a single ONNX graph: tiles are cut and stitched outside the network.', {
      remedy: 'export a model fitted without --tile, or run tiled models with partscan',
    });
  }
  const threshold = opts.externalDataThreshold;
  const built = await buildPadimGraph(model, opts.raw === true);
  const { specs, S, normalized } = built;
  const t = header.thresholds;
  const recipe = preprocessRecipe(model);
  const meta: Record<string, unknown> = {
    'partscan.version': PARTSCAN_VERSION,
    'partscan.model_format': { format: header.format, version: header.formatVersion },
    'partscan.preprocess': recipe,
    'partscan.preprocess.image_size': recipe.imageSize,
    'partscan.preprocess.crop_size': recipe.cropSize,
    'partscan.preprocess.input_size': S,
    'partscan.preprocess.mean': recipe.mean,
    'partscan.preprocess.std': recipe.std,
    'partscan.preprocess.background': recipe.background,
    'partscan.preprocess.kernel': recipe.kernel,
    'partscan.preprocess.channel_order': 'RGB',
    'partscan.preprocess.layout': 'NCHW',
    'partscan.preprocess.auto_orient': true,
    'partscan.backbone': { ...header.backbone, embedded: undefined },
    'partscan.embedding': header.embedding,
    'partscan.gaussian': header.gaussian,
    'partscan.postprocess': { ...header.postprocess, blurKernelSize: gaussianKernel1d(header.postprocess.blurSigma).length, blurPadding: 'reflect' },
    'partscan.normalized': normalized,
    'partscan.thresholds': t ?? null,
    'partscan.band': t?.band ?? null,
    'partscan.roi': model.roi !== undefined,
    'partscan.outputs': {
      anomaly_map: normalized
        ? 'float32 [N,1,S,S]: normalised 0..1 with the threshold at 0.5: 0.5 ± (1 − 1/√(1 + 2|z|))/2, z = (raw − thresholds.pixel)/s, s = (thresholds.pixel − pixelStats.min)/2 (docs/EXPORT.md)'
        : 'float32 [N,1,S,S]: raw anomaly map (blurred Mahalanobis distance), not normalised',
      image_score: normalized
        ? 'float32 [N]: max of the raw map, normalised with thresholds.image and imageStats (threshold = 0.5)'
        : 'float32 [N]: raw image score (max of the raw map)',
      ...(t ? { pred_mask: 'uint8 [N,1,S,S]: 1 where the normalised map > 0.5 (inside the ROI), else 0' } : {}),
      verdict: t
        ? 'from the normalised image score s: no band → NG if s > 0.5 else OK; band → NG if s > high, OK if s < low, else UNCERTAIN'
        : 'unavailable: the model has no thresholds',
    },
  };
  const metadataProps = Object.entries(meta).map(([key, value]) => ({ key, value: JSON.stringify(value) }));

  // Inline or external data.
  const total = specs.reduce((a, s) => a + s.byteLength, 0);
  const cut = threshold ?? (total > EXTERNAL_DATA_AUTO_TOTAL_BYTES ? EXTERNAL_DATA_AUTO_TENSOR_BYTES : Infinity);
  const outAbs = path.resolve(outFile);
  const dataFile = `${outAbs}.data`;
  const dataName = path.basename(dataFile);
  const external: InitializerSpec[] = [];
  let offset = 0;
  const initializers: OnnxTypes.ITensorProto[] = specs.map((s) => {
    // int64 constants (shapes, indices) always stay inline: runtimes read them during shape inference,
    // and ORT refuses to take them from external data there.
    if (s.chunks && s.byteLength > cut && s.proto.dataType !== OnnxDataType.INT64) {
      offset = Math.ceil(offset / EXTERNAL_DATA_ALIGNMENT) * EXTERNAL_DATA_ALIGNMENT;
      external.push(s);
      const entry: OnnxTypes.ITensorProto = {
        ...s.proto,
        dataLocation: EXTERNAL,
        externalData: [
          { key: 'location', value: dataName },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(s.byteLength) },
        ],
      };
      offset += s.byteLength;
      return entry;
    }
    return inlineInitializer(s);
  });

  const modelProto = padimModelProto(built, initializers, {
    name: 'partscan_padim',
    graphDoc: `PaDiM anomaly detection exported by partscan ${PARTSCAN_VERSION}: preprocessed [N,3,${S},${S}] RGB → anomaly_map, image_score${t ? ', pred_mask' : ''}.`,
    doc: 'partscan PaDiM model; see metadata_props partscan.* for the preprocessing and thresholds.',
    metadataProps,
  });
  let bytes: Uint8Array;
  try {
    bytes = onnx.ModelProto.encode(modelProto).finish();
  } catch (e) {
    throw new PartscanError('OUTPUT', `Encoding the ONNX graph failed (${e instanceof Error ? e.message : String(e)}).`, {
      cause: e,
      remedy: 'pass a smaller externalDataThreshold so the big tensors go to the external data file',
    });
  }

  try {
    await fs.mkdir(path.dirname(outAbs), { recursive: true });
  } catch (e) {
    throw outputError(outAbs, e);
  }
  let dataBytes: number | undefined;
  if (external.length) {
    // Data first: the .onnx that refers to it appears (rename) only once the data is complete.
    await writeFileAtomic(
      dataFile,
      (function* () {
        let pos = 0;
        for (const s of external) {
          const start = Math.ceil(pos / EXTERNAL_DATA_ALIGNMENT) * EXTERNAL_DATA_ALIGNMENT;
          if (start > pos) yield new Uint8Array(start - pos);
          for (const c of s.chunks!()) yield c;
          pos = start + s.byteLength;
        }
      })(),
    );
    dataBytes = offset;
  }
  try {
    await writeFileAtomic(outAbs, bytes);
  } catch (e) {
    // No graph: do not leave its external data file behind as an orphan.
    if (dataBytes !== undefined) await fs.rm(dataFile, { force: true }).catch(() => undefined);
    throw e;
  }
  return {
    file: outAbs,
    bytes: bytes.length,
    ...(dataBytes !== undefined ? { externalData: dataFile, externalDataBytes: dataBytes } : {}),
  };
}
