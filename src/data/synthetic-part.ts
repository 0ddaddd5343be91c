/**
 * The synthetic part itself: seeded PRNG streams, the pose / lighting / finish of one good part, and
 * its anti-aliased render (with the scene layers that defect drawing needs). Defects are drawn on top
 * in synthetic-defects.ts; synthetic.ts assembles samples and writes the dataset.
 */

import { createHash } from 'node:crypto';
import { sfc32 } from '../util/prng.js';

/** A PRNG stream: uniform [0, 1) numbers from sfc32, seeded by hashing (seed, key). */
export interface Rng {
  next(): number;
  uniform(lo: number, hi: number): number;
  normal(): number;
  int(n: number): number;
}

export function makeRng(seed: number, key: string): Rng {
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

/** Pose, lighting and finish of one part: everything that varies between good parts. */
export interface PartParams {
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

export function drawPart(rng: Rng, size: number): PartParams {
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
export function geometry(p: PartParams) {
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

export const METAL_RGB = [236, 239, 245] as const;
export const FIXTURE_RGB = [0.92, 0.97, 1.06] as const;

/** Anti-aliased coverage of a region whose signed distance (px, positive inside) is d. */
export const cover = (d: number) => (d <= -0.5 ? 0 : d >= 0.5 ? 1 : d + 0.5);

/** Scene layers of one part: the clean render plus what defects need. */
export interface PartScene {
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

export function renderPart(p: PartParams): PartScene {
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
