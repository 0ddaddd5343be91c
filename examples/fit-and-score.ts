/**
 * Example: the API in a few lines — fit on a folder of good parts, save, load, score one image.
 *
 *   npx tsx examples/fit-and-score.ts <good-images-dir> <image-to-check> [model.partscan]
 *
 * Uses ResNet-50 ImageNet weights (downloaded once, ~100 MB). Offline, set
 * PARTSCAN_BACKBONE=mobilenetv2-int8 (ships with partscan), or PARTSCAN_WEIGHTS=<file.safetensors>.
 * Prints one JSON line: the model file, the verdict and the defect regions in the image's pixels.
 */

import { fit, Model, PartscanError } from 'partscan';

async function main(): Promise<void> {
  const [goodDir, image, modelPath = 'model.partscan'] = process.argv.slice(2);
  if (!goodDir || !image) {
    process.stderr.write('usage: npx tsx examples/fit-and-score.ts <good-images-dir> <image> [model.partscan]\n');
    process.exitCode = 2;
    return;
  }
  // A registry name alone, or a spec when local weights are given.
  const name = process.env.PARTSCAN_BACKBONE ?? 'resnet50';
  const backbone = process.env.PARTSCAN_WEIGHTS ? { name, weights: process.env.PARTSCAN_WEIGHTS } : name;
  const fitted = await fit(goodDir, { backbone, onProgress: (e) => process.stderr.write(`\r${e.stage} ${e.done}/${e.total}   `) });
  process.stderr.write('\n');
  for (const w of fitted.fitWarnings ?? []) process.stderr.write(`warning: ${w.message}\n`);
  await fitted.save(modelPath);
  await fitted.dispose();

  // A production station would only do this part: load once, score many.
  const model = await Model.load(modelPath);
  try {
    const r = await model.score(image);
    for (const g of r.regions ?? []) process.stderr.write(`region #${g.id} at (${g.bbox.x},${g.bbox.y}) ${g.bbox.width}×${g.bbox.height} px\n`);
    const out = {
      model: modelPath,
      image,
      verdict: r.verdict ?? null,
      imageScore: r.imageScore,
      normalizedScore: r.normalizedScore ?? null,
      width: r.info?.width,
      height: r.info?.height,
      regions: (r.regions ?? []).map((g) => ({ bbox: g.bbox, areaPx: g.areaPx, peakScore: g.peakScore })),
    };
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await model.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`fit-and-score: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = e instanceof PartscanError ? 2 : 1;
});
