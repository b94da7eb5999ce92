// The projection view's grid index (explorer/output/scatter/scatter_index.js) against brute force, at sizes the
// browser tests do not reach. Run by tests/test_scatter_js.py with node's own test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const here = new URL("../../../explorer/output/scatter/", import.meta.url);
vm.runInThisContext(readFileSync(new URL("scatter_points.js", here), "utf8"));
vm.runInThisContext(readFileSync(new URL("scatter_index.js", here), "utf8"));

function points(n, seed) {
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const xy = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) { // clusters and a uniform spread: empty and crowded cells alike
    const c = i % 5;
    xy[2 * i] = c < 4 ? c * 3 + (rand() - 0.5) * (rand() * 2) : rand() * 12;
    xy[2 * i + 1] = c < 4 ? (c % 2) * 4 + (rand() - 0.5) * 3 : rand() * 8 - 2;
  }
  return { xy, rand };
}

function brute(xy, n, px, py) {
  const out = [];
  for (let i = 0; i < n; i++) if (insideFlat(xy[2 * i], xy[2 * i + 1], px, py)) out.push(i);
  return out;
}

test("a lasso through the grid selects exactly what a test of every point selects", () => {
  const n = 200000;
  const { xy, rand } = points(n, 7);
  const g = buildGrid(xy, n);
  for (let trial = 0; trial < 25; trial++) {
    const m = 3 + Math.floor(rand() * 40); // a star-shaped outline around a random centre
    const cx = rand() * 12, cy = rand() * 8 - 2, r = 0.2 + rand() * 6;
    const px = new Float64Array(m), py = new Float64Array(m);
    for (let a = 0; a < m; a++) {
      const t = (2 * Math.PI * a) / m, rr = r * (0.3 + rand());
      px[a] = cx + rr * Math.cos(t);
      py[a] = cy + rr * Math.sin(t);
    }
    const got = uniqueSorted(g.polygon(px, py, [], xy), n);
    assert.deepEqual(Array.from(got), brute(xy, n, px, py), `outline ${trial} (${m} vertices)`);
  }
});

test("range visits every point of the cells that meet a box, and no point twice", () => {
  const n = 50000;
  const { xy } = points(n, 3);
  const g = buildGrid(xy, n);
  const seen = [];
  g.range(2, 0, 7, 3, (i) => seen.push(i));
  const got = new Set(seen);
  assert.equal(got.size, seen.length);
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (x >= 2 && x <= 7 && y >= 0 && y <= 3) assert.ok(got.has(i), `point ${i} missed`);
  }
});

test("uniqueSorted keeps each index in range once, ascending", () => {
  assert.deepEqual(Array.from(uniqueSorted([5, 3, 5, -1, 9, 3, 12, 0], 10)), [0, 3, 5, 9]);
  assert.deepEqual(Array.from(uniqueSorted([], 10)), []);
});

test("the drawing order is a fixed permutation", () => {
  const a = drawOrder(1000), b = drawOrder(1000);
  assert.deepEqual(Array.from(a), Array.from(b));
  assert.deepEqual(Array.from(a).sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.notDeepEqual(Array.from(a.subarray(0, 20)), Array.from({ length: 20 }, (_, i) => i));
});

test("every panel's points and colours are put in the drawing order together", () => {
  const n = 500;
  const xy = Float32Array.from({ length: 2 * n }, (_, j) => j);
  const codes = [Uint16Array.from({ length: n }, (_, i) => i % 3)];
  const { rank, posArr, colArr } = inDrawingOrder([xy], codes, ["#ff0000", "#00ff00", "#0000ff"], n);
  for (let i = 0; i < n; i++) {
    const j = rank[i];
    assert.deepEqual([posArr[0][2 * j], posArr[0][2 * j + 1]], [2 * i, 2 * i + 1]);
    assert.deepEqual(Array.from(colArr[0].subarray(3 * j, 3 * j + 3)), [[255, 0, 0], [0, 255, 0], [0, 0, 255]][i % 3]);
  }
});
