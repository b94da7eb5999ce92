// The projection view's spatial index (part of scatter.js's module; scatter.py joins the files): a
// uniform grid over one panel's points for lasso, box and nearest-point queries.

function buildGrid(xy, n) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) y1 = y0 + 1;
  const G = Math.max(8, Math.min(1024, Math.round(Math.sqrt(n / 4))));
  const cw = (x1 - x0) / G, ch = (y1 - y0) / G;
  const cellOf = (i) => Math.min(G - 1, Math.floor((xy[2 * i] - x0) / cw)) + G * Math.min(G - 1, Math.floor((xy[2 * i + 1] - y0) / ch));
  const start = new Uint32Array(G * G + 1);
  for (let i = 0; i < n; i++) start[cellOf(i) + 1]++;
  for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
  const fill = start.slice(0, G * G);
  const items = new Uint32Array(n);
  for (let i = 0; i < n; i++) items[fill[cellOf(i)]++] = i;
  const clampCell = (v, lo, size) => Math.max(0, Math.min(G - 1, Math.floor((v - lo) / size)));
  // every point in the cells that meet [ax, bx] x [ay, by], passed to visit(i)
  const range = (ax, ay, bx, by, visit) => {
    const cx0 = clampCell(ax, x0, cw), cx1 = clampCell(bx, x0, cw), cy0 = clampCell(ay, y0, ch), cy1 = clampCell(by, y0, ch);
    for (let cy = cy0; cy <= cy1; cy++) for (let cx = cx0; cx <= cx1; cx++) {
      const c = cx + G * cy;
      for (let j = start[c]; j < start[c + 1]; j++) visit(items[j]);
    }
  };
  // the points inside a polygon (flat x, y arrays in data units), pushed to out: a cell that no edge
  // crosses is wholly in or out (one test of its centre); only the points of the cells the outline
  // crosses are tested one by one
  const polygon = (px, py, out, xy) => {
    const m = px.length;
    let ax = Infinity, ay = Infinity, bx = -Infinity, by = -Infinity;
    for (let a = 0; a < m; a++) { ax = Math.min(ax, px[a]); bx = Math.max(bx, px[a]); ay = Math.min(ay, py[a]); by = Math.max(by, py[a]); }
    const cx0 = clampCell(ax, x0, cw), cx1 = clampCell(bx, x0, cw), cy0 = clampCell(ay, y0, ch), cy1 = clampCell(by, y0, ch);
    const bw = cx1 - cx0 + 1, bh = cy1 - cy0 + 1;
    const edge = new Uint8Array(bw * bh);
    // each edge sampled at most a cell apart; a cell it touches is within one cell of a sample
    const step = Math.min(cw, ch);
    for (let a = 0, b = m - 1; a < m; b = a++) {
      const len = Math.hypot(px[a] - px[b], py[a] - py[b]);
      const k = Math.max(1, Math.ceil(len / step));
      for (let s = 0; s <= k; s++) {
        const x = px[b] + ((px[a] - px[b]) * s) / k, y = py[b] + ((py[a] - py[b]) * s) / k;
        const gx = clampCell(x, x0, cw) - cx0, gy = clampCell(y, y0, ch) - cy0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
          const ex = gx + dx, ey = gy + dy;
          if (ex >= 0 && ex < bw && ey >= 0 && ey < bh) edge[ey * bw + ex] = 1;
        }
      }
    }
    for (let cy = cy0; cy <= cy1; cy++) for (let cx = cx0; cx <= cx1; cx++) {
      const c = cx + G * cy;
      if (start[c] === start[c + 1]) continue;
      if (edge[(cy - cy0) * bw + (cx - cx0)]) {
        for (let j = start[c]; j < start[c + 1]; j++) {
          const i = items[j];
          if (insideFlat(xy[2 * i], xy[2 * i + 1], px, py)) out.push(i);
        }
      } else if (insideFlat(x0 + (cx + 0.5) * cw, y0 + (cy + 0.5) * ch, px, py)) {
        for (let j = start[c]; j < start[c + 1]; j++) out.push(items[j]);
      }
    }
    return out;
  };
  return { range, polygon, bounds: [x0, y0, x1, y1] };
}

// the indices in [0, n), each once, ascending, as a Uint32Array (a typed sort: ~10x a comparator's speed)
function uniqueSorted(indices, n) {
  const out = new Uint32Array(indices.length);
  let m = 0;
  for (const i of indices) if (i >= 0 && i < n) out[m++] = i;
  const sorted = out.subarray(0, m).sort();
  let u = 0;
  for (let j = 0; j < m; j++) if (j === 0 || sorted[j] !== sorted[j - 1]) sorted[u++] = sorted[j];
  return sorted.slice(0, u);
}

function insideFlat(x, y, px, py) {
  let inside = false;
  for (let a = 0, b = px.length - 1; a < px.length; b = a++) {
    const ya = py[a], yb = py[b];
    if ((ya > y) !== (yb > y) && x < ((px[b] - px[a]) * (y - ya)) / (yb - ya) + px[a]) inside = !inside;
  }
  return inside;
}
