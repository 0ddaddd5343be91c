/**
 * Synthetic sample parts: machined metal discs (turned face with concentric tool marks, a chamfered
 * bore, four bolt holes, an index notch) on a dark fixture, with natural good-part variation, plus four
 * defect types with exact masks. Written in MVTec AD layout so every loader and metric can run on it
 * without external data.
 *
 * Determinism: every random choice comes from a seeded PRNG keyed by (seed, sample key, purpose), never
 * Math.random, so any sample can be re-rendered on its own — including the clean part underneath a
 * defect. Exact masks: a defect changes the scene only inside its mask, and sensor noise is added after
 * the defect from the same noise stream as the clean render, so pixels outside the mask are
 * byte-identical to the clean part.
 */
import { sfc32 } from '../src/util/prng.js';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PartscanError } from '../src/errors.js';
import { ensureOutputDir, writeFileAtomic } from '../src/util/atomic-write.js';

/** The defect types the generator can draw. */
export const SYNTHETIC_DEFECT_TYPES = ['scratch', 'dent', 'chip', 'contamination'] as const;

/** One of {@link SYNTHETIC_DEFECT_TYPES}. */
export type SyntheticDefectType = (typeof SYNTHETIC_DEFECT_TYPES)[number];

/** Name of the manifest file written (last) into a generated dataset. */
export const SYNTHETIC_MANIFEST = 'partscan-synthetic.json';

/** Bumped whenever rendering changes, so an old set on disk is regenerated instead of reused. */
const GENERATOR_VERSION = 1;

/** Generator settings; every field is optional. */
export interface SyntheticOptions {
  /** PRNG seed (unsigned 32-bit integer, default 0). Same seed → byte-identical files. */
  seed?: number;
  /** Image side in pixels (default 256). */
  size?: number;
  /** Good training parts (default 40). */
  nTrain?: number;
  /** Good test parts (default 10). */
  nTestGood?: number;
  /** Test parts per defect type (default 6). */
  nPerDefect?: number;
}

/** One rendered sample. */
export interface SyntheticSample {
  /** Image width (= size). */
  width: number;
  /** Image height (= size). */
  height: number;
  /** Interleaved 8-bit RGB of the sample as written. */
  image: Uint8Array;
  /** The same part without its defect (same pose, lighting and noise); equals `image` for good parts. */
  clean: Uint8Array;
  /** 1 where the defect changed the part, else 0; absent for good parts. */
  mask?: Uint8Array;
}

/**
 * Fills in defaults and checks ranges.
 * @throws PartscanError 'OPTIONS' for a non-integer or out-of-range value.
 */
export function resolveSyntheticOptions(opts: SyntheticOptions = {}): Required<SyntheticOptions> {
  const o: Required<SyntheticOptions> = {
    seed: opts.seed ?? 0,
    size: opts.size ?? 256,
    nTrain: opts.nTrain ?? 40,
    nTestGood: opts.nTestGood ?? 10,
    nPerDefect: opts.nPerDefect ?? 6,
  };
  const limits: Record<keyof SyntheticOptions, [number, number]> = {
    seed: [0, 0xffffffff],
    size: [64, 2048],
    nTrain: [1, 100_000],
    nTestGood: [0, 100_000],
    nPerDefect: [0, 100_000],
  };
  for (const [k, [lo, hi]] of Object.entries(limits) as [keyof SyntheticOptions, [number, number]][]) {
    const v = o[k];
    if (!Number.isInteger(v) || v < lo || v > hi) {
      throw new PartscanError('OPTIONS', `Synthetic option ${k} must be an integer in ${lo}..${hi}, got ${v}.`, {
        remedy: `pass a ${k} in range or leave it out for the default`,
      });
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------
// Seeded randomness

/** A PRNG stream: uniform [0, 1) numbers from sfc32, seeded by hashing (seed, key). */
interface Rng {
  next(): number;
  uniform(lo: number, hi: number): number;
  normal(): number;
  int(n: number): number;
}

function makeRng(seed: number, key: string): Rng {
  // sha256 of the key gives four well-mixed 32-bit words; cheap next to the rendering.
  const h = createHash('sha256').update(`${seed >>> 0}:${key}`).digest();
  const nextUint32 = sfc32(h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12));
  const next = (): number => nextUint32() / 4294967296;
  let spare: number | undefined;
  return {
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    int: (n) => Math.floor(next() * n),
    normal: () => {
      if (spare !== undefined) {
        const s = spare;
        spare = undefined;
        return s;
      }
      const u = 1 - next();
      const v = next();
      const m = Math.sqrt(-2 * Math.log(u));
      spare = m * Math.sin(2 * Math.PI * v);
      return m * Math.cos(2 * Math.PI * v);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// The part

/** Pose, lighting and finish of one part: everything that varies between good parts. */
interface PartParams {
  size: number;
  cx: number; // centre, px
  cy: number;
  radius: number; // px
  rotation: number; // rad, of bolt holes and notch
  gain: number; // global lighting gain
  lightAngle: number; // direction the light comes from, rad
  lightGradient: number; // relative brightness change across one radius
  specularAngle: number; // axis of the turned surface's bow-tie reflection
  markPhase1: number;
  markPhase2: number;
  background: number; // fixture grey level
}

function drawPart(rng: Rng, size: number): PartParams {
  const clamp = (v: number, m: number) => Math.max(-m, Math.min(m, v));
  return {
    size,
    cx: size * (0.5 + clamp(0.007 * rng.normal(), 0.018)),
    cy: size * (0.5 + clamp(0.007 * rng.normal(), 0.018)),
    radius: size * 0.4 * rng.uniform(0.99, 1.01),
    rotation: (rng.uniform(-4, 4) * Math.PI) / 180,
    gain: rng.uniform(0.93, 1.07),
    lightAngle: rng.uniform(-Math.PI, Math.PI),
    lightGradient: rng.uniform(0, 0.08),
    specularAngle: ((35 + rng.uniform(-6, 6)) * Math.PI) / 180,
    markPhase1: rng.uniform(0, 2 * Math.PI),
    markPhase2: rng.uniform(0, 2 * Math.PI),
    background: rng.uniform(24, 34),
  };
}

/** Geometry derived from the radius, shared by the renderer and defect placement. */
function geometry(p: PartParams) {
  const R = p.radius;
  const boltAngles = [0, 1, 2, 3].map((k) => p.rotation + Math.PI / 4 + (k * Math.PI) / 2);
  return {
    R,
    bore: 0.26 * R,
    boreChamfer: 0.045 * R,
    rimChamfer: 0.05 * R,
    groove: 0.47 * R,
    grooveHalfWidth: Math.max(0.7, 0.012 * R),
    boltRadius: 0.06 * R,
    boltCircle: 0.66 * R,
    boltChamfer: Math.max(1, 0.022 * R),
    bolts: boltAngles.map((a) => [p.cx + 0.66 * R * Math.cos(a), p.cy + 0.66 * R * Math.sin(a)] as const),
    notchAngle: p.rotation - Math.PI / 2,
    notchHalfWidth: 0.035 * R,
    notchDepth: 0.07 * R,
  };
}

const METAL_RGB = [236, 239, 245] as const;
const FIXTURE_RGB = [0.92, 0.97, 1.06] as const;

/** Anti-aliased coverage of a region whose signed distance (px, positive inside) is d. */
const cover = (d: number) => (d <= -0.5 ? 0 : d >= 0.5 ? 1 : d + 0.5);

/** Scene layers of one part: the clean render plus what defects need. */
interface PartScene {
  params: PartParams;
  /** Interleaved float RGB, 0..255, before noise. */
  rgb: Float32Array;
  /** Interleaved float RGB of the fixture behind the part (what a chip exposes). */
  fixture: Float32Array;
  /** Fraction of each pixel covered by metal. */
  metal: Float32Array;
  /** 1 where a pixel lies well inside the machined face (defect placement area). */
  face: Uint8Array;
}

function renderPart(p: PartParams): PartScene {
  const S = p.size;
  const g = geometry(p);
  const rgb = new Float32Array(S * S * 3);
  const fixture = new Float32Array(S * S * 3);
  const metal = new Float32Array(S * S);
  const face = new Uint8Array(S * S);
  const cosL = Math.cos(p.lightAngle);
  const sinL = Math.sin(p.lightAngle);
  const period1 = Math.max(3, S / 57);
  const period2 = Math.max(7, S / 19);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const i = y * S + x;
      const dx = x + 0.5 - p.cx;
      const dy = y + 0.5 - p.cy;
      const r = Math.sqrt((dx) ** 2 + (dy) ** 2);
      const phi = Math.atan2(dy, dx);
      const rn = r / g.R;

      // Fixture: dark, slightly blue, with a vignette and the same light gradient.
      const light = p.gain * (1 + (p.lightGradient * (dx * cosL + dy * sinL)) / g.R);
      const fix = p.background * light * (1 - 0.18 * Math.min(1, (r / (0.7 * S)) ** 2));

      // Coverage of metal: disc minus bore, bolt holes and the index notch.
      const disc = cover(g.R - r);
      const boreCov = cover(r - g.bore);
      let boltCov = 1;
      let boltDist = Infinity;
      for (const [bx, by] of g.bolts) {
        const d = Math.sqrt((x + 0.5 - bx) ** 2 + (y + 0.5 - by) ** 2);
        boltDist = Math.min(boltDist, d);
        boltCov *= cover(d - g.boltRadius);
      }
      const dAng = Math.atan2(Math.sin(phi - g.notchAngle), Math.cos(phi - g.notchAngle));
      const lateral = Math.abs(r * Math.sin(dAng));
      const inNotch = Math.cos(dAng) > 0 ? Math.min(g.notchHalfWidth - lateral, r - (g.R - g.notchDepth)) : -1;
      const notchCov = 1 - cover(inNotch);
      const cov = disc * boreCov * boltCov * notchCov;

      // Turned face: bow-tie reflection, radial fall-off, concentric tool marks, a groove.
      let shade =
        0.64 *
        (1 + 0.16 * Math.cos(2 * (phi - p.specularAngle))) *
        (1 - 0.1 * rn * rn) *
        (1 +
          0.035 * Math.sin((2 * Math.PI * r) / period1 + p.markPhase1) +
          0.02 * Math.sin((2 * Math.PI * r) / period2 + p.markPhase2));
      const grooveD = Math.abs(r - g.groove) - g.grooveHalfWidth;
      shade *= 1 - 0.3 * cover(-grooveD);
      // Chamfers catch the light on one side and fall into shadow on the other.
      const lit = Math.cos(phi - p.lightAngle);
      if (r > g.R - g.rimChamfer) shade = 0.5 - 0.3 * lit;
      if (r < g.bore + g.boreChamfer) shade = 0.52 + 0.3 * lit;
      if (boltDist < g.boltRadius + g.boltChamfer) shade = 0.82;
      shade *= light;

      // Holes inside the part look deeper (darker) than the open fixture around it.
      const behind = fix * (1 - 0.45 * disc);
      metal[i] = cov;
      for (let c = 0; c < 3; c++) {
        fixture[i * 3 + c] = fix * FIXTURE_RGB[c]!;
        rgb[i * 3 + c] = behind * FIXTURE_RGB[c]! * (1 - cov) + shade * METAL_RGB[c]! * cov;
      }
      const onFace =
        r > g.bore + g.boreChamfer + 0.05 * g.R &&
        r < g.R - g.rimChamfer - 0.05 * g.R &&
        boltDist > g.boltRadius + g.boltChamfer + 0.04 * g.R &&
        !(Math.cos(dAng) > 0 && lateral < g.notchHalfWidth + 0.05 * g.R && r > g.R - g.notchDepth - 0.05 * g.R);
      face[i] = onFace ? 1 : 0;
    }
  }
  return { params: p, rgb, fixture, metal, face };
}

// ---------------------------------------------------------------------------------------------------
// Defects. Each returns the mask of the pixels it modified; it never writes outside that mask, and the
// change inside is large enough to survive quantisation.

/** A point on the face, at least `margin` px from the face's inner and outer borders. */
function facePoint(rng: Rng, scene: PartScene, margin: number): [number, number] {
  const g = geometry(scene.params);
  const S = scene.params.size;
  for (let attempt = 0; attempt < 200; attempt++) {
    const a = rng.uniform(-Math.PI, Math.PI);
    const r = rng.uniform(g.bore + g.boreChamfer + 0.05 * g.R + margin, g.R - g.rimChamfer - 0.05 * g.R - margin);
    const x = scene.params.cx + r * Math.cos(a);
    const y = scene.params.cy + r * Math.sin(a);
    const xi = Math.floor(x);
    const yi = Math.floor(y);
    if (xi >= 0 && yi >= 0 && xi < S && yi < S && scene.face[yi * S + xi]) return [x, y];
  }
  return [scene.params.cx + 0.4 * g.R, scene.params.cy];
}

function distToSegment(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const vx = bx - ax;
  const vy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy || 1)));
  return Math.sqrt((px - ax - t * vx) ** 2 + (py - ay - t * vy) ** 2);
}

function scratch(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
  const { size: S, cx, cy } = scene.params;
  const g = geometry(scene.params);
  const mask = new Uint8Array(S * S);
  const halfWidth = (rng.uniform(0.5, 1.1) * S) / 256;
  const bright = rng.next() < 0.6;
  const strength = rng.uniform(0.75, 1);
  let dist: (x: number, y: number) => number;
  if (rng.next() < 0.5) {
    // Straight segment, e.g. dragged across by a burr.
    const [ax, ay] = facePoint(rng, scene, 0);
    const len = rng.uniform(0.12, 0.32) * S;
    const dir = rng.uniform(-Math.PI, Math.PI);
    const bx = ax + len * Math.cos(dir);
    const by = ay + len * Math.sin(dir);
    dist = (x, y) => distToSegment(x, y, ax, ay, bx, by);
  } else {
    // Arc around the centre, e.g. a tool mark from a re-clamped part.
    const ra = rng.uniform(g.bore + g.boreChamfer + 0.12 * g.R, g.R - g.rimChamfer - 0.12 * g.R);
    const a0 = rng.uniform(-Math.PI, Math.PI);
    const span = rng.uniform(0.35, 1.1);
    const end = (a: number) => [cx + ra * Math.cos(a), cy + ra * Math.sin(a)] as const;
    const [e0x, e0y] = end(a0);
    const [e1x, e1y] = end(a0 + span);
    dist = (x, y) => {
      const a = Math.atan2(y - cy, x - cx);
      const rel = (((a - a0) % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI);
      if (rel <= span) return Math.abs(Math.sqrt((x - cx) ** 2 + (y - cy) ** 2) - ra);
      return Math.min(Math.sqrt((x - e0x) ** 2 + (y - e0y) ** 2), Math.sqrt((x - e1x) ** 2 + (y - e1y) ** 2));
    };
  }
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const i = y * S + x;
      if (!scene.face[i]) continue;
      const d = dist(x + 0.5, y + 0.5);
      if (d > halfWidth + 0.5) continue;
      // Full strength on the centre line, at least 60 % at the pixel-coverage edge.
      const k = strength * (1 - 0.4 * Math.min(1, d / (halfWidth + 0.5)));
      mask[i] = 1;
      for (let c = 0; c < 3; c++) {
        const v = rgb[i * 3 + c]!;
        rgb[i * 3 + c] = bright ? v + k * Math.max(30, 250 - v) * 0.6 : v * (1 - 0.55 * k);
      }
    }
  }
  return mask;
}

function dent(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
  const { size: S, lightAngle } = scene.params;
  const mask = new Uint8Array(S * S);
  const a = rng.uniform(0.02, 0.045) * S;
  const b = a * rng.uniform(0.55, 1);
  const [ex, ey] = facePoint(rng, scene, a);
  const psi = rng.uniform(0, Math.PI);
  const cosP = Math.cos(psi);
  const sinP = Math.sin(psi);
  const concave = rng.next() < 0.7;
  for (let y = Math.max(0, Math.floor(ey - a - 1)); y < Math.min(S, Math.ceil(ey + a + 1)); y++) {
    for (let x = Math.max(0, Math.floor(ex - a - 1)); x < Math.min(S, Math.ceil(ex + a + 1)); x++) {
      const i = y * S + x;
      if (!scene.face[i]) continue;
      const dx = x + 0.5 - ex;
      const dy = y + 0.5 - ey;
      const u = (dx * cosP + dy * sinP) / a;
      const v = (-dx * sinP + dy * cosP) / b;
      const q = u * u + v * v;
      if (q > 1) continue;
      mask[i] = 1;
      // The wall facing the light is lit, the other one shaded; the floor is darker (concave) or
      // brighter (a bump). The base term keeps every pixel at least ~10 % off the clean value.
      const toward = Math.max(-1, Math.min(1, (dx * Math.cos(lightAngle) + dy * Math.sin(lightAngle)) / a));
      const depth = Math.sqrt(1 - q);
      for (let c = 0; c < 3; c++) {
        const val = rgb[i * 3 + c]!;
        rgb[i * 3 + c] = concave
          ? val * (0.7 - 0.12 * depth) + 0.12 * val * toward
          : Math.min(252, val * (1.32 + 0.1 * depth) - 0.14 * val * toward);
      }
    }
  }
  return mask;
}

function chip(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
  const { size: S, cx, cy } = scene.params;
  const g = geometry(scene.params);
  const mask = new Uint8Array(S * S);
  // Keep away from the index notch so the chip reads as damage, not as the notch.
  let alpha = g.notchAngle + rng.uniform(0.5, 2 * Math.PI - 0.5);
  const half = (rng.uniform(0.045, 0.075) * S) / g.R;
  const depth = rng.uniform(0.04, 0.085) * S;
  const tilt = rng.uniform(-0.4, 0.4) * half;
  alpha = Math.atan2(Math.sin(alpha), Math.cos(alpha));
  const polar = (a: number, r: number) => [cx + r * Math.cos(a), cy + r * Math.sin(a)] as const;
  const p1 = polar(alpha - half, 1.2 * g.R);
  const p2 = polar(alpha + half, 1.2 * g.R);
  const apex = polar(alpha + tilt, g.R - depth);
  // Rough fracture edges: the two inner sides wobble by about a pixel.
  const f1 = rng.uniform(0.3, 0.6);
  const f2 = rng.uniform(0.3, 0.6);
  const ph1 = rng.uniform(0, 2 * Math.PI);
  const ph2 = rng.uniform(0, 2 * Math.PI);
  const side = (ax: number, ay: number, bx: number, by: number, x: number, y: number) => {
    const nx = -(by - ay);
    const ny = bx - ax;
    return ((x - ax) * nx + (y - ay) * ny) / Math.sqrt((nx) ** 2 + (ny) ** 2);
  };
  const orient = Math.sign(side(apex[0], apex[1], p1[0], p1[1], p2[0], p2[1]));
  const edgeRgb = [0, 1, 2].map((c) => 0.9 * METAL_RGB[c]!);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const i = y * S + x;
      if (scene.metal[i]! < 0.5) continue;
      const px = x + 0.5;
      const py = y + 0.5;
      const d1 = orient * side(apex[0], apex[1], p1[0], p1[1], px, py) + Math.sin(px * f1 + py * f2 + ph1);
      const d2 = -orient * side(apex[0], apex[1], p2[0], p2[1], px, py) + Math.sin(py * f1 - px * f2 + ph2);
      const d3 = orient * side(p1[0], p1[1], p2[0], p2[1], px, py);
      // Inside the triangle: on the interior side of all three edges (same orientation as the apex).
      if (!(d1 > 0 && d2 > 0 && d3 > 0)) continue;
      mask[i] = 1;
      // A bright fractured rim along the break, the fixture showing through the rest.
      const rim = Math.min(d1, d2) < 1.3;
      for (let c = 0; c < 3; c++) {
        const clean = rgb[i * 3 + c]!;
        const target = rim ? Math.min(250, Math.max(clean + 40, edgeRgb[c]!)) : scene.fixture[i * 3 + c]!;
        rgb[i * 3 + c] = Math.abs(target - clean) < 20 ? clean + (target >= clean ? 25 : -25) : target;
      }
    }
  }
  return mask;
}

function contamination(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
  const S = scene.params.size;
  const mask = new Uint8Array(S * S);
  const r0 = rng.uniform(0.02, 0.05) * S;
  const [bx, by] = facePoint(rng, scene, r0);
  const harmonics = [2, 3, 4, 5, 7].map((k) => ({ k, a: rng.uniform(0, 0.32) / Math.sqrt(k), p: rng.uniform(0, 2 * Math.PI) }));
  const palettes: [number, number, number][] = [
    [62, 44, 28], // oil / grease
    [138, 66, 30], // rust
    [40, 40, 44], // soot
    [96, 112, 52], // coolant residue
  ];
  const colour = palettes[rng.int(palettes.length)]!;
  const alpha = rng.uniform(0.7, 0.92);
  const m1 = rng.uniform(0.2, 0.5);
  const m2 = rng.uniform(0.2, 0.5);
  const reach = r0 * 2;
  for (let y = Math.max(0, Math.floor(by - reach)); y < Math.min(S, Math.ceil(by + reach)); y++) {
    for (let x = Math.max(0, Math.floor(bx - reach)); x < Math.min(S, Math.ceil(bx + reach)); x++) {
      const i = y * S + x;
      if (!scene.face[i]) continue;
      const dx = x + 0.5 - bx;
      const dy = y + 0.5 - by;
      const phi = Math.atan2(dy, dx);
      let edge = r0;
      for (const h of harmonics) edge += r0 * h.a * Math.cos(h.k * phi + h.p);
      if (Math.sqrt((dx) ** 2 + (dy) ** 2) > edge) continue;
      mask[i] = 1;
      // Mottled thickness, never below 75 % of the blob's opacity.
      const a = alpha * (0.85 + 0.15 * Math.sin(x * m1) * Math.cos(y * m2));
      for (let c = 0; c < 3; c++) {
        const v = rgb[i * 3 + c]!;
        rgb[i * 3 + c] = v * (1 - a) + colour[c]! * a;
      }
    }
  }
  return mask;
}

const DEFECTS: Record<SyntheticDefectType, (rng: Rng, scene: PartScene, rgb: Float32Array) => Uint8Array> = {
  scratch,
  dent,
  chip,
  contamination,
};

/** Adds the sample's sensor noise (its own PRNG stream) and rounds to 8 bits. */
function quantise(rgb: Float32Array, noiseRng: Rng): Uint8Array {
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < rgb.length; i += 3) {
    const lum = 1.3 * noiseRng.normal();
    for (let c = 0; c < 3; c++) {
      const v = Math.round(rgb[i + c]! + lum + 0.6 * noiseRng.normal());
      out[i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/**
 * Renders one sample without touching the disk: `split`/`label`/`index` name it exactly as in the
 * generated dataset (e.g. 'test', 'scratch', 3 → test/scratch/003.png). Only `seed` and `size` of `opts`
 * matter. Returns the image, the clean part under it and, for defects, the exact mask.
 */
export function renderSyntheticSample(
  split: 'train' | 'test',
  label: 'good' | SyntheticDefectType,
  index: number,
  opts: SyntheticOptions = {},
): SyntheticSample {
  const o = resolveSyntheticOptions(opts);
  if (split === 'train' && label !== 'good') {
    throw new PartscanError('OPTIONS', `Synthetic training samples are good parts; got label '${label}'.`, {
      remedy: "use split 'test' for defect samples",
    });
  }
  if (label !== 'good' && !(SYNTHETIC_DEFECT_TYPES as readonly string[]).includes(label)) {
    throw new PartscanError('OPTIONS', `Unknown synthetic defect type '${String(label)}'.`, {
      remedy: `use one of ${SYNTHETIC_DEFECT_TYPES.join(', ')}`,
    });
  }
  const key = `${split}/${label}/${index}`;
  const scene = renderPart(drawPart(makeRng(o.seed, `part:${key}`), o.size));
  const clean = quantise(scene.rgb, makeRng(o.seed, `noise:${key}`));
  if (label === 'good') return { width: o.size, height: o.size, image: clean, clean };
  const rgb = scene.rgb.slice();
  const mask = DEFECTS[label](makeRng(o.seed, `defect:${key}`), scene, rgb);
  const image = quantise(rgb, makeRng(o.seed, `noise:${key}`));
  return { width: o.size, height: o.size, image, clean, mask };
}

// ---------------------------------------------------------------------------------------------------
// Writing the dataset

interface Manifest {
  generator: 'partscan-synthetic';
  version: number;
  complete: boolean;
  options: Required<SyntheticOptions>;
  counts: Record<string, number>;
  files: { path: string; bytes: number }[];
}

async function readManifest(file: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await fs.readFile(file, 'utf8')) as Manifest;
    return m && m.generator === 'partscan-synthetic' ? m : undefined;
  } catch {
    return undefined;
  }
}

async function isCompleteSet(root: string, m: Manifest, o: Required<SyntheticOptions>): Promise<boolean> {
  if (!m.complete || m.version !== GENERATOR_VERSION) return false;
  if (JSON.stringify(m.options) !== JSON.stringify(o)) return false;
  for (const f of m.files) {
    const st = await fs.stat(path.join(root, f.path)).catch(() => undefined);
    if (!st || !st.isFile() || st.size !== f.bytes) return false;
  }
  return true;
}

const pad3 = (i: number) => String(i).padStart(3, '0');

/**
 * Writes a synthetic dataset in MVTec AD layout under `outDir`: train/good/NNN.png,
 * test/<good|scratch|dent|chip|contamination>/NNN.png and ground_truth/<type>/NNN_mask.png (0/255,
 * single channel). Idempotent: when `outDir` already holds a complete set generated with the same
 * options (checked through `partscan-synthetic.json`, written last), nothing is rewritten. A set made
 * with other options is replaced; a non-empty folder that is not a generated set is refused.
 * Returns the absolute root and image counts per folder ('train/good', 'test/good', 'test/scratch', ...).
 * @throws PartscanError 'OPTIONS' (bad options), 'OUTPUT' (cannot write), 'DATASET' (foreign folder).
 */
export async function generateSyntheticParts(
  outDir: string,
  opts: SyntheticOptions = {},
): Promise<{
  /** Absolute root of the dataset. */
  root: string;
  /** Images per folder ('train/good', 'test/good', 'test/scratch', ...). */
  counts: Record<string, number>;
}> {
  const o = resolveSyntheticOptions(opts);
  const root = path.resolve(outDir);
  const manifestPath = path.join(root, SYNTHETIC_MANIFEST);
  const counts: Record<string, number> = { 'train/good': o.nTrain, 'test/good': o.nTestGood };
  for (const t of SYNTHETIC_DEFECT_TYPES) counts[`test/${t}`] = o.nPerDefect;

  const previous = await readManifest(manifestPath);
  if (previous && (await isCompleteSet(root, previous, o))) return { root, counts };
  await ensureOutputDir(root);
  if (previous) {
    // Our own earlier (other options, or interrupted) set: clear it so no stale images remain.
    for (const d of ['train', 'test', 'ground_truth']) await fs.rm(path.join(root, d), { recursive: true, force: true });
  } else {
    const existing = (await fs.readdir(root)).filter((n) => !n.startsWith('.'));
    if (existing.length > 0) {
      throw new PartscanError(
        'DATASET',
        `Refusing to generate synthetic parts into ${root}: the folder is not empty and is not a generated set.`,
        { file: root, remedy: 'choose an empty or new folder' },
      );
    }
  }

  const manifest: Manifest = {
    generator: 'partscan-synthetic',
    version: GENERATOR_VERSION,
    complete: false,
    options: o,
    counts,
    files: [],
  };
  await writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');

  const jobs: { split: 'train' | 'test'; label: 'good' | SyntheticDefectType; index: number }[] = [];
  for (let i = 0; i < o.nTrain; i++) jobs.push({ split: 'train', label: 'good', index: i });
  for (let i = 0; i < o.nTestGood; i++) jobs.push({ split: 'test', label: 'good', index: i });
  for (const t of SYNTHETIC_DEFECT_TYPES) for (let i = 0; i < o.nPerDefect; i++) jobs.push({ split: 'test', label: t, index: i });

  const madeDirs = new Set<string>();
  const write = async (rel: string, data: Uint8Array) => {
    const abs = path.join(root, rel);
    const dir = path.dirname(abs);
    if (!madeDirs.has(dir)) {
      await ensureOutputDir(dir);
      madeDirs.add(dir);
    }
    await writeFileAtomic(abs, data);
    manifest.files.push({ path: rel.split(path.sep).join('/'), bytes: data.length });
  };
  for (const job of jobs) {
    const s = renderSyntheticSample(job.split, job.label, job.index, o);
    const raw = { width: s.width, height: s.height };
    const png = await sharp(s.image, { raw: { ...raw, channels: 3 } }).png().toBuffer();
    await write(path.join(job.split, job.label, `${pad3(job.index)}.png`), png);
    if (s.mask) {
      const m = new Uint8Array(s.mask.length);
      for (let i = 0; i < m.length; i++) m[i] = s.mask[i] ? 255 : 0;
      const maskPng = await sharp(m, { raw: { ...raw, channels: 1 } }).toColourspace('b-w').png().toBuffer();
      await write(path.join('ground_truth', job.label, `${pad3(job.index)}_mask.png`), maskPng);
    }
  }
  manifest.complete = true;
  await writeFileAtomic(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  return { root, counts };
}
