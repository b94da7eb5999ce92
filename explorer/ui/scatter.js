// Every layer's projection in one plotly figure: one WebGL context for all panels, all points.
// The points arrive once as one binary blob (scatter.py, `pack`); selections are linked across the
// panels here in the browser and sent to Python as image indices; a picked image is ringed in every
// panel and its path through the aligned panels drawn in the last one.
// `explorer_scatter_control` (small, changes often) forwards a highlight or a pick from Python.
// Everything from the data (names, classes, titles) is set as text, never as HTML.

const REGISTRY = (window.__explorerScatter = window.__explorerScatter || new Map());

// plotly.js by URL (scatter.py picks the small bundle for SVG panels, the whole one for WebGL): each
// loads once per page; both set window.Plotly, so each promise keeps the one its script made
function loadPlotly(url) {
  const loading = (window.__explorerPlotly = window.__explorerPlotly || new Map());
  if (!loading.has(url)) {
    loading.set(url, new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = url;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => reject(new Error("could not load " + url));
      document.head.appendChild(s);
    }));
  }
  return loading.get(url);
}

function unpack(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headLen = view.getUint32(0, true);
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + headLen)));
  const copy = (offset, count, Type) => {
    const out = new Type(count);
    new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + count * Type.BYTES_PER_ELEMENT));
    return out;
  };
  let at = head.data_offset;
  const coords = head.panels.map(() => {
    const a = copy(at, head.n * head.dims, Float32Array);
    at += head.n * head.dims * 4;
    return a;
  });
  const rows = head.codes_per_panel ? head.panels.length : 1;
  const codes = [];
  for (let r = 0; r < rows; r++) {
    codes.push(copy(at, head.n, Uint16Array));
    at += head.n * 2;
  }
  const names = head.names_bytes ? new TextDecoder().decode(bytes.subarray(at, at + head.names_bytes)).split("\n") : null;
  return { head, coords, codes, names };
}

// plotly reads a subset of HTML in hover text and annotations (links included): escape it all
function esc(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

// the rows of group c of each row of codes: idx[c] (dataset indices, in order) and pos[i] (where
// image i sits in its group's trace)
function groupRows(row, nGroups) {
  const counts = new Array(nGroups).fill(0);
  for (let i = 0; i < row.length; i++) counts[row[i]]++;
  const idx = counts.map((m) => new Int32Array(m));
  const fill = new Array(nGroups).fill(0);
  const pos = new Int32Array(row.length);
  for (let i = 0; i < row.length; i++) {
    const c = row[i];
    pos[i] = fill[c];
    idx[c][fill[c]++] = i;
  }
  return { idx, pos };
}

function gather(a, dims, d, idx) {
  const out = new Float32Array(idx.length);
  for (let j = 0; j < idx.length; j++) out[j] = a[idx[j] * dims + d];
  return out;
}

function build(Plotly, root, points, setStateValue, setTriggerValue) {
  const { head, coords, codes, names } = points;
  const { n, panels, palette, legend } = head;
  const cols = Math.min(head.cols, panels.length);
  const rows = Math.ceil(panels.length / cols);
  // one trace per colour group per panel: a uniform colour per trace keeps plotly's WebGL selection
  // fast (per-point colours made restyling 8 x 100k points 2-3 s, per group 0.3 s; README)
  const G = palette.length;
  const groups = codes.map((row) => groupRows(row, G));
  // SVG draws a few thousand points sooner than a software WebGL context starts (first visit: README)
  const kind = head.svg ? "scatter" : "scattergl";
  const layout = {
    grid: { rows, columns: cols, pattern: "independent", xgap: 0.06, ygap: 0.12 },
    height: Math.max(300, rows * head.panel_height),
    margin: { l: 10, r: 10, t: 56, b: 10 }, // the top row's titles below the modebar, not under it
    dragmode: "lasso",
    hovermode: "closest",
    showlegend: false,
    annotations: [],
    paper_bgcolor: "white",
    plot_bgcolor: "white",
    uirevision: "keep",
  };
  const traces = [];
  const meta = []; // per main trace: { panel, idx }
  panels.forEach((p, k) => {
    const ax = k === 0 ? "" : String(k + 1);
    layout["xaxis" + ax] = { showticklabels: false, zeroline: false, showgrid: false };
    layout["yaxis" + ax] = { showticklabels: false, zeroline: false, showgrid: false };
    layout.annotations.push({
      text: esc(p.title), xref: "x" + ax + " domain", yref: "y" + ax + " domain", x: 0.5, y: 1.0,
      xanchor: "center", yanchor: "bottom", showarrow: false, font: { size: 12 },
    });
    const g = groups[k % groups.length];
    for (let c = 0; c < G; c++) {
      const idx = g.idx[c];
      traces.push({
        type: kind, mode: "markers", meta: "points", x: gather(coords[k], head.dims, 0, idx),
        y: gather(coords[k], head.dims, 1, idx), xaxis: "x" + ax, yaxis: "y" + ax,
        marker: { color: palette[c], size: head.marker_size, opacity: 0.8 },
        text: names ? Array.from(idx, (i) => esc(names[i]) + "<br>" + esc(legend[c])) : null,
        hoverinfo: names ? "text" : "none", unselected: { marker: { opacity: 0.06 } }, selected: { marker: { opacity: 1.0 } },
      });
      meta.push({ panel: k, idx });
    }
  });
  const nMain = traces.length;
  const nPanels = panels.length;
  // one more trace per panel for the picked image's ring, and one for its path in the last panel
  panels.forEach((p, k) => {
    const ax = k === 0 ? "" : String(k + 1);
    traces.push({ type: kind, mode: "markers", meta: "ring", x: [], y: [], xaxis: "x" + ax, yaxis: "y" + ax, hoverinfo: "skip",
      marker: { size: 16, color: "rgba(0,0,0,0)", line: { color: "black", width: 2.5 } } });
  });
  const lastAx = nPanels === 1 ? "" : String(nPanels);
  traces.push({ type: "scatter", mode: "lines+markers+text", meta: "path", x: [], y: [], xaxis: "x" + lastAx, yaxis: "y" + lastAx,
    hoverinfo: "text", textposition: "top center", textfont: { size: 10 },
    line: { color: "black", width: 1.5 }, marker: { size: 6, color: "black" } });
  const config = { displaylogo: false, responsive: true, scrollZoom: true,
    modeBarButtonsToRemove: ["toImage", "autoScale2d"] };

  root.innerHTML = "";
  const legendEl = document.createElement("div");
  legendEl.className = "explorer-legend";
  legend.forEach((name, c) => {
    const item = document.createElement("span");
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = palette[c];
    item.appendChild(dot);
    item.appendChild(document.createTextNode(name)); // text, never HTML
    legendEl.appendChild(item);
  });
  const plotEl = document.createElement("div");
  plotEl.className = "explorer-plot";
  root.appendChild(legendEl);
  root.appendChild(plotEl);

  const state = { plotEl, n, nPanels, nMain, coords, dims: head.dims, panels, selected: null, picked: null };

  state.applySelection = (indices) => {
    state.selected = indices;
    let sel = null;
    if (indices !== null) {
      sel = meta.map(() => []);
      for (let k = 0; k < nPanels; k++) {
        const row = codes[k % codes.length], g = groups[k % groups.length];
        for (const i of indices) if (i >= 0 && i < n) sel[k * G + row[i]].push(g.pos[i]);
      }
    }
    Plotly.restyle(plotEl, { selectedpoints: sel === null ? meta.map(() => null) : sel }, [...Array(nMain).keys()]);
  };
  state.applyPick = (i) => {
    state.picked = i;
    const xs = [], ys = [];
    const ringX = [], ringY = [];
    for (let k = 0; k < nPanels; k++) {
      const has = i !== null && i >= 0 && i < n;
      const x = has ? coords[k][i * head.dims] : null;
      const y = has ? coords[k][i * head.dims + 1] : null;
      ringX.push(has ? [x] : []);
      ringY.push(has ? [y] : []);
      if (has && head.aligned) { xs.push(x); ys.push(y); }
    }
    const ringIdx = [...Array(nPanels).keys()].map((k) => nMain + k);
    Plotly.restyle(plotEl, { x: ringX, y: ringY }, ringIdx);
    // the path: the image's place in each aligned panel, drawn in the last panel's coordinates
    Plotly.restyle(plotEl, { x: [xs], y: [ys], text: [xs.map((_, k) => String(k + 1))],
      hovertext: [panels.map((p) => esc(p.title))] }, [nMain + nPanels]);
  };

  const t0 = performance.now();
  Plotly.newPlot(plotEl, traces, layout, config).then(() => {
    // for benchmarks: when the points arrived (ms after navigation) and how long plotly took
    window.__explorerTimes = { ...(window.__explorerTimes || {}), [head.instance]: { ...state.times, plotly_ms: performance.now() - t0, drawn: performance.now() } };
    plotEl.setAttribute("data-drawn", String(n));
    plotEl.on("plotly_selected", (ev) => {
      if (!ev || !ev.points) return;
      const picked = new Set();
      for (const p of ev.points) if (p.curveNumber < nMain) picked.add(meta[p.curveNumber].idx[p.pointIndex]);
      const indices = Array.from(picked).sort((a, b) => a - b);
      state.selected = indices;
      // Python answers with the images and then, through the control, the highlight in the other
      // panels (scatter.py `control`): redrawing 100,000s of points holds the browser's main thread
      // (seconds in software WebGL), so it comes after the images, not before them
      window.__explorerTimes = window.__explorerTimes || {};
      (window.__explorerTimes[head.instance] = window.__explorerTimes[head.instance] || {}).selection = { event_at: performance.now() };
      setStateValue("selection", indices);
    });
    plotEl.on("plotly_deselect", () => {
      state.applySelection(null);
      setStateValue("selection", []);
    });
    plotEl.on("plotly_click", (ev) => {
      const p = ev && ev.points && ev.points.find((q) => q.curveNumber < nMain);
      if (!p) return;
      const i = meta[p.curveNumber].idx[p.pointIndex];
      state.applyPick(i);
      setTriggerValue("clicked", i);
    });
    state.ready = true;
    const cmd = window.__explorerScatterCommands && window.__explorerScatterCommands.get(head.instance);
    if (cmd) applyCommand(state, cmd);
  });
  return state;
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const root = parentElement.querySelector(".explorer-scatter");
  if (!root || !data) return;
  const received = performance.now();
  const points = unpack(data);
  const instance = points.head.instance;
  const prev = REGISTRY.get(instance);
  if (prev && prev.digest === points.head.digest && prev.root === root) return; // same points: nothing to redraw
  const entry = { digest: points.head.digest, root, state: null };
  REGISTRY.set(instance, entry);
  loadPlotly(points.head.plotly_url)
    .then((Plotly) => {
      const loaded = performance.now();
      entry.state = build(Plotly, root, points, setStateValue, setTriggerValue);
      entry.Plotly = Plotly;
      const prev = (window.__explorerTimes || {})[instance] || {};
      entry.state.times = { received, plotly_loaded: loaded, built: performance.now(), builds: (prev.builds || 0) + 1 };
    })
    .catch((err) => {
      root.textContent = "The projection chart could not be drawn: " + err.message;
    });
  return () => {
    if (REGISTRY.get(instance) === entry) REGISTRY.delete(instance);
    if (entry.state) entry.Plotly.purge(entry.state.plotEl);
  };
}

// Commands from `explorer_scatter_control` (scatter.py): { instance, highlight?: [indices] | null,
// picked: index | null }; the last one per instance is applied again after a redraw.
function applyCommand(st, cmd) {
  if (cmd.highlight !== undefined) st.applySelection(cmd.highlight);
  if (cmd.picked !== undefined) st.applyPick(cmd.picked);
}

window.__explorerScatterControl = (cmd) => {
  const entry = REGISTRY.get(cmd.instance);
  if (!entry || !entry.state || !entry.state.ready) return;
  // after this render's images (the selection's) are on the page and loaded, or 3 s: the redraw holds
  // the main thread. Streamlit may add the images after this command arrives, so wait until the
  // page's images have been complete and unchanged in number for 3 checks in a row.
  const since = performance.now();
  const small = entry.state.n * entry.state.nPanels < 200000; // a quick redraw: no need to wait
  let quiet = 0, count = -1;
  const apply = () => {
    const imgs = Array.from(document.images);
    quiet = imgs.length === count && imgs.every((img) => img.complete) ? quiet + 1 : 0;
    count = imgs.length;
    if (!small && quiet < 3 && performance.now() - since < 3000) return setTimeout(apply, 100);
    const t = performance.now();
    applyCommand(entry.state, cmd);
    const times = (window.__explorerTimes || {})[cmd.instance];
    if (times && times.selection) Object.assign(times.selection, { restyle_at: t, restyle_ms: performance.now() - t });
  };
  if (small) apply();
  else setTimeout(apply, 100);
};
