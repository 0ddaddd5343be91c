import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPartscanError } from '../src/errors.js';
import { verdictQuality, type VerdictItem } from '../src/metrics/verdicts.js';
import { operatingCurve } from '../src/metrics/operating-curve.js';
import { formatVerdictLine, formatVerdictTable } from '../src/cli/format-verdicts.js';
import type { Verdict } from '../src/postprocess/thresholds.js';

const item = (label: string, verdict: Verdict): VerdictItem => ({ label, anomalous: label !== 'good', verdict });

describe('verdictQuality', () => {
  // 5 good: 3 OK, 1 NG, 1 UNCERTAIN. scratch (4): 2 NG, 1 OK, 1 UNCERTAIN. dent (2): 2 NG.
  const items = [
    item('good', 'OK'),
    item('scratch', 'NG'),
    item('good', 'NG'),
    item('dent', 'NG'),
    item('good', 'OK'),
    item('scratch', 'OK'),
    item('good', 'UNCERTAIN'),
    item('scratch', 'UNCERTAIN'),
    item('good', 'OK'),
    item('dent', 'NG'),
    item('scratch', 'NG'),
  ];

  it('matches a hand-computed case overall', () => {
    const q = verdictQuality(items);
    expect(q.confusion).toEqual({ good: { OK: 3, NG: 1, UNCERTAIN: 1 }, defect: { OK: 1, NG: 4, UNCERTAIN: 1 } });
    expect(q.n_good).toBe(5);
    expect(q.n_defect).toBe(6);
    expect(q.escape_rate).toBeCloseTo(1 / 6, 12);
    expect(q.false_reject_rate).toBeCloseTo(1 / 5, 12);
    expect(q.uncertain_share).toBeCloseTo(2 / 11, 12);
  });

  it('matches a hand-computed case per defect type (all good parts + that type)', () => {
    const q = verdictQuality(items);
    expect(Object.keys(q.per_defect)).toEqual(['dent', 'scratch']);
    const scratch = q.per_defect.scratch!;
    expect(scratch.confusion.defect).toEqual({ OK: 1, NG: 2, UNCERTAIN: 1 });
    expect(scratch.confusion.good).toEqual({ OK: 3, NG: 1, UNCERTAIN: 1 });
    expect(scratch.escape_rate).toBeCloseTo(1 / 4, 12);
    expect(scratch.false_reject_rate).toBeCloseTo(1 / 5, 12);
    expect(scratch.uncertain_share).toBeCloseTo(2 / 9, 12);
    const dent = q.per_defect.dent!;
    expect(dent.escape_rate).toBe(0);
    expect(dent.uncertain_share).toBeCloseTo(1 / 7, 12);
    expect(dent.n_defect).toBe(2);
  });

  it('prints the rates and counts', () => {
    const q = verdictQuality(items);
    expect(formatVerdictLine(q)).toBe(
      'verdicts: defective 4 NG, 1 OK (escape 16.7%), 1 UNCERTAIN; good 3 OK, 1 NG (false reject 20.0%), 1 UNCERTAIN',
    );
    const table = formatVerdictTable(q).split('\n');
    expect(table.find((l) => l.startsWith('scratch'))).toMatch(/25\.0%\s+20\.0%\s+22\.2%\s+3\/1\/1\s+1\/2\/1/);
  });

  it('gives NaN rates without a class (JSON null), not 0', () => {
    const q = verdictQuality([item('good', 'OK'), item('good', 'NG')]);
    expect(q.escape_rate).toBeNaN();
    expect(q.false_reject_rate).toBe(0.5);
    expect(JSON.parse(JSON.stringify(q)).escape_rate).toBeNull();
    expect(q.per_defect).toEqual({});
  });

  it('refuses an item without a verdict', () => {
    let caught: unknown;
    try {
      verdictQuality([{ label: 'good', anomalous: false, verdict: undefined as unknown as Verdict }]);
    } catch (e) {
      caught = e;
    }
    expect(isPartscanError(caught, 'OPTIONS')).toBe(true);
  });

  it('counts every item once; rates stay in [0, 1] (property)', () => {
    const arb = fc.array(
      fc.record({ label: fc.constantFrom('good', 'a', 'b', 'c'), verdict: fc.constantFrom<Verdict>('OK', 'NG', 'UNCERTAIN') }),
      { maxLength: 60 },
    );
    fc.assert(
      fc.property(arb, (raw) => {
        const q = verdictQuality(raw.map((r) => item(r.label, r.verdict)));
        const sum = (c: { OK: number; NG: number; UNCERTAIN: number }) => c.OK + c.NG + c.UNCERTAIN;
        expect(sum(q.confusion.good) + sum(q.confusion.defect)).toBe(raw.length);
        expect(q.n_defect).toBe(raw.filter((r) => r.label !== 'good').length);
        for (const s of [q, ...Object.values(q.per_defect)]) {
          for (const r of [s.escape_rate, s.false_reject_rate, s.uncertain_share]) {
            if (!Number.isNaN(r)) expect(r >= 0 && r <= 1).toBe(true);
          }
        }
        // Per type, the defect counts partition the overall ones.
        const perDefect = Object.values(q.per_defect).reduce((a, s) => a + s.confusion.defect.OK, 0);
        expect(perDefect).toBe(q.confusion.defect.OK);
      }),
    );
  });
});

describe('operatingCurve', () => {
  it('at each rate: the lowest threshold with at most ⌊rate·N⌋ good scores above it, and the escapes there (brute force)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 0, maxLength: 30 }),
        (good, defect) => {
          const rates = [0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5];
          const curve = operatingCurve(good, defect, rates);
          curve.forEach((p, i) => {
            const allowed = Math.floor(rates[i]! * good.length + 1e-9);
            const above = good.filter((g) => g > p.threshold).length;
            expect(above).toBeLessThanOrEqual(allowed);
            // Lowest such threshold among the good scores: the next lower good score would allow too many.
            const lower = good.filter((g) => g < p.threshold);
            if (lower.length) expect(good.filter((g) => g > Math.max(...lower)).length).toBeGreaterThan(allowed);
            expect(p.measured_false_reject_rate).toBe(above / good.length);
            if (defect.length) expect(p.escape_rate).toBe(defect.filter((d) => d <= p.threshold).length / defect.length);
            else expect(p.escape_rate).toBeNaN();
          });
        },
      ),
      { seed: 22, numRuns: 300 },
    );
  });
});
