/**
 * Example: an HTTP inspection service. One model is loaded once and shared by all requests; requests
 * that arrive while a batch is being scored go through the backbone together as the next batch
 * ({@link BatchingScorer}: same results, several times the throughput of one image per call). A camera
 * gateway POSTs either an encoded image or the camera's raw frame — the pixel buffer as the camera SDK
 * hands it over, no PNG encoding on the line — and gets the verdict, or the overlay picture.
 *
 *   npx tsx examples/inspection-service.ts model.partscan            # listens on 127.0.0.1:8080 (PORT=0: any free port)
 *   curl --data-binary @part.png http://127.0.0.1:8080/inspect
 *   curl --data-binary @frame.raw 'http://127.0.0.1:8080/inspect/frame?width=1280&height=1024&channels=3&order=bgr'
 *   curl --data-binary @part.png 'http://127.0.0.1:8080/inspect?render=overlay' > overlay.jpg
 *
 * Routes: `POST /inspect` (body: image bytes) and `POST /inspect/frame?width&height&channels[&stride]
 * [&order=bgr]` (body: raw 8-bit pixels, row-major, interleaved), at most 20 MB → 200 {verdict,
 * imageScore, normalizedScore, regions (bbox in the image's pixels), warnings}; with `render=overlay |
 * heatmap | mask` → 200 image/jpeg (mask: image/png) at the image's size. `GET /health` → 200 {ok,
 * backbone, size}. Errors are JSON {error, code}: 400 empty body, bad request or inconsistent frame
 * fields, 404, 405, 413 too large, 415 unsupported format, 422 undecodable or unusable image, 500 unexpected.
 */

import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { BatchingScorer, Model, PartscanError, renderResult, type PartscanErrorCode, type RawFrame, type ScoreInput } from 'partscan';

/** Largest accepted request body: a 20 MB limit covers uncompressed 5 MP PNGs from line cameras. */
export const DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024;

/** Options of {@link createInspectionServer}. */
export interface InspectionServerOptions {
  /** Largest accepted body in bytes (default {@link DEFAULT_MAX_BODY_BYTES}); larger → 413. */
  maxBodyBytes?: number;
  /** Minimum region area in model pixels (default 0). */
  minArea?: number;
}

/** HTTP status for a typed error about the request's image: the client sent something unusable. */
const STATUS_BY_CODE: Partial<Record<PartscanErrorCode, number>> = {
  IMAGE_DECODE: 422,
  IMAGE_TOO_SMALL: 422,
  INVALID_TENSOR: 422,
  IMAGE_UNSUPPORTED: 415,
  IMAGE_TOO_LARGE: 413,
  INVALID_FRAME: 400,
  OPTIONS: 400,
};

/** The raw frame a `/inspect/frame` request describes: its pixels in the body, their layout in the query. */
function frameOf(body: Buffer, url: URL): RawFrame {
  const int = (name: string): number => Number(url.searchParams.get(name) ?? Number.NaN);
  const order = url.searchParams.get('order');
  return {
    data: body,
    width: int('width'),
    height: int('height'),
    channels: int('channels') as RawFrame['channels'],
    ...(url.searchParams.has('stride') ? { stride: int('stride') } : {}),
    ...(order ? { order: order as RawFrame['order'] } : {}),
  };
}

const RENDER_KINDS = new Set(['overlay', 'heatmap', 'mask']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = 'BAD_REQUEST',
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads the body up to `limit` bytes; rejects with 413 as soon as it is exceeded (without buffering the rest). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new HttpError(413, `The image is larger than ${limit} bytes.`, 'TOO_LARGE'));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, `The image is larger than ${limit} bytes.`, 'TOO_LARGE'));
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Parses the request target; one the URL parser refuses (e.g. `//[`) is the client's error (400), not a 500. */
function requestUrl(req: http.IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    throw new HttpError(400, `Malformed request target: ${JSON.stringify(req.url)}.`, 'BAD_REQUEST');
  }
}

/**
 * Creates (does not start) the inspection HTTP server around a loaded model. Call `listen(port,
 * '127.0.0.1')` on it; port 0 picks a free port. The caller owns the model (dispose it after closing).
 */
export function createInspectionServer(model: Model, opts: InspectionServerOptions = {}): http.Server {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const scorer = new BatchingScorer(model);
  return http.createServer(async (req, res) => {
    try {
      const url = requestUrl(req);
      if (url.pathname === '/health') {
        if (req.method !== 'GET') throw new HttpError(405, 'Use GET /health.', 'METHOD');
        sendJson(res, 200, { ok: true, backbone: model.header.backbone.name, size: model.size, calibrated: model.header.thresholds !== undefined });
        return;
      }
      const raw = url.pathname === '/inspect/frame';
      if (url.pathname !== '/inspect' && !raw) throw new HttpError(404, 'Unknown route: use POST /inspect, POST /inspect/frame or GET /health.', 'NOT_FOUND');
      if (req.method !== 'POST') throw new HttpError(405, `Use POST ${url.pathname} with the image as body.`, 'METHOD');
      const render = url.searchParams.get('render');
      if (render !== null && !RENDER_KINDS.has(render)) throw new HttpError(400, 'render must be overlay, heatmap or mask.', 'BAD_REQUEST');
      const body = await readBody(req, limit);
      if (body.length === 0) throw new HttpError(400, 'Empty body: send the image bytes.', 'EMPTY');
      // Encoded bytes or the camera's raw pixels: the model takes both as they are.
      const input: ScoreInput = raw ? frameOf(body, url) : body;
      const r = await scorer.score(input, opts.minArea !== undefined ? { minArea: opts.minArea } : {});
      if (render) {
        // At the image's size, drawn from the same pixels (the body is still ours: no copy needed).
        const kind = render as 'overlay' | 'heatmap' | 'mask';
        const picture = await renderResult(r, kind, { format: kind === 'mask' ? 'png' : 'jpeg' });
        res.writeHead(200, { 'content-type': kind === 'mask' ? 'image/png' : 'image/jpeg', 'content-length': picture.length, 'x-verdict': r.verdict ?? 'none' });
        res.end(picture);
        return;
      }
      sendJson(res, 200, {
        verdict: r.verdict ?? null,
        imageScore: r.imageScore,
        normalizedScore: r.normalizedScore ?? null,
        regions: r.regions ?? [],
        warnings: r.warnings.map((w) => w.message),
      });
    } catch (e) {
      if (e instanceof HttpError) {
        // After a 413 mid-stream, close the connection instead of reading the rest of a huge upload.
        if (e.status === 413) res.setHeader('connection', 'close');
        sendJson(res, e.status, { error: e.message, code: e.code });
      } else if (e instanceof PartscanError && STATUS_BY_CODE[e.code]) {
        sendJson(res, STATUS_BY_CODE[e.code]!, { error: e.message, code: e.code });
      } else {
        sendJson(res, 500, { error: e instanceof Error ? e.message : String(e), code: e instanceof PartscanError ? e.code : 'INTERNAL' });
      }
    }
  });
}

async function main(): Promise<void> {
  const modelPath = process.argv[2] ?? process.env.PARTSCAN_MODEL;
  if (!modelPath) {
    process.stderr.write('usage: npx tsx examples/inspection-service.ts <model.partscan>  (or set PARTSCAN_MODEL)\n');
    process.exitCode = 2;
    return;
  }
  const model = await Model.load(modelPath);
  const server = createInspectionServer(model);
  const port = Number(process.env.PORT ?? 8080);
  server.listen(port, '127.0.0.1', () => {
    const bound = (server.address() as { port: number }).port;
    process.stdout.write(`inspection service on http://127.0.0.1:${bound} (model ${modelPath})\n`);
  });
  const stop = () => server.close(() => void model.dispose());
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`inspection-service: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = e instanceof PartscanError ? 2 : 1;
  });
}
