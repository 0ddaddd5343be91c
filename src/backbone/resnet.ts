/**
 * Builds ONNX graphs of torchvision ResNets, stem through layer3 (the PaDiM feature layers), from a
 * torchvision-layout state dict. BatchNorm is folded into the preceding convolution, so the graph is
 * only Conv / Relu / MaxPool / Add: fewer nodes, faster, and exactly what ORT would fuse anyway.
 *
 * torchvision v1.5 layout: in a bottleneck the stride sits on the 3×3 conv; the first block of a
 * layer has a 1×1 strided `downsample` projection when the stride or channel count changes.
 */
import { PartscanError } from '../errors.js';
import { encodeModel, floatInitializer, makeNode, ONNX_IR_VERSION, ONNX_OPSET, OnnxDataType, tensorValueInfo } from '../onnx/graph.js';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { SafeTensors } from './safetensors.js';

/** The ResNet variants partscan can build. */
export type ResNetArch = 'resnet50' | 'wide_resnet50_2' | 'resnet18';

/** All buildable architectures. */
export const RESNET_ARCHS: readonly ResNetArch[] = ['resnet50', 'wide_resnet50_2', 'resnet18'];

/**
 * Version of the graph this builder emits. Part of the built-ONNX cache key: bump it whenever the
 * emitted graph changes, so stale cached graphs are rebuilt.
 */
export const RESNET_BUILDER_VERSION = 1;

/** BatchNorm epsilon of torchvision's ResNets. */
export const BATCHNORM_EPS = 1e-5;

/** ONNX opset the builder targets. */
export const RESNET_OPSET = ONNX_OPSET;

/** ONNX IR version the builder writes. */
export const RESNET_IR_VERSION = ONNX_IR_VERSION;

/** Output layers, their strides and channel counts. */
export interface ResNetLayerInfo {
  /** Graph output names, in order. */
  layers: string[];
  /** Stride of each output relative to the input. */
  strides: number[];
  /** Channels of each output. */
  channels: number[];
}

interface ArchSpec {
  block: 'bottleneck' | 'basic';
  /** Blocks in layer1..layer3. */
  blocks: [number, number, number];
  /** Inner width multiplier of bottlenecks (width_per_group / 64). */
  widthFactor: number;
}

const ARCH_SPECS: Record<ResNetArch, ArchSpec> = {
  resnet50: { block: 'bottleneck', blocks: [3, 4, 6], widthFactor: 1 },
  wide_resnet50_2: { block: 'bottleneck', blocks: [3, 4, 6], widthFactor: 2 },
  resnet18: { block: 'basic', blocks: [2, 2, 2], widthFactor: 1 },
};

const LAYER_PLANES = [64, 128, 256] as const;
const LAYER_STRIDES = [1, 2, 2] as const;
const LAYER_NAMES = ['layer1', 'layer2', 'layer3'] as const;

function archSpec(arch: string): ArchSpec {
  const spec = (ARCH_SPECS as Record<string, ArchSpec | undefined>)[arch];
  if (!spec) {
    throw new PartscanError('BACKBONE_UNKNOWN', `Unknown ResNet architecture "${arch}".`, {
      remedy: `use one of ${RESNET_ARCHS.join(', ')}`,
    });
  }
  return spec;
}

/** Layer names, strides (4, 8, 16) and channel counts of an architecture's three outputs. */
export function resnetLayerInfo(arch: ResNetArch): ResNetLayerInfo {
  const spec = archSpec(arch);
  const expansion = spec.block === 'bottleneck' ? 4 : 1;
  return {
    layers: [...LAYER_NAMES],
    strides: [4, 8, 16],
    channels: LAYER_PLANES.map((p) => p * expansion),
  };
}

/** One convolution followed by BatchNorm, named by their state-dict prefixes. */
interface ConvUnit {
  /** State-dict key of the conv weight, e.g. 'layer1.0.conv2.weight'. */
  conv: string;
  /** State-dict prefix of the BatchNorm, e.g. 'layer1.0.bn2'. */
  bn: string;
  inC: number;
  outC: number;
  k: number;
  stride: number;
}

interface BlockPlan {
  prefix: string;
  /** Main path, in order; ReLU after each but the last. */
  convs: ConvUnit[];
  downsample?: ConvUnit;
}

interface ResNetPlan {
  stem: ConvUnit;
  layers: { name: string; blocks: BlockPlan[] }[];
}

function unit(conv: string, bn: string, inC: number, outC: number, k: number, stride: number): ConvUnit {
  return { conv: `${conv}.weight`, bn, inC, outC, k, stride };
}

function resnetPlan(arch: ResNetArch): ResNetPlan {
  const spec = archSpec(arch);
  const stem = unit('conv1', 'bn1', 3, 64, 7, 2);
  const layers: ResNetPlan['layers'] = [];
  let inplanes = 64;
  for (let li = 0; li < 3; li++) {
    const planes = LAYER_PLANES[li]!;
    const blocks: BlockPlan[] = [];
    for (let bi = 0; bi < spec.blocks[li]!; bi++) {
      const prefix = `${LAYER_NAMES[li]}.${bi}`;
      const stride = bi === 0 ? LAYER_STRIDES[li]! : 1;
      let convs: ConvUnit[];
      let outC: number;
      if (spec.block === 'bottleneck') {
        const width = planes * spec.widthFactor;
        outC = planes * 4;
        convs = [
          unit(`${prefix}.conv1`, `${prefix}.bn1`, inplanes, width, 1, 1),
          unit(`${prefix}.conv2`, `${prefix}.bn2`, width, width, 3, stride),
          unit(`${prefix}.conv3`, `${prefix}.bn3`, width, outC, 1, 1),
        ];
      } else {
        outC = planes;
        convs = [
          unit(`${prefix}.conv1`, `${prefix}.bn1`, inplanes, planes, 3, stride),
          unit(`${prefix}.conv2`, `${prefix}.bn2`, planes, planes, 3, 1),
        ];
      }
      const block: BlockPlan = { prefix, convs };
      if (stride !== 1 || inplanes !== outC) {
        block.downsample = unit(`${prefix}.downsample.0`, `${prefix}.downsample.1`, inplanes, outC, 1, stride);
      }
      blocks.push(block);
      inplanes = outC;
    }
    layers.push({ name: LAYER_NAMES[li]!, blocks });
  }
  return { stem, layers };
}

function allUnits(plan: ResNetPlan): ConvUnit[] {
  const out = [plan.stem];
  for (const layer of plan.layers) {
    for (const b of layer.blocks) {
      out.push(...b.convs);
      if (b.downsample) out.push(b.downsample);
    }
  }
  return out;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

const BN_PARAMS = ['weight', 'bias', 'running_mean', 'running_var'] as const;

/**
 * Every state-dict key the builder reads for `arch` (stem through layer3) with its expected shape,
 * in graph order. `num_batches_tracked`, layer4 and fc are not needed.
 */
export function expectedResNetShapes(arch: ResNetArch): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const u of allUnits(resnetPlan(arch))) {
    shapes.set(u.conv, [u.outC, u.inC, u.k, u.k]);
    for (const p of BN_PARAMS) shapes.set(`${u.bn}.${p}`, [u.outC]);
  }
  return shapes;
}

/** A named float tensor with its shape. */
export interface WeightTensor {
  /** Shape, e.g. [64, 3, 7, 7]. */
  shape: number[];
  /** Row-major values. */
  data: Float32Array;
}

/** Looks a state-dict key up; `undefined` when absent. Shapes cannot be checked, only element counts. */
export type WeightLookup = (name: string) => Float32Array | undefined;

/** Anything the builder can read weights from. */
export type ResNetWeights = SafeTensors | ReadonlyMap<string, WeightTensor> | WeightLookup;

function shapesOf(weights: ResNetWeights): Map<string, number[]> | undefined {
  if (weights instanceof SafeTensors) return new Map([...weights.entries].map(([k, e]) => [k, e.shape]));
  if (typeof weights === 'function') return undefined;
  return new Map([...weights].map(([k, t]) => [k, t.shape]));
}

/** Block structure read off state-dict key names and shapes. */
interface ResNetLayout {
  block: 'bottleneck' | 'basic';
  /** Output channels of layer1.0.conv1 (the bottleneck inner width). */
  width: number;
  /** Number of blocks found in layer1..layer4 (0 where the file stops earlier). */
  blocks: number[];
}

function readLayout(shapes: ReadonlyMap<string, number[]>): ResNetLayout | undefined {
  const stem = shapes.get('conv1.weight');
  const l1 = shapes.get('layer1.0.conv1.weight');
  if (!stem || !l1 || stem.join() !== '64,3,7,7') return undefined;
  const blocks = [0, 0, 0, 0];
  for (const key of shapes.keys()) {
    const m = /^layer([1-4])\.(\d+)\./.exec(key);
    if (m) blocks[Number(m[1]) - 1] = Math.max(blocks[Number(m[1]) - 1]!, Number(m[2]) + 1);
  }
  return { block: shapes.has('layer1.0.conv3.weight') ? 'bottleneck' : 'basic', width: l1[0]!, blocks };
}

function describeLayout(l: ResNetLayout): string {
  return `${l.block} blocks [${l.blocks.join(', ')}] per layer, layer1 inner width ${l.width}`;
}

/**
 * Which supported architecture a state dict is, from its key names and shapes (stem through layer3
 * are enough; layer4 is not required). `undefined` for anything else (resnet34, resnet101,
 * non-ResNet files...).
 */
export function detectResNetArch(shapes: ReadonlyMap<string, number[]> | SafeTensors): ResNetArch | undefined {
  const map = shapes instanceof SafeTensors ? shapesOf(shapes)! : shapes;
  const layout = readLayout(map);
  if (!layout) return undefined;
  for (const arch of RESNET_ARCHS) {
    const spec = ARCH_SPECS[arch];
    if (spec.block !== layout.block || layout.width !== 64 * spec.widthFactor) continue;
    if (spec.blocks.every((n, i) => layout.blocks[i] === n)) return arch;
  }
  return undefined;
}

function missingKey(key: string, source: string): PartscanError {
  return new PartscanError('WEIGHTS_MISSING_KEY', `Tensor "${key}" is missing from ${source}.`, {
    file: source,
    remedy: 'the file is not a torchvision-layout ResNet state dict for this architecture; check the file and the --backbone name',
  });
}

function wrongTensor(key: string, source: string, got: string, shape: number[]): PartscanError {
  return new PartscanError('WEIGHTS_FORMAT', `Tensor "${key}" in ${source} has ${got}, expected a float tensor of shape [${shape.join(', ')}].`, {
    file: source,
    remedy: 'the weights belong to a different architecture or were modified; use matching weights',
  });
}

/**
 * Checks a state dict's key names and shapes (e.g. a safetensors header, before any data is read)
 * against `arch`: every key the builder needs, with the right shape and a float dtype (when `dtypes`
 * is given), and not a different ResNet (a resnet101 has all of resnet50's keys but more blocks).
 * Throws 'BACKBONE_MISMATCH', 'WEIGHTS_MISSING_KEY' or 'WEIGHTS_FORMAT', naming the key and `source`.
 */
export function checkResNetShapes(
  arch: ResNetArch,
  shapes: ReadonlyMap<string, number[]>,
  source = '<weights>',
  dtypes?: ReadonlyMap<string, string>,
): void {
  const spec = archSpec(arch);
  const layout = readLayout(shapes);
  if (layout) {
    const detected = detectResNetArch(shapes);
    const extraBlocks = spec.blocks.some((n, i) => layout.blocks[i]! > n);
    if ((detected !== undefined && detected !== arch) || extraBlocks || layout.block !== spec.block) {
      throw new PartscanError(
        'BACKBONE_MISMATCH',
        `Weights ${source} do not fit ${arch}: the file has ${describeLayout(layout)}${detected ? ` (it looks like ${detected})` : ''}, ` +
          `${arch} needs ${spec.block} blocks [${spec.blocks.join(', ')}] with inner width ${64 * spec.widthFactor}.`,
        { file: source, remedy: detected ? `use --backbone ${detected}, or a ${arch} weights file` : `use a ${arch} weights file` },
      );
    }
  }
  if (!shapes.has('conv1.weight')) {
    // A common near miss: a state dict saved from a wrapper (DataParallel 'module.', Lightning 'model.').
    const prefixed = [...shapes.keys()].find((k) => k.endsWith('.conv1.weight') && !/(^|\.)layer\d/.test(k));
    if (prefixed) {
      const prefix = prefixed.slice(0, -'conv1.weight'.length);
      throw new PartscanError('WEIGHTS_MISSING_KEY', `Tensor "conv1.weight" is missing from ${source}, whose keys start with "${prefix}" (e.g. "${prefixed}").`, {
        file: source,
        remedy: `re-save the state dict without the "${prefix}" prefix (torchvision key names)`,
      });
    }
  }
  for (const [key, shape] of expectedResNetShapes(arch)) {
    const got = shapes.get(key);
    if (!got) throw missingKey(key, source);
    if (got.join() !== shape.join()) throw wrongTensor(key, source, `shape [${got.join(', ')}]`, shape);
    const dtype = dtypes?.get(key);
    if (dtype !== undefined && !FLOAT_DTYPES.has(dtype)) throw wrongTensor(key, source, `dtype ${dtype}`, shape);
  }
}

/**
 * Checks that `weights` fit `arch` (see {@link checkResNetShapes}); a bare lookup function has no
 * shapes, so its tensors are fetched and their element counts checked instead.
 */
export function checkResNetWeights(arch: ResNetArch, weights: ResNetWeights, source = sourceOf(weights)): void {
  if (typeof weights === 'function') {
    for (const [key, shape] of expectedResNetShapes(arch)) readParam(weights, key, shape, source);
    return;
  }
  const dtypes = weights instanceof SafeTensors ? new Map([...weights.entries].map(([k, e]) => [k, e.dtype])) : undefined;
  checkResNetShapes(arch, shapesOf(weights)!, source, dtypes);
}

function sourceOf(weights: ResNetWeights): string {
  return weights instanceof SafeTensors ? weights.source : '<weights>';
}

function readParam(weights: ResNetWeights, key: string, shape: number[], source: string): Float32Array {
  let data: Float32Array | undefined;
  if (weights instanceof SafeTensors) {
    if (!weights.has(key)) throw missingKey(key, source);
    const got = weights.shape(key);
    if (got.join() !== shape.join()) throw wrongTensor(key, source, `shape [${got.join(', ')}]`, shape);
    const dtype = weights.entry(key).dtype;
    if (!FLOAT_DTYPES.has(dtype)) throw wrongTensor(key, source, `dtype ${dtype}`, shape);
    data = weights.getFloat32(key);
  } else if (typeof weights === 'function') {
    data = weights(key);
    if (!data) throw missingKey(key, source);
  } else {
    const t = weights.get(key);
    if (!t) throw missingKey(key, source);
    if (t.shape.join() !== shape.join()) throw wrongTensor(key, source, `shape [${t.shape.join(', ')}]`, shape);
    data = t.data;
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw wrongTensor(key, source, `${data.length} values`, shape);
  return data;
}

/** A convolution with BatchNorm folded in. */
export interface FoldedConv {
  /** Scaled weights, same layout as the input weights. */
  weight: Float32Array;
  /** One bias per output channel. */
  bias: Float32Array;
}

/**
 * Folds an inference-mode BatchNorm into the convolution before it:
 * w' = w·γ/√(var+eps), b' = β − mean·γ/√(var+eps), computed in float64 and rounded once to float32.
 * `weight` is [outC, ...] row-major. Returns new arrays.
 */
export function foldBatchNorm(
  weight: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
  eps = BATCHNORM_EPS,
): FoldedConv {
  const outC = gamma.length;
  if (weight.length % outC !== 0 || beta.length !== outC || mean.length !== outC || variance.length !== outC) {
    throw new RangeError(`foldBatchNorm: ${weight.length} weights and BatchNorm sizes ${outC}/${beta.length}/${mean.length}/${variance.length} do not match`);
  }
  const perOut = weight.length / outC;
  const w = new Float32Array(weight.length);
  const b = new Float32Array(outC);
  for (let o = 0; o < outC; o++) {
    const scale = gamma[o]! / Math.sqrt(variance[o]! + eps);
    b[o] = beta[o]! - mean[o]! * scale;
    const base = o * perOut;
    for (let i = 0; i < perOut; i++) w[base + i] = weight[base + i]! * scale;
  }
  return { weight: w, bias: b };
}

/** Options of {@link buildResNetOnnx}. */
export interface BuildResNetOptions {
  /** Where the weights came from, for error messages (defaults to the SafeTensors file, or '<weights>'). */
  source?: string;
}

/**
 * Builds the ONNX graph (opset 17, IR 8) of `arch`'s stem, layer1, layer2 and layer3 with BatchNorm
 * folded in. Input `input` [N, 3, H, W] (dynamic N, H, W); outputs `layer1`, `layer2`, `layer3` at
 * strides 4, 8, 16. Deterministic: the same weights always give the same bytes.
 * Throws 'WEIGHTS_MISSING_KEY' / 'WEIGHTS_FORMAT' / 'BACKBONE_MISMATCH' for unusable weights.
 */
export function buildResNetOnnx(arch: ResNetArch, weights: ResNetWeights, opts: BuildResNetOptions = {}): Uint8Array {
  const source = opts.source ?? sourceOf(weights);
  checkResNetWeights(arch, weights, source);
  const plan = resnetPlan(arch);
  const info = resnetLayerInfo(arch);
  const nodes: OnnxTypes.INodeProto[] = [];
  const initializers: OnnxTypes.ITensorProto[] = [];

  const conv = (u: ConvUnit, input: string, output: string): void => {
    const w = readParam(weights, u.conv, [u.outC, u.inC, u.k, u.k], source);
    const [gamma, beta, mean, variance] = BN_PARAMS.map((p) => readParam(weights, `${u.bn}.${p}`, [u.outC], source)) as [
      Float32Array,
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    const folded = foldBatchNorm(w, gamma, beta, mean, variance);
    if (!folded.weight.every(Number.isFinite) || !folded.bias.every(Number.isFinite)) {
      throw new PartscanError('WEIGHTS_FORMAT', `Folding ${u.bn} into ${u.conv} from ${source} gives NaN or infinite values (negative running_var, or NaN/Inf weights).`, {
        file: source,
        remedy: 'the weights are corrupt; re-download or re-export them',
      });
    }
    const base = u.conv.replace(/\.weight$/, '');
    initializers.push(floatInitializer(`${base}.weight`, [u.outC, u.inC, u.k, u.k], folded.weight));
    initializers.push(floatInitializer(`${base}.bias`, [u.outC], folded.bias));
    const p = (u.k - 1) / 2;
    nodes.push(
      makeNode('Conv', [input, `${base}.weight`, `${base}.bias`], [output], base, {
        dilations: [1, 1],
        group: 1,
        kernel_shape: [u.k, u.k],
        pads: [p, p, p, p],
        strides: [u.stride, u.stride],
      }),
    );
  };

  conv(plan.stem, 'input', 'stem.conv');
  nodes.push(makeNode('Relu', ['stem.conv'], ['stem.relu'], 'stem.relu'));
  nodes.push(makeNode('MaxPool', ['stem.relu'], ['stem.pool'], 'stem.pool', { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] }));
  let x = 'stem.pool';
  for (const layer of plan.layers) {
    layer.blocks.forEach((block, bi) => {
      let y = x;
      block.convs.forEach((u, ci) => {
        const out = `${block.prefix}.conv${ci + 1}`;
        conv(u, y, out);
        y = out;
        if (ci < block.convs.length - 1) {
          nodes.push(makeNode('Relu', [out], [`${out}.relu`], `${out}.relu`));
          y = `${out}.relu`;
        }
      });
      let identity = x;
      if (block.downsample) {
        identity = `${block.prefix}.downsample`;
        conv(block.downsample, x, identity);
      }
      nodes.push(makeNode('Add', [y, identity], [`${block.prefix}.add`], `${block.prefix}.add`));
      const out = bi === layer.blocks.length - 1 ? layer.name : `${block.prefix}.out`;
      nodes.push(makeNode('Relu', [`${block.prefix}.add`], [out], `${block.prefix}.relu`));
      x = out;
    });
  }

  return encodeModel({
    graphName: `partscan_${arch}_stem_to_layer3`,
    nodes,
    initializers,
    inputs: [tensorValueInfo('input', OnnxDataType.FLOAT, ['N', 3, 'H', 'W'])],
    outputs: info.layers.map((name, i) =>
      tensorValueInfo(name, OnnxDataType.FLOAT, ['N', info.channels[i]!, `H_${name}`, `W_${name}`]),
    ),
    opset: RESNET_OPSET,
    irVersion: RESNET_IR_VERSION,
    producerVersion: `resnet-builder-${RESNET_BUILDER_VERSION}`,
    docString: `torchvision ${arch}, stem..layer3, BatchNorm folded (eps ${BATCHNORM_EPS})`,
    metadata: [
      ['partscan.arch', arch],
      ['partscan.builder_version', String(RESNET_BUILDER_VERSION)],
    ],
  });
}
