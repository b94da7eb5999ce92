// The notebook widget's entry (output/widget.py, an anywidget): draws the `points` trait with
// scatter.js's `build`, keeps the two-way `selected` trait and the `clicked` trait, and asks the
// kernel for each hovered image's thumbnail once (a custom message answered with the JPEG's bytes).
// Test contract: as the dashboard's (scatter.js), and the drawn state is the element's `explorerScatter`.

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "explorer-scatter";
    el.appendChild(root);
    const urls = new Map(); // index -> object URL (null: no thumbnail)
    const waiting = new Map(); // index -> resolvers of its URL
    const onMessage = (msg, buffers) => {
      if (!msg || msg.type !== "thumbnail") return;
      const url = buffers && buffers.length ? URL.createObjectURL(new Blob([buffers[0]], { type: "image/jpeg" })) : null;
      urls.set(msg.index, url);
      for (const resolve of waiting.get(msg.index) || []) resolve(url);
      waiting.delete(msg.index);
    };
    model.on("msg:custom", onMessage);
    const thumbnail = (i) => {
      if (urls.has(i)) return urls.get(i);
      return new Promise((resolve) => {
        if (!waiting.has(i)) {
          waiting.set(i, []);
          model.send({ type: "thumbnail", index: i });
        }
        waiting.get(i).push(resolve);
      });
    };
    let state = null;
    const selected = () => {
      const s = model.get("selected");
      return s && s.length ? s : null;
    };
    const draw = () => {
      if (state) state.dispose();
      const raw = model.get("points");
      const bytes = raw instanceof DataView ? new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength) : new Uint8Array(raw);
      const points = unpack(bytes);
      points.head.thumb_url = model.get("thumbnails") ? thumbnail : null;
      const setState = (name, value) => {
        if (name !== "selection") return;
        model.set("selected", value);
        model.save_changes();
      };
      const setTrigger = (name, value) => {
        if (name !== "clicked") return;
        model.set("clicked", value);
        model.save_changes();
      };
      state = build(root, points, setState, setTrigger);
      el.explorerScatter = state; // for the browser tests: debug(), pointOnScreen(panel, index)
      state.applySelection(selected());
    };
    draw();
    model.on("change:points", draw);
    model.on("change:selected", () => state && state.applySelection(selected()));
    return () => {
      model.off("msg:custom", onMessage);
      if (state) state.dispose();
      for (const url of urls.values()) if (url) URL.revokeObjectURL(url);
    };
  },
};
