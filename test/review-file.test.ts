/**
 * The QA review file (issue 25): `partscan-review/1` round-trips, its JSON Schema in docs/ is the zod
 * schema's, and hostile or stale files get typed REVIEW errors — wrong types, other versions, huge
 * arrays and files, special files, paths outside the allowed roots (by `..`, absolute, or a symlink),
 * missing files listed by name, contradictory labels.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReview, parseReview, readReviewFile, REVIEW_FORMAT, REVIEW_LIMITS, reviewJsonSchema, type ReviewFile } from '../src/review/review-file.js';
import { resolveReviewImages } from '../src/review/review-images.js';
import { REPO, BOTTLE } from './helpers/shared.js';

const SHA = 'a'.repeat(64);
let tmp: string;
let images: string;
let good: string[];

function review(items: unknown[], extra: Record<string, unknown> = {}): unknown {
  return { format: REVIEW_FORMAT, model: { sha256: SHA }, run: { id: 'r1', parts: 3 }, items, ...extra };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'partscan-review-file-'));
  images = path.join(tmp, 'images');
  await fs.mkdir(images);
  good = [];
  for (const f of ['000.png', '001.png', '002.png']) {
    const p = path.join(images, f);
    await fs.copyFile(path.join(BOTTLE, 'test', 'good', f), p);
    good.push(p);
  }
});

afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('review.json format', () => {
  it('buildReview → JSON → readReviewFile round-trips, numbers exactly', async () => {
    const parts = good.map((file, i) => ({ file, verdict: 'NG' as const, imageScore: 3.141592653589793 + i, mapMax: 12.5 / 3, mapMin: 1e-7 }));
    const labels = new Map([[good[0]!, 'good' as const], [good[2]!, 'defect' as const]]);
    const r = buildReview({ sha256: SHA, path: 'm.partscan' }, { id: 'run-1', createdAt: '2025-01-01T00:00:00.000Z', parts: 3 }, parts, labels, '2025-01-02T03:04:05.000Z');
    expect(r.items.map((i) => [path.basename(i.file), i.label])).toEqual([['000.png', 'good'], ['002.png', 'defect']]);
    const file = path.join(tmp, 'review.json');
    await fs.writeFile(file, JSON.stringify(r, null, 2));
    const back = await readReviewFile(file);
    expect(back).toEqual(r);
    expect(back.items[1]!.imageScore).toBe(5.141592653589793);
  });

  it('property: any valid review round-trips through JSON; unknown keys are dropped, known ones kept', () => {
    const item = fc.record(
      {
        file: fc.string({ minLength: 1, maxLength: 60 }).filter((s) => !s.includes('\0')),
        label: fc.constantFrom('good' as const, 'defect' as const),
        verdict: fc.constantFrom('OK' as const, 'NG' as const, 'UNCERTAIN' as const),
        imageScore: fc.double({ noNaN: true, noDefaultInfinity: true }),
        mapMax: fc.double({ noNaN: true, noDefaultInfinity: true }),
        reviewedAt: fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString()),
      },
      { requiredKeys: ['file', 'label'] },
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 20 }), fc.option(fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }), { nil: null }), (items, sha) => {
        const r = { format: REVIEW_FORMAT, model: { sha256: sha }, run: null, items, extra: 1 } as unknown;
        const back = parseReview(JSON.parse(JSON.stringify(r)));
        const { extra: _x, ...known } = r as { extra: number } & ReviewFile;
        // JSON writes −0 as 0.
        expect(back).toEqual(JSON.parse(JSON.stringify(known)));
      }),
      { numRuns: 200, seed: 25 },
    );
  });

  it('property: a mutated review is either valid or a typed REVIEW error naming a field', () => {
    const base = review([{ file: good[0], label: 'good', imageScore: 1, reviewedAt: '2025-01-01T00:00:00Z' }]) as Record<string, unknown>;
    const paths = [['format'], ['model'], ['model', 'sha256'], ['run'], ['run', 'id'], ['items'], ['items', 0], ['items', 0, 'file'], ['items', 0, 'label'], ['items', 0, 'imageScore'], ['items', 0, 'reviewedAt']];
    const junk = fc.oneof(fc.constant(null), fc.constant(undefined), fc.integer(), fc.double(), fc.string({ maxLength: 8 }), fc.boolean(), fc.constant([]), fc.constant({}), fc.constant('x'.repeat(5000)));
    fc.assert(
      fc.property(fc.constantFrom(...paths), junk, (at, value) => {
        const r = structuredClone(base);
        let o = r as Record<string | number, unknown>;
        for (const k of at.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
        o[at.at(-1)!] = value;
        try {
          parseReview(JSON.parse(JSON.stringify(r) ?? 'null'));
        } catch (e) {
          expect(e).toMatchObject({ code: 'REVIEW' });
          expect((e as Error).message).toMatch(/format|model|run|items|root/);
        }
      }),
      { numRuns: 300, seed: 25 },
    );
  });

  it('wrong types, another version, huge arrays and non-JSON are typed REVIEW errors naming what is wrong', async () => {
    const cases: [unknown, RegExp][] = [
      [review([{ file: good[0], label: 'maybe' }]), /items\[0\]\.label/],
      [review([{ file: 42, label: 'good' }]), /items\[0\]\.file/],
      [review([{ file: good[0], label: 'good', imageScore: 'high' }]), /items\[0\]\.imageScore/],
      [review([{ file: good[0], label: 'good', reviewedAt: 'yesterday' }]), /items\[0\]\.reviewedAt/],
      [review([{ file: `${good[0]}\0.png`, label: 'good' }]), /NUL/],
      [review([], { model: { sha256: 'ABC' } }), /model\.sha256/],
      [review([], { format: 'partscan-review/2' }), /partscan-review\/2; this partscan reads partscan-review\/1/],
      [{ format: 'something-else', items: [] }, /format/],
      [[], /root/],
      [review(new Array(REVIEW_LIMITS.items + 1).fill({ file: 'x.png', label: 'good' })), /100001 items, more than the 100000/],
    ];
    for (const [json, message] of cases) {
      expect(() => parseReview(json, 'r.json'), message.source).toThrow(expect.objectContaining({ code: 'REVIEW', message: expect.stringMatching(message) }));
    }
    const notJson = path.join(tmp, 'not.json');
    await fs.writeFile(notJson, '{"format": "partscan-review/1", ');
    await expect(readReviewFile(notJson)).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/not JSON/) });
    await expect(readReviewFile(path.join(tmp, 'absent.json'))).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/ENOENT/) });
    await expect(readReviewFile(tmp)).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/directory/) });
  });

  it('a file over the byte cap is refused before it is read, a FIFO without blocking', async () => {
    const big = path.join(tmp, 'big.json');
    await fs.writeFile(big, '');
    await fs.truncate(big, REVIEW_LIMITS.bytes + 1); // sparse: nothing is written
    await expect(readReviewFile(big)).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/more than the 67108864 allowed/) });
    const fifo = path.join(tmp, 'review.fifo');
    execFileSync('mkfifo', [fifo]);
    await expect(readReviewFile(fifo)).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/FIFO/) });
  });

  it('docs/schemas/review.schema.json is the JSON Schema of the zod schema (npm run schemas rewrites it)', () => {
    const file = path.join(REPO, 'docs', 'schemas', 'review.schema.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(reviewJsonSchema());
  });
});

describe('the images a review names', () => {
  const opts = () => ({ roots: [images], source: 'r.json' });

  it('resolves files inside the roots to real paths with the sha256 of their bytes', async () => {
    const r = parseReview(review([{ file: good[0], label: 'good' }, { file: good[1], label: 'defect' }]));
    const items = await resolveReviewImages(r, opts());
    const { createHash } = await import('node:crypto');
    expect(items.map((i) => [i.path, i.key])).toEqual(good.slice(0, 2).map((f) => [f, createHash('sha256').update(readFileSync(f)).digest('hex')]));
  });

  it('path traversal — `..`, an absolute path elsewhere, a symlink leading out — is a REVIEW error listing each file', async () => {
    const link = path.join(images, 'link.png');
    await fs.symlink(path.join(BOTTLE, 'test', 'good', '003.png'), link);
    const climb = path.join(images, '..', '..', 'etc', 'passwd');
    const r = parseReview(review([{ file: good[0], label: 'good' }, { file: climb, label: 'good' }, { file: '/etc/passwd', label: 'defect' }, { file: link, label: 'good' }]));
    const err = await resolveReviewImages(r, opts()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/3 file\(s\) outside the allowed image folders/) });
    const msg = (err as Error).message;
    expect(msg).toContain('/etc/passwd');
    expect(msg).toContain(`${link} (it leads to ${path.join(BOTTLE, 'test', 'good', '003.png')})`);
    expect(msg).toMatch(/--image-root/);
    // With the link's target folder allowed too, it resolves (to the target).
    const ok = await resolveReviewImages(parseReview(review([{ file: link, label: 'good' }])), { roots: [images, BOTTLE], source: 'r.json' });
    expect(ok[0]!.path).toBe(path.join(BOTTLE, 'test', 'good', '003.png'));
    await fs.rm(link);
  });

  it('the working directory is the default root: a relative climb out of it is refused', async () => {
    const r = parseReview(review([{ file: '../../../../../../etc/hostname', label: 'good' }]));
    await expect(resolveReviewImages(r, { source: 'r.json' })).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/outside the allowed image folders/) });
  });

  it('missing and unreadable files are listed by name in one REVIEW error', async () => {
    const fifo = path.join(images, 'pipe.png');
    execFileSync('mkfifo', [fifo]);
    const r = parseReview(review([{ file: good[0], label: 'good' }, { file: path.join(images, 'gone-1.png'), label: 'good' }, { file: path.join(images, 'gone-2.png'), label: 'defect' }, { file: fifo, label: 'good' }, { file: images, label: 'good' }]));
    const err = (await resolveReviewImages(r, opts()).catch((e: unknown) => e)) as Error;
    expect(err).toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/4 reviewed image\(s\) cannot be read/) });
    for (const name of ['gone-1.png', 'gone-2.png', 'pipe.png (a FIFO (named pipe))', 'images (a directory)']) expect(err.message).toContain(name);
    await fs.rm(fifo);
  });

  it('contradictory labels — one file twice, or two files with the same bytes — are a REVIEW error; agreeing duplicates count once', async () => {
    const copy = path.join(images, 'copy-of-000.png');
    await fs.copyFile(good[0]!, copy);
    const twice = parseReview(review([{ file: good[0], label: 'good' }, { file: good[0], label: 'defect' }]));
    await expect(resolveReviewImages(twice, opts())).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/labelled both good and defect/) });
    const sameBytes = parseReview(review([{ file: good[0], label: 'good' }, { file: copy, label: 'defect' }]));
    await expect(resolveReviewImages(sameBytes, opts())).rejects.toMatchObject({ code: 'REVIEW', message: expect.stringMatching(/hold the same image/) });
    const agreeing = parseReview(review([{ file: good[0], label: 'good', reviewedAt: '2025-01-01T00:00:00Z' }, { file: copy, label: 'good', reviewedAt: '2025-02-01T00:00:00Z' }]));
    const items = await resolveReviewImages(agreeing, opts());
    expect(items.map((i) => i.file)).toEqual([copy]);
    await fs.rm(copy);
  });
});
