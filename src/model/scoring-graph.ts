/**
 * The PaDiM scoring graph of a fitted model as ONNX — backbone → embedding gather → per-position
 * Mahalanobis distance → bilinear upsampling → Gaussian blur (→ normalisation and mask, for the export)
 * — and its ModelProto envelope. It lives below both users: the Model runs it in memory as one ONNX
 * Runtime session, and the ONNX export (src/export/onnx-export.ts) only writes it to files.
 */

import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { PartscanError } from '../errors.js';
import type { Backbone } from '../backbone/types.js';
import { channelSources } from '../embedding/embedding.js';
import { stripedMahalanobisNodes, type StripedInverse } from '../stats/striped-inverse.js';
import { reduceMaxNodes, standardizedScoreNodes, upsampleBlurNodes } from '../postprocess/upsample-blur-graph.js';
import type { PositionStandardization } from '../postprocess/standardize.js';
import { normalizationScale } from '../postprocess/normalize.js';
import { encodeModelWithRawTensors, LITTLE_ENDIAN_HOST, littleEndianBytes, makeNode, type GraphSink, type RawTensor, modelProto, ONNX_IR_VERSION, ONNX_OPSET, OnnxDataType, tensorValueInfo, type OnnxAttributeValue } from '../onnx/graph.js';
import { PARTSCAN_VERSION, type ModelHeader } from './header.js';

const { onnx } = onnxProto;

/** Default-domain opset of exported graphs (raised to the backbone's own opset when that is newer). */
export const EXPORT_OPSET = ONNX_OPSET;

/** Smallest IR version of exported graphs. */
export const EXPORT_IR_VERSION = ONNX_IR_VERSION;

/** What the scoring graph is built from: a fitted model's parameters ({@link Model} is one). */
export interface ScoringGraphModel {
  readonly header: ModelHeader;
  /** Grid positions P. */
  readonly positions: number;
  /** Embedding size d. */
  readonly dim: number;
  /** Network input side S. */
  readonly size: number;
  /** Per-position means [P, d]. */
  readonly mean: Float64Array;
  /** The random channel subset. */
  readonly channelIndices: Int32Array;
  /** Inverse covariances, as stripes (the form scoring multiplies with; see striped-inverse.ts). */
  readonly inverse: StripedInverse;
  /** Region of interest (size×size, 1 = inspect), if any. */
  readonly roi: Uint8Array | undefined;
  /** Per-position standardisation of the image score (format ≥ 1.3), if any. */
  readonly standardization: PositionStandardization | undefined;
  /** The backbone, with its ONNX graph. */
  getBackbone(): Promise<Backbone>;
}

const { FLOAT, UINT8, INT64, BOOL } = OnnxDataType;
/** TensorProto.DataLocation EXTERNAL. */
export const EXTERNAL = 1;

/** An initializer whose bytes are produced on demand, so big tensors can be streamed to disk. */
export interface InitializerSpec {
  /** The tensor without its data. */
  proto: OnnxTypes.ITensorProto;
  /** Size of the raw little-endian data. */
  byteLength: number;
  /** The raw data in pieces; absent when `proto` carries its data in a typed field (kept inline). */
  chunks?: () => Iterable<Uint8Array>;
  /** Optional: writes the raw data straight into a 4-byte aligned `target` (see {@link RawTensor}). */
  writeInto?: (target: Uint8Array) => void;
}


function floatSpec(name: string, dims: number[], data: Float32Array): InitializerSpec {
  const bytes = littleEndianBytes(data);
  return { proto: { name, dims, dataType: FLOAT }, byteLength: bytes.byteLength, chunks: () => [bytes] };
}

function int64Spec(name: string, dims: number[], values: readonly number[]): InitializerSpec {
  const bytes = littleEndianBytes(BigInt64Array.from(values, (v) => BigInt(v)));
  return { proto: { name, dims, dataType: INT64 }, byteLength: bytes.byteLength, chunks: () => [bytes] };
}

function boolSpec(name: string, dims: number[], values: Uint8Array): InitializerSpec {
  const bytes = Uint8Array.from(values, (v) => (v ? 1 : 0));
  return { proto: { name, dims, dataType: BOOL }, byteLength: bytes.byteLength, chunks: () => [bytes] };
}

/**
 * The full inverse covariances [P, d, d] expanded from the model's stripes (for the ONNX export, which
 * keeps the plain dense tensor), produced in position chunks of about 64 MiB so the whole tensor never
 * has to exist in memory at once.
 */
function inverseSpec(name: string, model: ScoringGraphModel): InitializerSpec {
  const P = model.positions;
  const d = model.dim;
  const perChunk = Math.max(1, Math.min(P, Math.floor((64 * 1024 * 1024) / (d * d * 4))));
  return {
    proto: { name, dims: [P, d, d], dataType: FLOAT },
    byteLength: P * d * d * 4,
    chunks: function* () {
      for (let p0 = 0; p0 < P; p0 += perChunk) {
        const pc = Math.min(perChunk, P - p0);
        const full = new Float32Array(pc * d * d);
        for (let q = 0; q < pc; q++) model.inverse.writeDense(p0 + q, full, q * d * d);
        yield littleEndianBytes(full);
      }
    },
    ...(LITTLE_ENDIAN_HOST
      ? {
          writeInto: (target: Uint8Array) => {
            const full = new Float32Array(target.buffer, target.byteOffset, P * d * d);
            for (let p = 0; p < P; p++) model.inverse.writeDense(p, full, p * d * d);
          },
        }
      : {}),
  };
}

/** Names of the stripe inputs of the in-process scoring graph, in stripe order. */
export function inverseStripeInputs(model: ScoringGraphModel): string[] {
  return model.inverse.stripes.map((_, a) => `partscan/inv_cov.${a}`);
}

/** A backbone initializer with its data as raw bytes (externalisable), or as it is when held in a typed field other than float. */
function backboneInitializerSpec(t: OnnxTypes.ITensorProto): InitializerSpec {
  if (t.dataLocation === EXTERNAL || (t.externalData && t.externalData.length > 0)) {
    throw new PartscanError('ONNX_FORMAT', `Backbone tensor "${t.name}" refers to external data, which cannot be merged.`, {
      remedy: 'load the backbone ONNX file with its weights inlined',
    });
  }
  const raw = t.rawData;
  if (raw && raw.length > 0) {
    const { rawData: _raw, ...rest } = t as OnnxTypes.ITensorProto & Record<string, unknown>;
    return { proto: rest, byteLength: raw.length, chunks: () => [raw] };
  }
  if (t.dataType === FLOAT && t.floatData && t.floatData.length > 0) {
    const bytes = littleEndianBytes(Float32Array.from(t.floatData));
    const { floatData: _f, ...rest } = t as OnnxTypes.ITensorProto & Record<string, unknown>;
    return { proto: rest, byteLength: bytes.byteLength, chunks: () => [bytes] };
  }
  // int64 / other typed fields: small constants in practice; kept inline as they are.
  return { proto: t, byteLength: 0 };
}

/** Renames every tensor and node name of a graph (recursively into subgraphs) with `f`. */
function renameGraph(g: OnnxTypes.IGraphProto, f: (n: string) => string): OnnxTypes.IGraphProto {
  const ren = (n: string | null | undefined): string => (n ? f(n) : '');
  const renVi = (v: OnnxTypes.IValueInfoProto): OnnxTypes.IValueInfoProto => ({ ...v, name: ren(v.name) });
  const renAttr = (a: OnnxTypes.IAttributeProto): OnnxTypes.IAttributeProto => ({
    ...a,
    ...(a.g ? { g: renameGraph(a.g, f) } : {}),
    ...(a.graphs && a.graphs.length ? { graphs: a.graphs.map((s) => renameGraph(s, f)) } : {}),
  });
  return {
    ...g,
    node: (g.node ?? []).map((n) => ({
      ...n,
      name: ren(n.name),
      input: (n.input ?? []).map(ren),
      output: (n.output ?? []).map(ren),
      attribute: (n.attribute ?? []).map(renAttr),
    })),
    initializer: (g.initializer ?? []).map((t) => ({ ...t, name: ren(t.name) })),
    input: (g.input ?? []).map(renVi),
    output: (g.output ?? []).map(renVi),
    valueInfo: (g.valueInfo ?? []).map(renVi),
  };
}

/** Every name a graph uses (tensors and nodes, subgraphs included). */
function graphNames(g: OnnxTypes.IGraphProto, into = new Set<string>()): Set<string> {
  for (const n of g.node ?? []) {
    if (n.name) into.add(n.name);
    for (const x of n.input ?? []) if (x) into.add(x);
    for (const x of n.output ?? []) if (x) into.add(x);
    for (const a of n.attribute ?? []) {
      if (a.g) graphNames(a.g, into);
      for (const s of a.graphs ?? []) graphNames(s, into);
    }
  }
  for (const t of g.initializer ?? []) if (t.name) into.add(t.name);
  for (const v of [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]) if (v.name) into.add(v.name);
  return into;
}

/** Normalisation subgraph: normalize.ts's saturating map, or the step fallback of a degenerate calibration. */
function normalizeNodes(
  x: string,
  out: string,
  stats: { threshold: number; min: number; max: number },
  prefix: string,
  add: (spec: InitializerSpec) => void,
  node: (op: string, inputs: string[], outputs: string[], attrs?: Record<string, OnnxAttributeValue>) => void,
): void {
  const scale = normalizationScale(stats);
  add(floatSpec(`${prefix}.threshold`, [], Float32Array.of(stats.threshold)));
  add(floatSpec(`${prefix}.half`, [], Float32Array.of(0.5)));
  node('Sub', [x, `${prefix}.threshold`], [`${prefix}.centred`]);
  if (scale > 0) {
    // z = (x − t) / s; 0.5 + ½ · sign(z) · (1 − 1/√(1 + 2|z|)), as normalize.ts computes it.
    add(floatSpec(`${prefix}.scale`, [], Float32Array.of(scale)));
    add(floatSpec(`${prefix}.one`, [], Float32Array.of(1)));
    add(floatSpec(`${prefix}.two`, [], Float32Array.of(2)));
    node('Div', [`${prefix}.centred`, `${prefix}.scale`], [`${prefix}.z`]);
    node('Abs', [`${prefix}.z`], [`${prefix}.absz`]);
    node('Mul', [`${prefix}.absz`, `${prefix}.two`], [`${prefix}.twoabsz`]);
    node('Add', [`${prefix}.twoabsz`, `${prefix}.one`], [`${prefix}.radicand`]);
    node('Sqrt', [`${prefix}.radicand`], [`${prefix}.root`]);
    node('Reciprocal', [`${prefix}.root`], [`${prefix}.inv`]);
    node('Sub', [`${prefix}.one`, `${prefix}.inv`], [`${prefix}.g`]);
    node('Sign', [`${prefix}.z`], [`${prefix}.sign`]);
    node('Mul', [`${prefix}.g`, `${prefix}.sign`], [`${prefix}.signedg`]);
    node('Mul', [`${prefix}.signedg`, `${prefix}.half`], [`${prefix}.halfg`]);
    node('Add', [`${prefix}.halfg`, `${prefix}.half`], [out]);
  } else {
    // Degenerate calibration (no scale): step 0 / 0.5 / 1 below / at / above the threshold = sign·½ + ½.
    node('Sign', [`${prefix}.centred`], [`${prefix}.sign`]);
    node('Mul', [`${prefix}.sign`, `${prefix}.half`], [`${prefix}.halfsign`]);
    node('Add', [`${prefix}.halfsign`, `${prefix}.half`], [out]);
  }
}

/** The PaDiM graph of a model, before serialisation (shared by the export and in-process scoring). */
export interface PadimGraph {
  nodes: OnnxTypes.INodeProto[];
  specs: InitializerSpec[];
  outputs: OnnxTypes.IValueInfoProto[];
  opsetImport: OnnxTypes.IOperatorSetIdProto[];
  bbModel: OnnxTypes.ModelProto;
  bbGraph: OnnxTypes.IGraphProto;
  /** Input side. */
  S: number;
  /** Whether `anomaly_map` / `image_score` are normalised. */
  normalized: boolean;
  /** Graph inputs besides the image: the inverse-covariance stripes, when they are fed at run time. */
  inverseInputs: OnnxTypes.IValueInfoProto[];
}

/**
 * How the scoring graph holds the inverse covariances: 'dense', one [P, d, d] initializer (the ONNX
 * export: a self-contained file with the plain tensor); 'stripe-inputs', the model's stripes as graph
 * inputs fed at every run ({@link inverseStripeInputs}), read in place by ONNX Runtime (in-process
 * scoring: no copy of them in the graph bytes nor in the session).
 */
export type InverseCovarianceForm = 'dense' | 'stripe-inputs';

/**
 * Builds the whole scoring graph of `model` (raw: outputs not normalised; withMask: a `pred_mask`
 * output when the model has thresholds).
 */
export async function buildPadimGraph(model: ScoringGraphModel, raw: boolean, withMask = true, inverseForm: InverseCovarianceForm = 'dense'): Promise<PadimGraph> {
  const header = model.header;
  const S = model.size;
  const { gridH, gridW } = header.embedding;
  const P = gridH * gridW;
  const d = model.dim;

  // Decode the backbone graph and find each layer's grid by running it once on a blank image.
  const backbone = await model.getBackbone();
  let bbModel: OnnxTypes.ModelProto;
  try {
    bbModel = onnx.ModelProto.decode(backbone.onnx);
  } catch (e) {
    throw new PartscanError('ONNX_FORMAT', `The backbone graph of ${backbone.identity.name} cannot be decoded.`, { cause: e, remedy: 're-fit or rebuild the backbone' });
  }
  const layerMaps = await backbone.extract({ data: new Float32Array(3 * S * S), dims: [1, 3, S, S] });
  const layerDims = layerMaps.map((m) => m.dims);
  if (layerDims[0]![2] !== gridH || layerDims[0]![3] !== gridW) {
    throw new PartscanError('BACKBONE_MISMATCH', `Backbone grid ${layerDims[0]![3]}×${layerDims[0]![2]} differs from the model's ${gridW}×${gridH}.`, {
      remedy: 'export with the backbone the model was fitted with',
    });
  }

  // Merge the backbone graph as it is; rename its names only if they clash with ours.
  let bbGraph: OnnxTypes.IGraphProto = bbModel.graph ?? {};
  const ours = ['input', 'anomaly_map', 'image_score', 'pred_mask'];
  const bbNames = graphNames(bbGraph);
  const clash = [...bbNames].some((n) => n.startsWith('partscan/') || (ours.includes(n) && n !== backbone.inputName));
  const bbName = (n: string): string => (clash ? `backbone/${n}` : n);
  if (clash) bbGraph = renameGraph(bbGraph, bbName);
  const initNames = new Set((bbGraph.initializer ?? []).map((t) => t.name ?? ''));
  const extraInputs = (bbGraph.input ?? []).filter((v) => v.name !== bbName(backbone.inputName) && !initNames.has(v.name ?? ''));
  if (extraInputs.length) {
    throw new PartscanError('ONNX_FORMAT', `The backbone graph has inputs besides the image: ${extraInputs.map((v) => v.name).join(', ')}.`, {
      remedy: 'use a backbone with a single image input',
    });
  }

  const defaultOpset = Math.max(
    EXPORT_OPSET,
    ...(bbModel.opsetImport ?? []).filter((o) => !o.domain || o.domain === 'ai.onnx').map((o) => Number(o.version ?? 0)),
  );
  const opsetImport = [
    { domain: '', version: defaultOpset },
    ...(bbModel.opsetImport ?? []).filter((o) => o.domain && o.domain !== 'ai.onnx'),
  ];

  const specs: InitializerSpec[] = (bbGraph.initializer ?? []).map(backboneInitializerSpec);
  const nodes: OnnxTypes.INodeProto[] = [];
  if (bbName(backbone.inputName) !== 'input') {
    nodes.push(makeNode('Identity', ['input'], [bbName(backbone.inputName)], 'partscan/input'));
  }
  nodes.push(...(bbGraph.node ?? []));
  let serial = 0;
  const add = (spec: InitializerSpec): void => void specs.push(spec);
  const node = (op: string, inputs: string[], outputs: string[], attrs: Record<string, OnnxAttributeValue> = {}): void => {
    nodes.push(makeNode(op, inputs, outputs, `partscan/${op}_${serial++}`, attrs));
  };

  // Embedding: per layer, the kept channels (Gather axis 1), aligned to layer1's grid by nearest
  // neighbour with src = floor(dst·in/out) as index tables (Gather axes 2, 3). Index tables, not
  // Resize(nearest, asymmetric, floor): ORT computes dst/(out/in) in float32 and lands one row short
  // for some size pairs (e.g. 14 → 16 at dst 8), while the tables are exact for every size.
  const sources = channelSources(model.channelIndices, header.backbone.channels);
  const parts: string[] = [];
  const concatOrder: number[] = [];
  header.backbone.layers.forEach((layer, l) => {
    const kept = sources.map((s, j) => ({ ...s, j })).filter((s) => s.layer === l);
    if (kept.length === 0) return;
    const [, , H, W] = layerDims[l]!;
    const p = `partscan/emb.${l}`;
    add(int64Spec(`${p}.channels`, [kept.length], kept.map((s) => s.channel)));
    node('Gather', [bbName(layer), `${p}.channels`], [`${p}.kept`], { axis: 1 });
    let t = `${p}.kept`;
    if (H !== gridH) {
      add(int64Spec(`${p}.rows`, [gridH], Array.from({ length: gridH }, (_, y) => Math.min(H - 1, Math.floor((y * H) / gridH)))));
      node('Gather', [t, `${p}.rows`], [`${p}.rowsAligned`], { axis: 2 });
      t = `${p}.rowsAligned`;
    }
    if (W !== gridW) {
      add(int64Spec(`${p}.cols`, [gridW], Array.from({ length: gridW }, (_, x) => Math.min(W - 1, Math.floor((x * W) / gridW)))));
      node('Gather', [t, `${p}.cols`], [`${p}.aligned`], { axis: 3 });
      t = `${p}.aligned`;
    }
    parts.push(t);
    concatOrder.push(...kept.map((s) => s.j));
  });
  node('Concat', parts, ['partscan/emb.grouped'], { axis: 1 });
  let emb = 'partscan/emb.grouped';
  if (concatOrder.some((j, i) => j !== i)) {
    // channelIndices not in layer order: restore the model's channel order.
    const position = new Array<number>(d);
    concatOrder.forEach((j, i) => (position[j] = i));
    add(int64Spec('partscan/emb.order', [d], position));
    node('Gather', [emb, 'partscan/emb.order'], ['partscan/emb'], { axis: 1 });
    emb = 'partscan/emb';
  }

  // Mahalanobis head: [N, d, gh, gw] → [P, N, d]; (x − μ)ᵀ Σ⁻¹ (x − μ) per position.
  const sink: GraphSink = {
    float: (name, dims, data) => add(floatSpec(name, dims, data)),
    int64: (name, dims, values) => add(int64Spec(name, dims, values)),
    node: (op, inputs, outputs, attrs) => node(op, inputs, outputs, attrs),
    opset: defaultOpset,
  };
  const mean32 = Float32Array.from(model.mean);
  add(int64Spec('partscan/shape.NdP', [3], [0, d, P]));
  add(floatSpec('partscan/mean', [P, 1, d], mean32));
  add(floatSpec('partscan/zero', [], Float32Array.of(0)));
  add(int64Spec('partscan/shape.grid', [4], [0, 1, gridH, gridW]));
  node('Reshape', [emb, 'partscan/shape.NdP'], ['partscan/emb.NdP']);
  node('Transpose', ['partscan/emb.NdP'], ['partscan/emb.PNd'], { perm: [2, 0, 1] });
  node('Sub', ['partscan/emb.PNd', 'partscan/mean'], ['partscan/diff']);
  const inverseInputs = mahalanobisHead(model, inverseForm, sink, add, 'partscan/diff', 'partscan/d2');
  node('Max', ['partscan/d2', 'partscan/zero'], ['partscan/d2.pos']);
  node('Sqrt', ['partscan/d2.pos'], ['partscan/dist.PN']);
  node('Transpose', ['partscan/dist.PN'], ['partscan/dist.NP'], { perm: [1, 0] });
  node('Reshape', ['partscan/dist.NP', 'partscan/shape.grid'], ['partscan/dist']);

  // Upsample to S×S and blur: the same nodes partscan's own scoring runs.
  upsampleBlurNodes(sink, 'partscan/dist', 'partscan/raw_map', { gridW, gridH }, S, header.postprocess.blurSigma, 'partscan/map');

  // Image score (normalised below with the image statistics): the maximum of the standardised map when
  // the model has a per-position standardisation (postprocess/standardize.ts), else of the raw map.
  if (model.standardization) {
    standardizedScoreNodes(sink, 'partscan/dist', 'partscan/raw_score', { gridW, gridH }, S, header.postprocess.blurSigma, model.standardization, 'partscan/std');
  } else {
    reduceMaxNodes(sink, 'partscan/raw_map', 'partscan/raw_score', 'partscan/max');
  }

  const t = header.thresholds;
  const normalized = t !== undefined && !raw && withMask;
  const outputs: OnnxTypes.IValueInfoProto[] = [
    tensorValueInfo('anomaly_map', FLOAT, ['N', 1, S, S]),
    tensorValueInfo('image_score', FLOAT, ['N']),
  ];
  if (t && withMask) {
    normalizeNodes('partscan/raw_map', normalized ? 'anomaly_map' : 'partscan/norm_map', { threshold: t.pixel, ...t.pixelStats }, 'partscan/norm.pixel', add, node);
    if (normalized) normalizeNodes('partscan/raw_score', 'image_score', { threshold: t.image, ...t.imageStats }, 'partscan/norm.image', add, node);
    add(floatSpec('partscan/mask.cut', [], Float32Array.of(0.5)));
    node('Greater', [normalized ? 'anomaly_map' : 'partscan/norm_map', 'partscan/mask.cut'], ['partscan/mask.bool']);
    let mask = 'partscan/mask.bool';
    if (model.roi) {
      add(boolSpec('partscan/roi', [1, 1, S, S], model.roi));
      node('And', [mask, 'partscan/roi'], ['partscan/mask.roi']);
      mask = 'partscan/mask.roi';
    }
    node('Cast', [mask], ['pred_mask'], { to: UINT8 });
    outputs.push(tensorValueInfo('pred_mask', UINT8, ['N', 1, S, S]));
  }
  if (!normalized) {
    node('Identity', ['partscan/raw_map'], ['anomaly_map']);
    node('Identity', ['partscan/raw_score'], ['image_score']);
  }

  return { nodes, specs, outputs, opsetImport, bbModel, bbGraph, S, normalized, inverseInputs };
}

/**
 * Squared distances `out` [P, N] from Δ `diff` [P, N, d], with the inverse covariances in the given
 * form; returns the graph inputs that form needs (none for 'dense').
 */
function mahalanobisHead(
  model: ScoringGraphModel,
  form: InverseCovarianceForm,
  sink: GraphSink,
  add: (spec: InitializerSpec) => void,
  diff: string,
  out: string,
): OnnxTypes.IValueInfoProto[] {
  if (form === 'dense') {
    // One dense MatMul, as the statistics kernels computed it before the stripes (export files keep it).
    add(inverseSpec('partscan/inv_cov', model));
    sink.int64('partscan/axis2', [1], [2]);
    sink.node('MatMul', [diff, 'partscan/inv_cov'], ['partscan/diff.inv']);
    sink.node('Mul', ['partscan/diff.inv', diff], ['partscan/d2.terms']);
    sink.node('ReduceSum', ['partscan/d2.terms', 'partscan/axis2'], [out], { keepdims: 0 });
    return [];
  }
  const names = inverseStripeInputs(model);
  stripedMahalanobisNodes(sink, diff, out, model.inverse.stripes, names, 'partscan/mahalanobis');
  return model.inverse.stripes.map((s, a) => tensorValueInfo(names[a]!, FLOAT, [model.positions, s.r1, s.r1 - s.r0]));
}

/**
 * Largest dense inverse covariances plus backbone for which {@link inlineScoringGraph} builds one graph.
 * The stripes are graph inputs, so no protobuf limit applies any more; beyond this size (d=550 at
 * 224 px: 3.8 GB dense) batches are dominated by the Mahalanobis GEMMs anyway, and the session-by-session
 * path bounds their intermediates by position chunks instead of holding [P, N, d] tensors whole.
 */
export const INLINE_SCORING_GRAPH_BYTES = 1.5 * 1024 ** 3;

/**
 * The model's whole scoring path — backbone → embedding → Mahalanobis → upsample + blur, raw outputs
 * `anomaly_map` [N,1,S,S] and `image_score` [N] — as one ONNX model in memory, for in-process scoring
 * with a single ONNX Runtime session (no JavaScript gather between sessions, no hand-off of feature
 * maps: ~4 ms/image less at d=100). The inverse covariances are not in it: they are graph inputs
 * ({@link inverseStripeInputs}), fed from the model's stripes at every run; `inverseForm` 'dense' puts
 * them in as one dense [P, d, d] initializer instead (the reference path that tests compare with).
 * Undefined for tiled models and beyond {@link INLINE_SCORING_GRAPH_BYTES}.
 */
export async function inlineScoringGraph(model: ScoringGraphModel, inverseForm: InverseCovarianceForm = 'stripe-inputs'): Promise<Uint8Array | undefined> {
  if (model.header.tiling) return undefined;
  const backbone = await model.getBackbone();
  if (model.positions * model.dim * model.dim * 4 + backbone.onnx.length > INLINE_SCORING_GRAPH_BYTES) return undefined;
  const g = await buildPadimGraph(model, true, false, inverseForm);
  const raw = g.specs.filter((s): s is RawTensor => s.chunks !== undefined);
  const typed = g.specs.filter((s) => s.chunks === undefined).map((s) => s.proto);
  return encodeModelWithRawTensors(padimModelProto(g, typed, { name: 'partscan_padim_scoring' }), raw);
}

/** An initializer with its data inline (rawData). */
export function inlineInitializer(spec: InitializerSpec): OnnxTypes.ITensorProto {
  if (!spec.chunks) return spec.proto;
  const chunks = [...spec.chunks()];
  return { ...spec.proto, rawData: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
}

/** The ModelProto around a built graph and its initializers (inline or external). */
export function padimModelProto(
  g: PadimGraph,
  initializers: OnnxTypes.ITensorProto[],
  about: { name: string; graphDoc?: string; doc?: string; metadataProps?: OnnxTypes.IStringStringEntryProto[] },
): OnnxTypes.ModelProto {
  return modelProto({
    irVersion: Math.max(EXPORT_IR_VERSION, Number(g.bbModel.irVersion ?? 0)),
    producerVersion: PARTSCAN_VERSION,
    ...(about.doc ? { docString: about.doc } : {}),
    opsetImport: g.opsetImport,
    ...(about.metadataProps ? { metadataProps: about.metadataProps } : {}),
    graph: {
      name: about.name,
      node: g.nodes,
      initializer: initializers,
      input: [tensorValueInfo('input', FLOAT, ['N', 3, g.S, g.S]), ...g.inverseInputs],
      output: g.outputs,
      valueInfo: g.bbGraph.valueInfo ?? [],
      ...(about.graphDoc ? { docString: about.graphDoc } : {}),
    },
    functions: g.bbModel.functions ?? [],
  });
}
