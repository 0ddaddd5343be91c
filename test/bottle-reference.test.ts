import { describe, expect, it } from 'vitest';
import { fit } from '../src/model/fit.js';
import { evaluateModel } from '../src/model/evaluate.js';
import { auroc } from '../src/metrics/auroc.js';
import { BOTTLE, REF_WEIGHTS } from './helpers/shared.js';

// End-to-end check against the reference PaDiM recipe (PyTorch: image AUROC 0.933, pixel AUROC 0.929
// with these weights, d=100, 224 px). The seeded channel choice differs between implementations, so
// the issue allows ±0.02. The reference's image score is the map's maximum (ScoreResult.mapMax);
// partscan's default standardised image score must not rank worse than it by more than 0.002 (issue 28).
describe('PaDiM on MVTec bottle vs the reference', () => {
  it('reproduces the reference AUROCs within ±0.02', async () => {
    const model = await fit(BOTTLE, {
      backbone: { backbone: 'resnet50', weights: REF_WEIGHTS },
      channels: 100,
      imageSize: 224,
      seed: 0,
      calibrationSplit: 0,
    });
    const ev = await evaluateModel(model, BOTTLE);
    await model.dispose();
    console.log(JSON.stringify({ image_auroc: ev.metrics.image_auroc, pixel_auroc: ev.metrics.pixel_auroc, aupro: ev.metrics.aupro, seconds: ev.seconds }));
    expect(ev.metrics.n_good).toBe(20);
    expect(ev.metrics.n_defect).toBe(63);
    const labels = ev.items.map((it) => (it.sample.anomalous ? 1 : 0));
    const mapMaxAuroc = auroc(ev.items.map((it) => it.result.mapMax), labels);
    console.log(JSON.stringify({ map_max_image_auroc: mapMaxAuroc }));
    expect(model.header.imageScore).toEqual({ kind: 'standardized' });
    expect(Math.abs(mapMaxAuroc - 0.933)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(ev.metrics.pixel_auroc - 0.929)).toBeLessThanOrEqual(0.02);
    expect(ev.metrics.image_auroc).toBeGreaterThanOrEqual(mapMaxAuroc - 0.002);
  }, 600_000);
});
