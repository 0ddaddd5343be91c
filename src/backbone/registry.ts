/**
 * The backbone registry: which feature extractors partscan knows, where their weights come from, and
 * how a user's choice (`--backbone`, `--weights`, `--layers`) becomes an ONNX graph plus the identity
 * recorded in model files. See models/README.md for the user-facing description.
 */
import { promises as fs, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PartscanError } from '../errors.js';
import { parseOptions } from '../options/parse.js';
import { backboneSpecSchema } from '../options/schemas.js';
import { readRegularFile } from '../util/regular-file.js';
import { OrtBackbone } from './ort-backbone.js';
import { randomResNetWeights } from './random-weights.js';
import {
  buildResNetOnnx,
  checkResNetShapes,
  checkResNetWeights,
  detectResNetArch,
  RESNET_BUILDER_VERSION,
  resnetLayerInfo,
  type ResNetArch,
} from './resnet.js';
import { SafeTensors } from './safetensors.js';
import type { BackboneIdentity } from './types.js';
import {
  cachedWeightsPath,
  downloadWeights,
  hasCachedWeights,
  readCachedOnnx,
  resolveCacheDir,
  verifyCachedWeights,
  writeCachedOnnx,
} from './weights-cache.js';
import {
  exposeIntermediateOutputs,
  inspectOnnxOutputs,
  onnxImageInputName,
  suggestFeatureLayers,
} from './onnx-surgery.js';

/** Fields every registry entry has. */
interface RegistryEntryBase {
  /** One-line description for `--help` and docs. */
  description: string;
  /** Download URL (safetensors with torchvision key names), for 'download' entries. */
  url?: string;
  /** File name in the cache's weights/ folder ('download'), or in the package's models/ folder ('bundled'). */
  fileName?: string;
  /** Exact size in bytes when known; `undefined` = unknown, not checked. */
  bytes?: number;
  /** Approximate size, for messages ("about 102 MB"). */
  approxBytes?: number;
  /**
   * sha256 of the published file (the Git LFS object id shown by the hub), checked on download from
   * the registry URL. Not applied to a `weightsUrl` override, which may serve other bytes.
   * For 'bundled' entries: of the shipped file, checked on every load.
   */
  sha256?: string;
  /** Licence of the weights. */
  license: string;
  /** Embedding size d used when `channels` is not given (default: {@link DEFAULT_CHANNELS}). */
  defaultChannels?: number;
  /** Network input side used when `imageSize` is not given (default: the preprocessing default). */
  defaultImageSize?: number;
}

/** A ResNet whose weights are downloaded ('download') or generated from a seed ('random'). */
export interface ResNetRegistryEntry extends RegistryEntryBase {
  /** Architecture the graph is built for. */
  arch: ResNetArch;
  /** 'download': published ImageNet weights fetched once into the cache; 'random': generated from a seed, no download. */
  kind: 'download' | 'random';
}

/** An ONNX graph shipped in the package's models/ folder: no download, verified by sha256 on every load. */
export interface BundledRegistryEntry extends RegistryEntryBase {
  /** None: the graph is not built from an architecture. */
  arch?: undefined;
  /** Shipped in the package. */
  kind: 'bundled';
  fileName: string;
  sha256: string;
  /** The feature tensors used by default (strides 4/8/16). */
  layers: string[];
}

/** A registry entry. */
export type BackboneRegistryEntry = ResNetRegistryEntry | BundledRegistryEntry;

/**
 * Known backbones: the table is data, models/backbones.json (shipped in the package), read once here.
 * The ImageNet weights are torchvision's original (IMAGENET1K_V1) checkpoints as republished by timm
 * on the Hugging Face hub in safetensors form, with torchvision key names. The bundled MobileNetV2's
 * default layers are the last block outputs at strides 4, 8 and 16 (56/28/14 at 224 px): all 152
 * channels by default.
 */
export const BACKBONES: Record<string, BackboneRegistryEntry> = readBackboneTable();

/**
 * The table file, read from the package's models/ folder — two levels up from this file both in the
 * sources (src/backbone/) and compiled (dist/backbone/) — so no JSON import crosses tsc's rootDir.
 */
function readBackboneTable(): Record<string, BackboneRegistryEntry> {
  const file = fileURLToPath(new URL('../../models/backbones.json', import.meta.url));
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, BackboneRegistryEntry>;
  } catch (e) {
    // No code of its own: without the table no backbone name resolves.
    throw new PartscanError('BACKBONE_UNKNOWN', `Cannot read the backbone table ${file}: ${(e as Error).message}`, {
      file,
      cause: e,
      remedy: 'reinstall partscan: models/backbones.json ships with the package',
    });
  }
}

/** The backbone used when none is given. */
export const DEFAULT_BACKBONE = 'resnet50';

/**
 * How to obtain a backbone. Options that take a backbone also take its name alone: `'mobilenetv2-int8'`
 * is `{ name: 'mobilenetv2-int8' }`.
 */
export interface BackboneSpec {
  /** Registry name or path to an .onnx file; default 'resnet50'. */
  name?: string;
  /** The same as `name` (its earlier spelling; give one of the two). */
  backbone?: string;
  /** Local safetensors weights for a registry ResNet (offline use; no download). */
  weights?: string;
  /** Feature tensors to expose, for an .onnx backbone (required there); for a registry ResNet, a subset of layer1..layer3. */
  layers?: string[];
  /** Seed of 'resnet50-random' (default 0); ignored by other backbones. */
  seed?: number;
  /** Cache directory (default $PARTSCAN_CACHE_DIR, else ~/.cache/partscan). */
  cacheDir?: string;
  /** Download URL override (mirrors, tests). */
  weightsUrl?: string;
  /** Download progress callback; without it a progress bar is drawn when stderr is a terminal. */
  onProgress?: (received: number, total: number | undefined) => void;
  /** Never download: fail if the weights are not cached. */
  offline?: boolean;
}

/** A backbone graph ready to run, and what identifies it. */
export interface ResolvedBackbone {
  /** ONNX graph whose outputs include `identity.layers`. */
  onnx: Uint8Array;
  /** Identity recorded in model files. */
  identity: BackboneIdentity;
  /** Name of the image input (set for .onnx backbones; the ResNets use 'input'). */
  inputName?: string;
}

/** Input side used to measure strides of an .onnx backbone. */
const PROBE_SIZE = 224;

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Whether a backbone spec names an .onnx file (relative or absolute) rather than a registry backbone. */
export function isOnnxPath(backbone: string): boolean {
  return backbone.toLowerCase().endsWith('.onnx');
}

/**
 * A backbone option as a spec: a name (registry name or .onnx path) becomes `{ name }`; a spec is
 * checked (unknown keys, `name` and `backbone` naming two different backbones) and returned.
 * @throws PartscanError 'OPTIONS'.
 */
function backboneSpec(spec: BackboneSpec | string = {}): BackboneSpec {
  if (typeof spec === 'string') return { name: spec };
  parseOptions(backboneSpecSchema, spec, 'backbone');
  if (spec.name !== undefined && spec.backbone !== undefined && spec.name !== spec.backbone) {
    throw new PartscanError('OPTIONS', `Invalid backbone option: name "${spec.name}" and backbone "${spec.backbone}" name two different backbones.`, {
      remedy: 'give the backbone once, as name',
    });
  }
  return spec;
}

/** The backbone a spec names: `name` (or `backbone`), else {@link DEFAULT_BACKBONE}. */
function backboneName(spec: BackboneSpec | string = {}): string {
  return typeof spec === 'string' ? spec : (spec.name ?? spec.backbone ?? DEFAULT_BACKBONE);
}

/**
 * Resolves a spec (or a backbone name) to an ONNX graph and identity, downloading and building (with
 * caching) as needed.
 */
export async function resolveBackbone(specOrName: BackboneSpec | string = {}): Promise<ResolvedBackbone> {
  const spec = backboneSpec(specOrName);
  const backbone = backboneName(spec);
  if (isOnnxPath(backbone)) return resolveOnnxFile(backbone, spec);
  const entry = BACKBONES[backbone];
  if (!entry) {
    throw new PartscanError('BACKBONE_UNKNOWN', `Unknown backbone "${backbone}".`, {
      remedy: `use one of ${Object.keys(BACKBONES).join(', ')}, or the path of an .onnx file (with --layers)`,
    });
  }
  if (entry.kind === 'bundled') return resolveBundled(backbone, entry, spec);
  const info = resnetLayerInfo(entry.arch);
  const layers = pickLayers(backbone, info.layers, spec.layers);
  const pick = <T>(values: T[]): T[] => layers.map((l) => values[info.layers.indexOf(l)]!);
  const cacheDir = resolveCacheDir(spec.cacheDir);

  if (entry.kind === 'random') {
    if (spec.weights !== undefined) {
      throw new PartscanError('OPTIONS', `Backbone ${backbone} generates its weights; --weights ${spec.weights} cannot be used with it.`, {
        file: spec.weights,
        remedy: `drop --weights, or use --backbone ${entry.arch} with that file`,
      });
    }
    const seed = spec.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new PartscanError('OPTIONS', `Seed ${seed} is not a non-negative integer.`, { remedy: 'pass --seed 0, 1, 2, ...' });
    }
    const key = `${backbone}-seed${seed}-builder${RESNET_BUILDER_VERSION}`;
    let onnx = await readCachedOnnx(cacheDir, key);
    if (!onnx) {
      onnx = buildResNetOnnx(entry.arch, randomResNetWeights(entry.arch, seed), { source: `${backbone} (seed ${seed})` });
      await writeCachedOnnx(cacheDir, key, onnx, { backbone, seed, builderVersion: RESNET_BUILDER_VERSION });
    }
    return {
      onnx,
      identity: { name: backbone, sha256: sha256Hex(onnx), layers, strides: pick(info.strides), channels: pick(info.channels), seed },
    };
  }

  let weights: SafeTensors;
  let weightsFile: string;
  let sha256: string;
  if (spec.weights !== undefined) {
    weightsFile = path.resolve(spec.weights);
    weights = await SafeTensors.open(weightsFile);
    sha256 = weights.sha256();
  } else {
    weightsFile = await ensureDownloaded(backbone, entry, cacheDir, spec);
    // Read once: hash the bytes against the download record before trusting their header.
    const bytes = await readWeightsBytes(weightsFile);
    sha256 = sha256Hex(bytes);
    await verifyCachedWeights(weightsFile, { sha256, bytes: bytes.byteLength });
    weights = SafeTensors.fromBytes(bytes, weightsFile);
  }
  const detected = detectResNetArch(weights);
  if (detected !== undefined && detected !== entry.arch) {
    // checkResNetWeights would say the same; this message also suggests the right backbone name.
    throw new PartscanError('BACKBONE_MISMATCH', `Weights ${weightsFile} are a ${detected}, but backbone ${backbone} (${entry.arch}) was requested.`, {
      file: weightsFile,
      remedy: `use --backbone ${Object.keys(BACKBONES).find((k) => BACKBONES[k]!.arch === detected && BACKBONES[k]!.kind === 'download') ?? detected}, or ${entry.arch} weights`,
    });
  }
  checkResNetWeights(entry.arch, weights, weightsFile);
  const key = `${entry.arch}-w${sha256}-builder${RESNET_BUILDER_VERSION}`;
  let onnx = await readCachedOnnx(cacheDir, key);
  if (!onnx) {
    onnx = buildResNetOnnx(entry.arch, weights, { source: weightsFile });
    await writeCachedOnnx(cacheDir, key, onnx, { arch: entry.arch, weightsSha256: sha256, builderVersion: RESNET_BUILDER_VERSION });
  }
  return { onnx, identity: { name: backbone, sha256, layers, strides: pick(info.strides), channels: pick(info.channels) } };
}

function pickLayers(backbone: string, available: string[], requested: string[] | undefined): string[] {
  if (requested === undefined || requested.length === 0) return [...available];
  const unknown = requested.filter((l) => !available.includes(l));
  if (unknown.length > 0 || new Set(requested).size !== requested.length) {
    throw new PartscanError('OPTIONS', `Layers [${requested.join(', ')}] are not valid for backbone ${backbone}: use distinct names among ${available.join(', ')}.`, {
      remedy: `pass --layers with a subset of ${available.join(',')} (default: all three)`,
    });
  }
  // Keep network order: strides must increase for the embedding to upsample correctly.
  return available.filter((l) => requested.includes(l));
}

async function readWeightsBytes(file: string): Promise<Uint8Array> {
  try {
    const buf = await fs.readFile(file);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new PartscanError('WEIGHTS_FORMAT', `Cannot read cached weights ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}).`, {
      file,
      remedy: 'check the cache directory permissions, or delete the file to re-download it',
      cause: e,
    });
  }
}

/** Path of the registry weights in the cache, downloading them first when absent (unless offline). */
async function ensureDownloaded(name: string, entry: ResNetRegistryEntry, cacheDir: string, spec: BackboneSpec): Promise<string> {
  const file = cachedWeightsPath(cacheDir, entry.fileName!);
  const exists = await fs.stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
  if (exists) return file;
  const url = spec.weightsUrl ?? entry.url!;
  if (spec.offline) {
    throw new PartscanError('WEIGHTS_DOWNLOAD', `The ${name} weights are not in the cache (${file}) and downloads are disabled (offline).`, {
      file,
      remedy: weightsUnavailableRemedy(name, url),
    });
  }
  const official = spec.weightsUrl === undefined;
  await downloadWeights({
    url,
    file,
    label: `${name} weights${entry.approxBytes ? ` (about ${Math.round(entry.approxBytes / 1e6)} MB)` : ''}`,
    ...(official && entry.bytes !== undefined ? { expectedBytes: entry.bytes } : {}),
    ...(official && entry.sha256 !== undefined ? { expectedSha256: entry.sha256 } : {}),
    ...(spec.onProgress ? { onProgress: spec.onProgress } : {}),
    // Header-only check: wrong or truncated files are refused before they enter the cache.
    validate: (_tmp, header) =>
      checkResNetShapes(
        entry.arch,
        new Map([...header.entries].map(([k, e]) => [k, e.shape])),
        file,
        new Map([...header.entries].map(([k, e]) => [k, e.dtype])),
      ),
  }).catch((e: unknown) => {
    // No network (or a refused download): one error with every way out, never a silent fallback to other features.
    if (!(e instanceof PartscanError && e.code === 'WEIGHTS_DOWNLOAD')) throw e;
    throw new PartscanError('WEIGHTS_DOWNLOAD', `The ${name} weights are not cached (${file}) and could not be downloaded: ${e.message.split(' — ')[0]}`, {
      file,
      remedy: weightsUnavailableRemedy(name, url),
      cause: e,
    });
  });
  return file;
}

/** The ways out when a registry backbone's weights are neither cached nor downloadable. */
function weightsUnavailableRemedy(name: string, url: string): string {
  const bundled = Object.keys(BACKBONES).find((k) => BACKBONES[k]!.kind === 'bundled');
  return (
    `pass --weights <file.safetensors> (the ${name} weights, e.g. ${url} downloaded elsewhere), run once with network access to cache them` +
    (bundled ? `, or use --backbone ${bundled}, which ships with partscan and needs no download (offline sites)` : '')
  );
}

async function resolveOnnxFile(file: string, spec: BackboneSpec): Promise<ResolvedBackbone> {
  const source = path.resolve(file);
  if (spec.weights !== undefined) {
    throw new PartscanError('OPTIONS', `--weights ${spec.weights} applies to the registry ResNets, not to the ONNX backbone ${file}.`, {
      file: spec.weights,
      remedy: 'drop --weights: an .onnx file carries its own weights',
    });
  }
  let model: Uint8Array;
  try {
    const buf = await readRegularFile(source, (kind) => new PartscanError('ONNX_FORMAT', `ONNX backbone ${source} is ${kind}, not a file.`, { file: source, remedy: 'check the path given with --backbone' }));
    model = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    if (e instanceof PartscanError) throw e;
    throw new PartscanError('ONNX_FORMAT', `Cannot read ONNX backbone ${source} (${(e as NodeJS.ErrnoException).code ?? String(e)}).`, {
      file: source,
      remedy: 'check the path given with --backbone',
      cause: e,
    });
  }
  const layers = spec.layers ?? [];
  if (layers.length === 0) {
    let hint = '';
    try {
      const suggested = await suggestFeatureLayers(model, PROBE_SIZE, { source });
      hint = `; candidates at strides ${suggested.map((s) => s.stride).join('/')}: ${suggested.map((s) => s.name).join(',')}`;
    } catch {
      // Suggestions are a convenience; the error below stands without them.
    }
    throw new PartscanError('OPTIONS', `The ONNX backbone ${source} needs the names of the feature tensors to use (--layers)${hint}.`, {
      file: source,
      remedy: 'pass --layers name1,name2,... (list candidates with `partscan onnx-layers`)',
    });
  }
  const exposed = await exposeFeatureTensors(model, layers, source);
  return {
    onnx: exposed.onnx,
    inputName: exposed.inputName,
    identity: { name: `onnx:${path.basename(source)}`, sha256: sha256Hex(model), layers: [...layers], strides: exposed.strides, channels: exposed.channels },
  };
}

/**
 * Makes `layers` graph outputs (dequantized when int8) and measures their strides and channels at
 * {@link PROBE_SIZE} px: a tensor of side H has stride 224 / H (4, 8, 16... for the usual CNNs).
 */
async function exposeFeatureTensors(
  model: Uint8Array,
  layers: string[],
  source: string,
): Promise<{ onnx: Uint8Array; inputName: string; strides: number[]; channels: number[] }> {
  const onnx = exposeIntermediateOutputs(model, layers, { source });
  const probed = await inspectOnnxOutputs(model, layers, [1, 3, PROBE_SIZE, PROBE_SIZE], { source });
  for (const p of probed) {
    if (p.dims.length !== 4) {
      throw new PartscanError('OPTIONS', `Tensor "${p.name}" of ${source} has dims [${p.dims.join(', ')}]; a feature layer must be a 4-D [N, C, H, W] map.`, {
        file: source,
        remedy: 'choose convolutional activations as --layers',
      });
    }
  }
  return {
    onnx,
    inputName: onnxImageInputName(onnx, { source }),
    strides: probed.map((p) => PROBE_SIZE / p.dims[2]!),
    channels: probed.map((p) => p.dims[1]!),
  };
}

/**
 * Where the package's bundled ONNX files live: `models/` at the package root, two levels up from this
 * file both in the sources (src/backbone/) and compiled (dist/backbone/).
 */
export function bundledModelPath(fileName: string): string {
  return fileURLToPath(new URL(`../../models/${fileName}`, import.meta.url));
}

/** A graph shipped in the package: read, verified against the registry's sha256, features exposed. */
async function resolveBundled(name: string, entry: BundledRegistryEntry, spec: BackboneSpec): Promise<ResolvedBackbone> {
  if (spec.weights !== undefined) {
    throw new PartscanError('OPTIONS', `Backbone ${name} ships with the package; --weights ${spec.weights} cannot be used with it.`, {
      file: spec.weights,
      remedy: 'drop --weights, or use --backbone resnet50 with that file',
    });
  }
  const file = bundledModelPath(entry.fileName);
  let model: Uint8Array;
  try {
    const buf = await fs.readFile(file);
    model = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new PartscanError('ONNX_FORMAT', `The bundled backbone ${name} is missing from the package (${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}).`, {
      file,
      remedy: 'reinstall partscan (the file is part of the npm package), or choose another --backbone',
      cause: e,
    });
  }
  const sha256 = sha256Hex(model);
  if (sha256 !== entry.sha256) {
    throw new PartscanError('WEIGHTS_CHECKSUM', `The bundled backbone ${name} (${file}) has sha256 ${sha256}, expected ${entry.sha256}: the file was changed or damaged.`, {
      file,
      remedy: 'reinstall partscan to restore the file',
    });
  }
  const layers = pickLayers(name, entry.layers, spec.layers);
  const exposed = await exposeFeatureTensors(model, layers, file);
  return { onnx: exposed.onnx, inputName: exposed.inputName, identity: { name, sha256, layers, strides: exposed.strides, channels: exposed.channels } };
}

/** Defaults a backbone brings for options the user left out (embedding size d, input side). */
export function backboneDefaults(name: string): { channels?: number; imageSize?: number } {
  const entry = BACKBONES[name];
  return {
    ...(entry?.defaultChannels !== undefined ? { channels: entry.defaultChannels } : {}),
    ...(entry?.defaultImageSize !== undefined ? { imageSize: entry.defaultImageSize } : {}),
  };
}

/** Resolves the spec (or a backbone name) and opens an ONNX Runtime session on it. */
export async function loadBackbone(spec: BackboneSpec | string = {}, opts: { intraOpNumThreads?: number } = {}): Promise<OrtBackbone> {
  const resolved = await resolveBackbone(spec);
  return OrtBackbone.create(resolved.onnx, resolved.identity, {
    ...(opts.intraOpNumThreads !== undefined ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
    ...(resolved.inputName !== undefined ? { inputName: resolved.inputName } : {}),
  });
}

/**
 * True when using the backbone needs no download: its weights file (and sidecar) is in the cache, or
 * it is generated ('resnet50-random') or shipped in the package ('mobilenetv2-int8'). False for unknown names. Contents are verified on use, not here.
 */
export function isWeightsCached(name: string, cacheDir?: string): boolean {
  const entry = BACKBONES[name];
  if (!entry) return false;
  if (entry.kind === 'random' || entry.kind === 'bundled') return true;
  return hasCachedWeights(cachedWeightsPath(resolveCacheDir(cacheDir), entry.fileName!));
}
