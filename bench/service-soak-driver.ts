/**
 * Soak driver for the example inspection service (`examples/inspection-service.ts`): a catalogue of
 * valid and bad requests, a raw `node:http` client that always resolves (status + JSON, or the
 * transport error), and a round runner that fires N requests at once. Shared by
 * `test/service-soak.test.ts` and `bench/service-soak.ts`.
 */
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { deflateSync } from 'node:zlib';
import { promises as fs } from 'node:fs';
import sharp from 'sharp';
import type { Model } from '../src/model/model.js';

/** What a request is expected to get back. */
export type SoakExpectation = { kind: 'score'; verdict: string | null; imageScore: number } | { kind: 'reject'; status: number; code: string };

/** How the body travels. */
export type SendMode =
  /** Body with a correct Content-Length. */
  | 'plain'
  /** A huge declared Content-Length, of which only a few bytes are sent (the server must not wait for the rest). */
  | 'declared-huge'
  /** Chunked transfer (no Content-Length) of a body larger than the server's limit, written until the server answers. */
  | 'chunked';

/** One entry of the request catalogue. */
export interface SoakCase {
  name: string;
  method: string;
  path: string;
  body: Buffer;
  mode: SendMode;
  expect: SoakExpectation;
}

/** What one request got. */
export interface SoakAnswer {
  case: SoakCase;
  ms: number;
  status?: number;
  json?: Record<string, unknown>;
  /** Transport failure (reset, timeout, unparsable body): the request got no proper answer. */
  error?: string;
}

/** The bottle test images used as valid requests: good and defective parts. */
export const VALID_IMAGES = ['good/000.png', 'good/001.png', 'good/002.png', 'broken_large/000.png', 'broken_small/001.png', 'contamination/002.png'];

/**
 * A PNG "decompression bomb": a 1-bit grayscale image of `side`×`side` pixels whose all-zero rows
 * deflate to a few kB (12000² = 144 MP, above the default 100 MP pixel cap).
 */
export function pngBomb(side = 12_000): Buffer {
  const crcTable = new Int32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c;
  });
  const crc = (b: Buffer): number => {
    let c = -1;
    for (const x of b) c = crcTable[(c ^ x) & 0xff]! ^ (c >>> 8);
    return (c ^ -1) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // grayscale
  const raw = Buffer.alloc(side * (1 + Math.ceil(side / 8))); // filter byte 0 + zero pixels per row
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]);
}

/** A real 4×4 24-bit BMP: a valid image in a format the decoder (sharp) does not read. */
export function tinyBmp(): Buffer {
  const w = 4;
  const h = 4;
  const row = w * 3; // already a multiple of 4
  const b = Buffer.alloc(54 + row * h, 0x80);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(0, 6);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  b.writeUInt32LE(0, 30);
  b.writeUInt32LE(row * h, 34);
  b.writeUInt32LE(2835, 38);
  b.writeUInt32LE(2835, 42);
  b.writeUInt32LE(0, 46);
  b.writeUInt32LE(0, 50);
  return b;
}

/** Deterministic pseudo-random bytes (xorshift32). */
function garbage(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    b[i] = s & 0xff;
  }
  return b;
}

/**
 * Builds the request catalogue: valid images (bottle test PNGs and one JPEG re-encode), with the
 * result `model.score` gives for the very same bytes, and bad requests with the status and code the
 * service must answer. `maxBodyBytes` is the server's configured body limit.
 */
export async function buildCatalogue(model: Model, bottleDir: string, maxBodyBytes: number): Promise<{ valid: SoakCase[]; bad: SoakCase[] }> {
  const images = await Promise.all(VALID_IMAGES.map((n) => fs.readFile(path.join(bottleDir, 'test', n))));
  const jpeg = await sharp(images[1]!).jpeg({ quality: 90 }).toBuffer();
  const validBodies: [string, Buffer][] = [...VALID_IMAGES.map((n, i): [string, Buffer] => [n, images[i]!]), ['good/001.png as JPEG', jpeg]];
  const valid: SoakCase[] = [];
  for (const [name, body] of validBodies) {
    const r = await model.score(body);
    valid.push({ name, method: 'POST', path: '/inspect', body, mode: 'plain', expect: { kind: 'score', verdict: r.verdict ?? null, imageScore: r.imageScore } });
  }
  const reject = (status: number, code: string): SoakExpectation => ({ kind: 'reject', status, code });
  const post = (name: string, body: Buffer, expect: SoakExpectation, mode: SendMode = 'plain'): SoakCase => ({ name, method: 'POST', path: '/inspect', body, mode, expect });
  const png = images[0]!;
  const bad: SoakCase[] = [
    post('empty body', Buffer.alloc(0), reject(400, 'EMPTY')),
    post('garbage bytes', garbage(8192, 7), reject(422, 'IMAGE_DECODE')),
    post('truncated PNG (header only)', png.subarray(0, 300), reject(422, 'IMAGE_DECODE')),
    post('truncated PNG (half the data)', png.subarray(0, png.length >> 1), reject(422, 'IMAGE_DECODE')),
    post('text file', Buffer.from('part-0042 OK\nthis is a log line, not an image\n'.repeat(20)), reject(422, 'IMAGE_DECODE')),
    post('BMP (unsupported format)', tinyBmp(), reject(415, 'IMAGE_UNSUPPORTED')),
    post('PNG bomb above the pixel cap', pngBomb(), reject(413, 'IMAGE_TOO_LARGE')),
    post('body over the limit (declared length)', Buffer.alloc(64 * 1024, 1), reject(413, 'TOO_LARGE'), 'declared-huge'),
    post('body over the limit (chunked, no length)', Buffer.alloc(maxBodyBytes + 256 * 1024, 2), reject(413, 'TOO_LARGE'), 'chunked'),
    { name: 'GET /inspect', method: 'GET', path: '/inspect', body: Buffer.alloc(0), mode: 'plain', expect: reject(405, 'METHOD') },
    { name: 'PUT /health', method: 'PUT', path: '/health', body: Buffer.from('{}'), mode: 'plain', expect: reject(405, 'METHOD') },
    { name: 'POST /nope', method: 'POST', path: '/nope', body: png.subarray(0, 1000), mode: 'plain', expect: reject(404, 'NOT_FOUND') },
    { name: 'malformed request target', method: 'GET', path: '//[', body: Buffer.alloc(0), mode: 'plain', expect: reject(400, 'BAD_REQUEST') },
  ];
  return { valid, bad };
}

/**
 * Sends one request with a raw `node:http` client and always resolves: with the status and parsed JSON
 * body, or with `error` on a transport failure or after `timeoutMs`.
 */
export function send(port: number, c: SoakCase, agent: http.Agent, timeoutMs = 120_000): Promise<SoakAnswer> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let answered = false;
    const finish = (a: Omit<SoakAnswer, 'case' | 'ms'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ case: c, ms: performance.now() - t0, ...a });
      if (c.mode !== 'plain') req.destroy(); // stop streaming the rest of an oversized body
    };
    const headers: http.OutgoingHttpHeaders = {};
    if (c.mode === 'plain') headers['content-length'] = c.body.length;
    if (c.mode === 'declared-huge') headers['content-length'] = 10 * 1024 ** 3;
    if (c.mode === 'chunked') headers['transfer-encoding'] = 'chunked';
    const req = http.request({ host: '127.0.0.1', port, method: c.method, path: c.path, headers, agent });
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (b: Buffer) => chunks.push(b));
      res.on('error', (e) => finish({ status: res.statusCode!, error: `response body: ${e.message}` }));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          finish({ status: res.statusCode!, json: JSON.parse(text) as Record<string, unknown> });
        } catch {
          finish({ status: res.statusCode!, error: `not JSON: ${text.slice(0, 200)}` });
        }
      });
    });
    // A write error after the answer (the server closed an oversized upload) is expected.
    req.on('error', (e) => {
      if (!answered) finish({ error: `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}` });
    });
    if (c.mode === 'plain') {
      req.end(c.body);
    } else if (c.mode === 'declared-huge') {
      req.write(c.body); // never ends: the server must answer from the declared length
    } else {
      // Stream in 64 kB pieces, honouring back-pressure, until the body is sent or the server answered.
      void (async () => {
        for (let off = 0; off < c.body.length && !answered && !done; off += 64 * 1024) {
          if (!req.write(c.body.subarray(off, off + 64 * 1024))) {
            await new Promise<void>((r) => {
              const go = (): void => {
                req.off('drain', go).off('close', go);
                r();
              };
              req.on('drain', go).on('close', go);
            });
          }
        }
        if (!done) req.end();
      })();
    }
  });
}

/** One round: `n` requests all in flight at once, half valid images and half bad requests, cycling through the catalogue. */
export async function runRound(port: number, cases: { valid: SoakCase[]; bad: SoakCase[] }, n: number, agent: http.Agent, round = 0): Promise<SoakAnswer[]> {
  const jobs: SoakCase[] = [];
  // Even slots are valid images, odd slots bad requests; the offset by round varies the pairing.
  for (let i = 0; i < n; i++) {
    const k = (i >> 1) + round;
    jobs.push(i % 2 === 0 ? cases.valid[k % cases.valid.length]! : cases.bad[k % cases.bad.length]!);
  }
  return Promise.all(jobs.map((c) => send(port, c, agent)));
}

/** Whether an answer is what its case expects (score within `relTol` relative, same verdict). */
export function check(a: SoakAnswer, relTol = 1e-5): string | undefined {
  const e = a.case.expect;
  if (a.error !== undefined) return `${a.case.name}: ${a.error}`;
  if (e.kind === 'score') {
    if (a.status !== 200) return `${a.case.name}: status ${a.status} ${JSON.stringify(a.json)}`;
    const s = a.json!.imageScore as number;
    if (a.json!.verdict !== e.verdict) return `${a.case.name}: verdict ${String(a.json!.verdict)} vs ${String(e.verdict)}`;
    if (!(Math.abs(s - e.imageScore) <= relTol * Math.abs(e.imageScore))) return `${a.case.name}: imageScore ${s} vs ${e.imageScore}`;
    return undefined;
  }
  if (a.status !== e.status) return `${a.case.name}: status ${a.status} (want ${e.status}) ${JSON.stringify(a.json)}`;
  if (typeof a.json!.error !== 'string' || (a.json!.error as string).length < 5 || a.json!.code !== e.code) {
    return `${a.case.name}: body ${JSON.stringify(a.json)} (want code ${e.code} and an error message)`;
  }
  return undefined;
}

/** Percentile (nearest rank) of `xs`. */
export function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
