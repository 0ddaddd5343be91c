/**
 * What storing the inverse covariances in float16 (model format 1.5) does to accuracy, on bottle,
 * magnetic tile and the synthetic demo parts: each is fitted once with the bundled backbone at its
 * defaults, then evaluated with the inverse as stored (float16, per-position scales) and with the fit's
 * unrounded float32 inverse. Prints one JSON object: AUROCs / AUPRO both ways, the largest relative
 * change of an image score, and the file sizes (format 1.5 vs the float32 triangles of earlier formats).
 *
 *   npm run bench:float16 -- [--data DIR ...] [--backbone mobilenetv2-int8]
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fit } from '../src/model/fit.js';
import { Model } from '../src/model/model.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { loadDataset } from '../src/data/loaders.js';
import { generateSyntheticParts } from '../src/data/synthetic.js';
import { StatsKernels } from '../src/stats/ort-kernels.js';
import { GaussianAccumulator, fitGaussiansLowRank, packedSize } from '../src/stats/gaussian-stats.js';
import { StripedInverse } from '../src/stats/striped-inverse.js';
import { relaunchWithHugePages } from '../src/util/huge-pages.js';
import { cpuInfo } from './default-path.js';

const { values } = parseArgs({
  options: {
    data: { type: 'string', multiple: true },
    backbone: { type: 'string', default: 'mobilenetv2-int8' },
  },
});
await relaunchWithHugePages();

/** The fit's unrounded float32 inverse, recomputed from the statistics it keeps (scatter matrices or samples). */
async function unroundedInverse(m: Model): Promise<Float32Array> {
  const kernels = await StatsKernels.create(m.dim);
  try {
    const eps = m.header.gaussian.epsilon;
    if (m.m2) return await new GaussianAccumulator(m.positions, m.dim, { count: m.header.gaussian.images, mean: Float64Array.from(m.mean), m2: Float32Array.from(m.m2) }).inverseCovariances(kernels, eps);
    return (await fitGaussiansLowRank(m.samples!, m.header.gaussian.images, m.positions, m.dim, kernels, eps)).invCov;
  } finally {
    await kernels.dispose();
  }
}

async function one(name: string, root: string): Promise<Record<string, unknown>> {
  const ds = await loadDataset(root);
  const t0 = performance.now();
  const stored = await fit(ds, { backbone: { backbone: values.backbone! }, guards: false, contaminationCheck: false });
  const fitSeconds = (performance.now() - t0) / 1000;
  const float32 = Model.fromParts(
    { header: stored.header, channelIndices: stored.channelIndices, mean: stored.mean, inverse: StripedInverse.fromPacked(await unroundedInverse(stored), stored.positions, stored.dim) },
    await stored.getBackbone(),
  );
  const [a, b] = [await evaluateModel(float32, ds), await evaluateModel(stored, ds)];
  const files = ds.test.map((s) => s.path);
  const [ra, rb] = [await float32.score(files), await stored.score(files)];
  let worst = 0;
  ra.forEach((r, i) => (worst = Math.max(worst, Math.abs(rb[i]!.imageScore - r.imageScore) / Math.abs(r.imageScore))));
  const file = path.join(os.tmpdir(), `partscan-float16-${process.pid}.partscan`);
  await stored.save(file);
  const bytes = (await fs.stat(file)).size;
  await stored.save(file, { resumable: false });
  const compact = (await fs.stat(file)).size;
  await fs.rm(file, { force: true });
  // Earlier formats stored the same triangles in float32: twice the invCov bytes, no scales.
  const float32Bytes = bytes + stored.positions * packedSize(stored.dim) * 2 - stored.positions * 4;
  const pick = (e: typeof a) => ({ imageAuroc: +e.metrics.imageAuroc.toFixed(4), pixelAuroc: +e.metrics.pixelAuroc.toFixed(4), aupro: +e.metrics.aupro.toFixed(4) });
  const out = {
    name,
    images: { train: stored.header.gaussian.images, test: files.length },
    d: stored.dim,
    positions: stored.positions,
    fitSeconds: +fitSeconds.toFixed(1),
    float32: pick(a),
    float16: pick(b),
    aurocsEqualTo3Decimals: (['imageAuroc', 'pixelAuroc', 'aupro'] as const).every((k) => a.metrics[k].toFixed(3) === b.metrics[k].toFixed(3)),
    worstImageScoreRelativeChange: +worst.toExponential(2),
    fileMB: { float16: +(bytes / 2 ** 20).toFixed(1), float32EarlierFormats: +(float32Bytes / 2 ** 20).toFixed(1), compactFloat16: +(compact / 2 ** 20).toFixed(1) },
  };
  await Promise.all([stored.dispose(), float32.dispose()]);
  return out;
}

const shared = path.resolve(process.cwd(), '..', 'shared', 'datasets');
const roots: [string, string][] = values.data?.length
  ? values.data.map((d) => [path.basename(d), d])
  : [
      ['bottle', path.join(shared, 'mvtec_bottle')],
      ['magnetic_tile', path.join(shared, 'magnetic_tile')],
    ];
const results = [];
for (const [name, root] of roots) results.push(await one(name, root));
if (!values.data?.length) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-float16-demo-'));
  const { root } = await generateSyntheticParts(path.join(dir, 'data'));
  results.push(await one('demo (synthetic parts)', root));
  await fs.rm(dir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ cpu: cpuInfo(), loadavg1: +os.loadavg()[0]!.toFixed(2), backbone: values.backbone, results }, null, 2) + '\n');
