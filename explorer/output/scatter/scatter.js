// The projection panels at any size: every layer's panel, every point, splatted straight into each
// panel's pixels (a 2-D canvas; no WebGL context, so a page never runs out of them and no software
// WebGL slows a machine without a GPU), each panel redrawn alone when its view changes.
//
// - The points arrive once as one binary blob (scatter.py `pack`).
// - Drawing order: one fixed pseudo-random permutation of the images, the same in every panel, so no
//   class is drawn last over the others; opacity follows how many points share the panel's pixels.
// - Lasso / box select through a uniform grid over each panel's points (a spatial index): the lasso
//   is drawn on an overlay while the mouse moves, the points are selected once on release, every
//   panel is redrawn once, and Python gets the image indices once.
// - Hover: the nearest point under the cursor (the same grid) is ringed in every panel and its
//   thumbnail, class and prediction shown beside the cursor (thumbnails from the server's
//   thumbnail route, made lazily there; scatter.py `thumbnail_url`).
// - Click: the image is ringed in every panel, its path drawn through the aligned panels, and its
//   index sent to Python.
// - Pan / zoom per panel (wheel zooms in pan mode, or with Ctrl held), optionally linked.
// Everything from the data (names, classes, titles) is set as text, never as HTML.
//
// Test contract (kept whatever the renderer): the panels live in `.explorer-projections` (nothing
// else, rows of up to four, first layer top left); it gets data-drawn="1" once every panel is drawn
// and data-highlighted="N" once a selection of N images is shown in every panel. `debug()` on the
// registry entry's state reports what is drawn, for the browser tests.
//
// scatter.py joins scatter_points.js (the blob, the drawing order, the drawing) and
// scatter_index.js (the grid) before this file into the component's one module.

const REGISTRY = (window.__explorerScatter = window.__explorerScatter || new Map());
const MODES = [["lasso", "Lasso"], ["box", "Box"], ["pan", "Pan / zoom"]];
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; // text, never HTML
  return e;
}

// the toolbar above the panels: what a drag does, linked pan / zoom, reset, clear
function makeToolbar(aligned) {
  const toolbar = el("div", "explorer-toolbar");
  const modeButtons = {};
  for (const [mode, label] of MODES) {
    const b = el("button", "", label);
    b.type = "button";
    b.dataset.mode = mode;
    b.setAttribute("aria-pressed", String(mode === "lasso"));
    b.title = { lasso: "Drag to draw a lasso", box: "Drag to draw a box", pan: "Drag to pan, wheel to zoom" }[mode];
    modeButtons[mode] = b;
    toolbar.appendChild(b);
  }
  const linkLabel = el("label");
  const link = el("input");
  link.type = "checkbox";
  link.className = "explorer-link";
  link.checked = aligned;
  linkLabel.appendChild(link);
  linkLabel.appendChild(document.createTextNode(" link pan / zoom"));
  toolbar.appendChild(linkLabel);
  const reset = el("button", "", "Reset view");
  reset.type = "button";
  reset.dataset.action = "reset";
  const clear = el("button", "", "Clear selection");
  clear.type = "button";
  clear.dataset.action = "clear";
  toolbar.appendChild(reset);
  toolbar.appendChild(clear);
  toolbar.appendChild(el("span", "hint", "wheel: zoom in pan mode (or Ctrl + wheel); double-click: reset"));
  return { toolbar, modeButtons, link, reset, clear };
}

function makeLegend(legend, palette) {
  const legendEl = el("div", "explorer-legend");
  legend.forEach((name, c) => {
    const item = el("span");
    const dot = el("span", "dot");
    dot.style.background = palette[c];
    item.appendChild(dot);
    item.appendChild(document.createTextNode(name)); // text, never HTML
    legendEl.appendChild(item);
  });
  return legendEl;
}

function build(root, points, setStateValue, setTriggerValue) {
  const { head, coords, codes, truth, predicted, names } = points;
  const { n, panels, palette, legend } = head;
  const P = panels.length;
  const { rank, posArr, colArr } = inDrawingOrder(coords, codes, palette, n);
  let selRanks = null; // the selected images' places in the drawing order, ascending
  const grids = new Array(P).fill(null);
  const grid = (k) => grids[k] || (grids[k] = buildGrid(coords[k], n));

  // DOM: toolbar and legend above the panels; the panels alone inside .explorer-projections
  root.innerHTML = "";
  const { toolbar, modeButtons, link, reset, clear } = makeToolbar(!!head.aligned);
  const legendEl = makeLegend(legend, palette);
  const grid_el = el("div", "explorer-projections");
  const tip = el("div", "explorer-tip");
  tip.style.display = "none";
  root.appendChild(toolbar);
  root.appendChild(legendEl);
  root.appendChild(grid_el);
  root.appendChild(tip);

  const cols = Math.max(1, Math.min(head.cols, P));
  grid_el.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
  const views = panels.map(() => ({ z: 1, ux: 0, uy: 0 })); // zoom and centre, in the panel's fitted units
  const fits = coords.map((xy, k) => {
    const [x0, y0, x1, y1] = grid(k).bounds;
    return { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, sx: 2 / ((x1 - x0) * 1.06), sy: 2 / ((y1 - y0) * 1.06) };
  });
  const cells = panels.map((p, k) => {
    const cell = el("div", "explorer-panel");
    cell.dataset.panel = String(k);
    cell.appendChild(el("div", "title", p.title));
    const pts = el("canvas", "points");
    const over = el("canvas", "overlay");
    cell.appendChild(pts);
    cell.appendChild(over);
    grid_el.appendChild(cell);
    return { cell, pts, over, ctx: pts.getContext("2d"), octx: over.getContext("2d"), w: 0, h: 0 };
  });
  const dpr = Math.min(2, window.devicePixelRatio || 1);

  const state = { n, P, root: grid_el, selected: null, picked: null, hovered: null, mode: "lasso", drawn: 0, times: {} };

  function layoutCells() {
    const width = grid_el.clientWidth || root.clientWidth || 800;
    const w = Math.max(80, Math.floor((width - 10 * (cols - 1)) / cols));
    const h = head.panel_height;
    for (const c of cells) {
      c.cell.style.height = h + 16 + "px";
      if (c.w === w && c.h === h) continue;
      c.w = w; c.h = h;
      for (const cv of [c.pts, c.over]) {
        cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
        cv.style.width = w + "px"; cv.style.height = h + "px";
      }
    }
  }

  // data -> clip space: ((p - fit centre) * fit scale - u) * z
  const transform = (k) => {
    const f = fits[k], v = views[k];
    return { sx: f.sx * v.z, sy: f.sy * v.z, ox: (-f.cx * f.sx - v.ux) * v.z, oy: (-f.cy * f.sy - v.uy) * v.z };
  };
  const toScreen = (k, x, y) => {
    const t = transform(k), c = cells[k];
    return [((x * t.sx + t.ox + 1) / 2) * c.w, ((1 - (y * t.sy + t.oy)) / 2) * c.h];
  };
  const toData = (k, px, py) => {
    const t = transform(k), c = cells[k];
    return [((px / c.w) * 2 - 1 - t.ox) / t.sx, ((1 - (py / c.h) * 2) - t.oy) / t.sy];
  };

  const baseSize = head.marker_size;
  // the data -> pixel transform of panel k, its point size and opacity
  function style(k) {
    const c = cells[k], t = transform(k), W = c.pts.width, H = c.pts.height;
    const px = { sx: (t.sx * W) / 2, ox: ((t.ox + 1) * W) / 2, sy: (-t.sy * H) / 2, oy: ((1 - t.oy) * H) / 2 };
    const size = Math.max(1, Math.round(Math.min(8, baseSize * dpr * Math.min(3, Math.sqrt(views[k].z)))));
    // opacity from density: how many times the points in view would cover the panel's pixels
    const inView = n / (views[k].z * views[k].z);
    const cover = (inView * size * size) / (W * H);
    const alpha = Math.max(0.12, Math.min(0.85, 0.85 / Math.max(1, cover / 2)));
    return { W, H, px, size, alpha };
  }
  function fresh(c, W, H) {
    if (!c.rgb || c.rgb.length !== W * H * 3) { c.rgb = new Float32Array(W * H * 3); c.image = new ImageData(W, H); }
    return c.rgb;
  }
  // A selection's backdrop: every point in grey, whatever is selected, so it is drawn once per view
  // and size and kept; a new selection then draws only its own points over a copy of it.
  const viewKey = (k) => `${views[k].z},${views[k].ux},${views[k].uy},${cells[k].pts.width},${cells[k].pts.height}`;
  function backdrop(k) {
    const c = cells[k], key = viewKey(k);
    if (c.backdrop && c.backdropKey === key) return c.backdrop;
    const { W, H, px, size, alpha } = style(k);
    const b = c.backdrop && c.backdrop.length === W * H * 3 ? c.backdrop : new Float32Array(W * H * 3);
    b.fill(1);
    splat(b, W, H, posArr[k], null, null, n, px, size, Math.min(alpha, 0.18));
    c.backdrop = b;
    c.backdropKey = key;
    return b;
  }
  // made ahead while the page is idle, one panel per task (not while a gesture is drawn)
  let backdropTimer = 0;
  function prepareBackdrops() {
    clearTimeout(backdropTimer);
    const next = cells.findIndex((c, k) => !(c.backdrop && c.backdropKey === viewKey(k)));
    if (next >= 0) backdropTimer = setTimeout(() => { if (!gesture) backdrop(next); prepareBackdrops(); }, 30);
  }
  function draw(k) {
    const c = cells[k];
    const { W, H, px, size, alpha } = style(k);
    const rgb = fresh(c, W, H);
    const col = colArr[k % colArr.length];
    if (!selRanks) {
      rgb.fill(1);
      splat(rgb, W, H, posArr[k], col, null, n, px, size, alpha);
    } else {
      rgb.set(backdrop(k));
      // a few selected points a pixel larger; many at their size
      const big = selRanks.length * P < 100000 ? size + 1 : size;
      splat(rgb, W, H, posArr[k], col, selRanks, selRanks.length, px, big, Math.max(alpha, 0.85));
    }
    c.ctx.putImageData(toImage(rgb, c.image), 0, 0);
    c.drawnView = { ...views[k] };
    c.pts.style.transform = "";
    pendingDraw.delete(k);
    drawOverlay(k);
  }
  function drawAll() {
    for (let k = 0; k < P; k++) draw(k);
  }

  // the overlay: the picked image's ring and path, the hovered image's ring, the lasso or box
  let gesture = null; // { k, kind, pts: [[px, py]...] }
  function ring(ctx, x, y, r, color, width) {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.stroke();
  }
  function drawOverlay(k) {
    const c = cells[k], ctx = c.octx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, c.w, c.h);
    const xy = coords[k];
    if (state.picked !== null) {
      const [x, y] = toScreen(k, xy[2 * state.picked], xy[2 * state.picked + 1]);
      ring(ctx, x, y, 8, "black", 2.5);
      if (head.aligned && k === P - 1 && P > 1) {
        // the image's place in each aligned panel, drawn in the last panel's coordinates, numbered
        ctx.beginPath();
        const spots = coords.map((q) => toScreen(k, q[2 * state.picked], q[2 * state.picked + 1]));
        spots.forEach(([sx, sy], j) => (j ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy)));
        ctx.strokeStyle = "black";
        ctx.lineWidth = 1.5;
        ctx.stroke();
        ctx.fillStyle = "black";
        ctx.font = "10px sans-serif";
        spots.forEach(([sx, sy], j) => { ctx.fillRect(sx - 2, sy - 2, 4, 4); ctx.fillText(String(j + 1), sx + 3, sy - 3); });
      }
    }
    if (state.hovered !== null) {
      const [x, y] = toScreen(k, xy[2 * state.hovered], xy[2 * state.hovered + 1]);
      ring(ctx, x, y, 6, "#e8590c", 2);
    }
    if (gesture && gesture.k === k && gesture.pts.length > 1) {
      ctx.beginPath();
      if (gesture.kind === "box") {
        const [a, b] = [gesture.pts[0], gesture.pts[gesture.pts.length - 1]];
        ctx.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
      } else {
        gesture.pts.forEach(([x, y], j) => (j ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.closePath();
      }
      ctx.fillStyle = "rgba(76,110,245,0.08)";
      ctx.fill();
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = "#4C6EF5";
      ctx.lineWidth = 1.5;
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
  function overlays() {
    for (let k = 0; k < P; k++) drawOverlay(k);
  }

  // the selection: its places in the drawing order, one redraw of every panel
  const sameSelection = (a, b) => {
    if (a === b) return true;
    if (!a || !b || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  };
  state.applySelection = (indices) => {
    const clean = indices === null ? null : uniqueSorted(indices, n);
    if (sameSelection(clean, state.selected) && state.drawn) return false;
    state.selected = clean === null ? null : Array.from(clean);
    if (clean === null) selRanks = null;
    else {
      selRanks = new Uint32Array(clean.length);
      for (let j = 0; j < clean.length; j++) selRanks[j] = rank[clean[j]];
      selRanks.sort(); // drawn in the drawing order: no class on top among them either
    }
    const t = performance.now();
    drawAll();
    state.times.highlight_ms = performance.now() - t;
    if (clean === null) grid_el.removeAttribute("data-highlighted");
    else grid_el.setAttribute("data-highlighted", String(clean.length));
    return true;
  };
  state.applyPick = (i) => {
    state.picked = i !== null && i >= 0 && i < n ? i : null;
    overlays();
  };

  function select(indices) {
    state.applySelection(indices);
    setStateValue("selection", indices === null ? [] : state.selected);
  }

  function selectPolygon(k, poly) {
    const px = new Float64Array(poly.length), py = new Float64Array(poly.length);
    poly.forEach(([sx, sy], a) => { [px[a], py[a]] = toData(k, sx, sy); });
    return grid(k).polygon(px, py, [], coords[k]);
  }
  function selectBox(k, a, b) {
    const [ax, ay] = toData(k, Math.min(a[0], b[0]), Math.max(a[1], b[1]));
    const [bx, by] = toData(k, Math.max(a[0], b[0]), Math.min(a[1], b[1]));
    const xy = coords[k], out = [];
    grid(k).range(ax, ay, bx, by, (i) => {
      const x = xy[2 * i], y = xy[2 * i + 1];
      if (x >= ax && x <= bx && y >= ay && y <= by) out.push(i);
    });
    return out;
  }
  // the nearest point within `radius` pixels of (px, py) in panel k, or null
  function nearest(k, px, py, radius) {
    const [ax, ay] = toData(k, px - radius, py + radius), [bx, by] = toData(k, px + radius, py - radius);
    const xy = coords[k];
    let best = null, bestD = radius * radius;
    grid(k).range(ax, ay, bx, by, (i) => {
      const [sx, sy] = toScreen(k, xy[2 * i], xy[2 * i + 1]);
      const d = (sx - px) ** 2 + (sy - py) ** 2;
      if (d <= bestD) { bestD = d; best = i; }
    });
    return best;
  }
  state.pointOnScreen = (k, i) => {
    const r = cells[k].over.getBoundingClientRect();
    const [x, y] = toScreen(k, coords[k][2 * i], coords[k][2 * i + 1]);
    return [r.left + x, r.top + y];
  };
  state.backdropsReady = () => cells.every((c, k) => c.backdrop && c.backdropKey === viewKey(k));
  state.nameOf = (i) => (names ? names[i] : "image " + i);
  state.debug = () => ({
    panels: P, n, mode: state.mode, selected: state.selected ? state.selected.length : 0,
    highlightedPerPanel: cells.map(() => (selRanks ? selRanks.length : 0)), picked: state.picked, hovered: state.hovered,
    colours: codes.map((row) => Array.from(new Set(Array.from(row, (c) => palette[c])))),
    views: views.map((v) => ({ ...v })), aligned: !!head.aligned,
  });

  for (const [m, b] of Object.entries(modeButtons)) b.onclick = () => setMode(m);
  function setMode(mode) {
    state.mode = mode;
    for (const [m, b] of Object.entries(modeButtons)) b.setAttribute("aria-pressed", String(m === mode));
    for (const c of cells) c.over.style.cursor = mode === "pan" ? "grab" : "crosshair";
  }
  setMode("lasso");

  // A view change is shown at once by moving and scaling the panel's last drawing (a CSS transform,
  // cheap at any size), and drawn for real once the gesture pauses: redrawing 8 x 100,000 points
  // takes ~50-100 ms, too slow for every mouse move.
  let settle = 0;
  const pendingDraw = new Set();
  function preview(j) {
    const c = cells[j], d = c.drawnView, v = views[j];
    if (!d) return;
    const s = v.z / d.z;
    const tx = ((d.ux - v.ux) * v.z * c.w) / 2, ty = (-(d.uy - v.uy) * v.z * c.h) / 2;
    c.pts.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
  }
  function flushViews() {
    clearTimeout(settle);
    settle = 0;
    for (const j of pendingDraw) draw(j);
    pendingDraw.clear();
    prepareBackdrops();
  }
  function setView(k, v, now) {
    const targets = link.checked ? [...Array(P).keys()] : [k];
    for (const j of targets) {
      views[j] = { ...v };
      preview(j);
      drawOverlay(j);
      pendingDraw.add(j);
    }
    clearTimeout(settle);
    if (now) flushViews();
    else settle = setTimeout(flushViews, 150);
  }
  reset.onclick = () => { views.forEach((v, k) => (views[k] = { z: 1, ux: 0, uy: 0 })); flushViews(); drawAll(); };
  clear.onclick = () => select(null);

  // hover: coalesced to one query per animation frame
  let hoverAt = null, hoverFrame = 0;
  const card = hoverCard(tip, head.thumb_url, state.times);
  function showTip(i, k, clientX, clientY) {
    if (i === null) return card.hide();
    const lines = [names ? names[i] : "image " + i];
    if (truth) lines.push("class: " + legendName(head.classes, truth[i]));
    if (predicted.length) lines.push("probe (" + panels[k].title.split(" ")[0] + "): " + legendName(head.classes, predicted[k][i]));
    else if (!truth) lines.push(legend[codes[k % codes.length][i]] || "");
    card.show(`${k}:${i}`, i, lines, clientX, clientY);
  }
  function hover() {
    hoverFrame = 0;
    if (!hoverAt || gesture) return;
    const { k, px, py, clientX, clientY } = hoverAt;
    const i = nearest(k, px, py, 8);
    if (i !== state.hovered) {
      state.hovered = i;
      overlays(); // ringed in every panel
    }
    showTip(i, k, clientX, clientY);
  }

  cells.forEach((c, k) => {
    const at = (ev) => { const r = c.over.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; };
    c.over.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      c.over.setPointerCapture(ev.pointerId);
      gesture = { k, kind: state.mode, pts: [at(ev)], start: at(ev), view: { ...views[k] }, moved: false };
      state.hovered = null;
      card.hide();
    });
    c.over.addEventListener("pointermove", (ev) => {
      const p = at(ev);
      if (!gesture) {
        hoverAt = { k, px: p[0], py: p[1], clientX: ev.clientX, clientY: ev.clientY };
        if (!hoverFrame) hoverFrame = requestAnimationFrame(hover);
        return;
      }
      if (Math.hypot(p[0] - gesture.start[0], p[1] - gesture.start[1]) > 3) gesture.moved = true;
      if (gesture.kind === "pan") {
        const v = gesture.view;
        const dx = ((p[0] - gesture.start[0]) / c.w) * 2 / v.z, dy = ((p[1] - gesture.start[1]) / c.h) * 2 / v.z;
        setView(k, { z: v.z, ux: v.ux - dx, uy: v.uy + dy });
        return;
      }
      gesture.pts.push(p);
      if (!gesture.frame) gesture.frame = requestAnimationFrame(() => { if (gesture) { gesture.frame = 0; drawOverlay(k); } });
    });
    const end = (ev) => {
      if (!gesture) return;
      const g = gesture;
      gesture = null;
      if (g.frame) cancelAnimationFrame(g.frame);
      if (!g.moved) {
        drawOverlay(k);
        const p = at(ev);
        const i = nearest(k, p[0], p[1], 10);
        if (i !== null) {
          state.applyPick(i);
          setTriggerValue("clicked", i);
        }
        return;
      }
      if (g.kind === "pan") return flushViews();
      const t = performance.now();
      g.pts.push(at(ev));
      const indices = g.kind === "box" ? selectBox(k, g.start, g.pts[g.pts.length - 1]) : selectPolygon(k, g.pts);
      state.times.selection = { query_ms: performance.now() - t, released_at: t };
      drawOverlay(k);
      select(indices);
      state.times.selection.highlighted_at = performance.now();
    };
    c.over.addEventListener("pointerup", end);
    c.over.addEventListener("pointercancel", () => { gesture = null; drawOverlay(k); });
    c.over.addEventListener("pointerleave", () => {
      if (gesture) return;
      hoverAt = null;
      if (state.hovered !== null) { state.hovered = null; overlays(); }
      card.hide();
    });
    c.over.addEventListener("wheel", (ev) => {
      if (state.mode !== "pan" && !ev.ctrlKey && !ev.metaKey) return; // the page scrolls
      ev.preventDefault();
      const [px, py] = at(ev);
      const v = views[k];
      const z = Math.max(0.5, Math.min(5000, v.z * Math.exp(-ev.deltaY * 0.0015)));
      // keep the point under the cursor where it is
      const cx = (px / c.w) * 2 - 1, cy = 1 - (py / c.h) * 2;
      const fx = cx / v.z + v.ux, fy = cy / v.z + v.uy;
      setView(k, { z, ux: fx - cx / z, uy: fy - cy / z });
    }, { passive: false });
    c.over.addEventListener("dblclick", () => setView(k, { z: 1, ux: 0, uy: 0 }, true));
  });

  layoutCells();
  const t0 = performance.now();
  drawAll();
  state.drawn = 1;
  state.times.draw_ms = performance.now() - t0;
  prepareBackdrops();
  grid_el.setAttribute("data-drawn", "1");
  if (typeof ResizeObserver !== "undefined") {
    let last = grid_el.clientWidth;
    state.resize = new ResizeObserver(() => {
      if (grid_el.clientWidth === last) return;
      last = grid_el.clientWidth;
      layoutCells();
      drawAll();
      prepareBackdrops();
    });
    state.resize.observe(grid_el);
  }
  state.dispose = () => {
    if (state.resize) state.resize.disconnect();
    clearTimeout(backdropTimer);
    tip.remove();
  };
  return state;
}

// The card beside the cursor: an image's thumbnail (`thumbUrl`: a URL prefix, or a function of the
// index that gives a URL or its promise) and lines of text (set as text, never HTML),
// rebuilt only when the hovered point changes, moved with the cursor, kept on screen.
function hoverCard(tip, thumbUrl, times) {
  let shown = null, x = 0, y = 0;
  const place = () => {
    const r = tip.getBoundingClientRect();
    tip.style.left = (x + 14 + r.width > window.innerWidth ? x - 14 - r.width : x + 14) + "px";
    tip.style.top = (y + 14 + r.height > window.innerHeight ? Math.max(0, y - 14 - r.height) : y + 14) + "px";
  };
  return {
    show(key, index, lines, clientX, clientY) {
      x = clientX;
      y = clientY;
      if (key !== shown) {
        shown = key;
        tip.textContent = "";
        times.hover = { index, at: performance.now() };
        if (thumbUrl) {
          const img = el("img");
          img.alt = "";
          img.onload = () => { place(); times.hover.loaded_at = performance.now(); }; // its size is known now
          if (typeof thumbUrl === "function") { // the notebook widget: a URL made once its bytes arrive
            Promise.resolve(thumbUrl(index)).then((url) => { if (url && shown === key) img.src = url; });
          } else img.src = thumbUrl + "/" + index; // the dashboard: the server's thumbnail route
          tip.appendChild(img);
        }
        for (const line of lines) tip.appendChild(el("div", "", line));
        tip.style.display = "block";
      }
      place();
    },
    hide() {
      shown = null;
      tip.style.display = "none";
    },
  };
}

function legendName(classes, code) {
  if (!classes || code === 65535 || code >= classes.length) return "not scored";
  return classes[code];
}
