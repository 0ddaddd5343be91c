/**
 * Defect drawing for the synthetic parts. Each defect returns the mask of the pixels it modified; it
 * never writes outside that mask, and the change inside is large enough to survive quantisation.
 */

import { geometry, METAL_RGB, type PartScene, type Rng } from './synthetic-part.js';

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

export function scratch(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
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

export function dent(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
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

export function chip(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
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

export function contamination(rng: Rng, scene: PartScene, rgb: Float32Array): Uint8Array {
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
