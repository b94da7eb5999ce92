// The projection view's points (part of scatter.js's module; scatter.py joins the files): the blob
// from scatter.py `pack`, the fixed drawing order, and the drawing itself.

function unpack(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headLen = view.getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headLen)));
  let at = head.data_offset;
  const take = (count, Type) => {
    const out = new Type(count);
    new Uint8Array(out.buffer).set(bytes.subarray(at, at + count * Type.BYTES_PER_ELEMENT));
    at += count * Type.BYTES_PER_ELEMENT;
    return out;
  };
  const P = head.panels.length;
  const coords = head.panels.map(() => take(head.n * 2, Float32Array));
  const codes = [];
  for (let r = 0; r < (head.codes_per_panel ? P : 1); r++) codes.push(take(head.n, Uint16Array));
  const truth = head.has_truth ? take(head.n, Uint16Array) : null;
  const predicted = [];
  if (head.has_predicted) for (let k = 0; k < P; k++) predicted.push(take(head.n, Uint16Array));
  const names = head.names_bytes ? new TextDecoder().decode(bytes.subarray(at, at + head.names_bytes)).split("\n") : null;
  return { head, coords, codes, truth, predicted, names };
}

// the drawing order: a fixed permutation (mulberry32, seed 1), so the picture is the same every visit
function drawOrder(n) {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let s = 1 >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  return order;
}

// Each panel's positions (x, y per point) and each row of colour codes' colours (r, g, b per point)
// in the drawing order, and rank[i]: where image i sits in it.
function inDrawingOrder(coords, codes, palette, n) {
  const order = drawOrder(n);
  const rank = new Uint32Array(n);
  for (let j = 0; j < n; j++) rank[order[j]] = j;
  const rgbOf = palette.map(parseColor);
  const posArr = coords.map((xy) => {
    const out = new Float32Array(2 * n);
    for (let j = 0; j < n; j++) { out[2 * j] = xy[2 * order[j]]; out[2 * j + 1] = xy[2 * order[j] + 1]; }
    return out;
  });
  const colArr = codes.map((row) => {
    const out = new Uint8Array(3 * n);
    for (let j = 0; j < n; j++) {
      const c = rgbOf[row[order[j]]] || [120, 120, 120];
      out[3 * j] = c[0]; out[3 * j + 1] = c[1]; out[3 * j + 2] = c[2];
    }
    return out;
  });
  return { rank, posArr, colArr };
}

function parseColor(css) {
  const m = /^#([0-9a-f]{6})$/i.exec(css.trim());
  if (m) { const v = parseInt(m[1], 16); return [v >> 16, (v >> 8) & 255, v & 255]; }
  const r = /rgba?\(([^)]+)\)/.exec(css);
  if (r) return r[1].split(",").slice(0, 3).map((x) => Math.round(parseFloat(x)));
  return [120, 120, 120];
}

// ---- drawing: points splatted into each panel's pixels in JavaScript ----------------------------
//
// Measured in headless chromium on 2 cores (software WebGL, as on any machine without a GPU for the
// browser): 8 panels x 100,000 points cost 0.5-0.75 s per WebGL drawing and ~0.4 s for a large
// selection's highlight, against 75-130 ms and 50-80 ms written straight into the pixels here
// (docs/benchmarks.md).
// A point is a square of `size` pixels (a disc from 4 up), alpha-blended over what is there.

// Blend the points order[from..to) (indices into the panel's drawing order) into rgb, a W x H x 3
// Float32Array of colours in 0..1. pos: x, y per point in drawing order; col: r, g, b (0..255) per
// point in drawing order, or null for grey. t: data -> pixel transform.
function splat(rgb, W, H, pos, col, ranks, count, t, size, alpha) {
  const half = size / 2, na = 1 - alpha;
  const disc = size >= 4;
  const r2 = half * half;
  const grey = 0.72 * alpha;
  for (let j = 0; j < count; j++) {
    const q = ranks ? ranks[j] : j;
    const cx = pos[2 * q] * t.sx + t.ox, cy = pos[2 * q + 1] * t.sy + t.oy;
    const x0 = Math.round(cx - half), y0 = Math.round(cy - half);
    if (x0 >= W || y0 >= H || x0 + size <= 0 || y0 + size <= 0) continue;
    let r = grey, g = grey, b = grey;
    if (col) { r = (col[3 * q] / 255) * alpha; g = (col[3 * q + 1] / 255) * alpha; b = (col[3 * q + 2] / 255) * alpha; }
    for (let dy = 0; dy < size; dy++) {
      const y = y0 + dy;
      if (y < 0 || y >= H) continue;
      let o = (y * W + x0) * 3;
      for (let dx = 0; dx < size; dx++, o += 3) {
        const x = x0 + dx;
        if (x < 0 || x >= W) continue;
        if (disc) { const ex = dx + 0.5 - half, ey = dy + 0.5 - half; if (ex * ex + ey * ey > r2) continue; }
        rgb[o] = r + rgb[o] * na;
        rgb[o + 1] = g + rgb[o + 1] * na;
        rgb[o + 2] = b + rgb[o + 2] * na;
      }
    }
  }
}

function toImage(rgb, image) {
  const d = image.data;
  for (let p = 0, q = 0, m = d.length; p < m; p += 4, q += 3) {
    d[p] = rgb[q] * 255; d[p + 1] = rgb[q + 1] * 255; d[p + 2] = rgb[q + 2] * 255; d[p + 3] = 255;
  }
  return image;
}
