// The Streamlit component's entry (ui/scatter.py): draws the points it is given with scatter.js's
// `build`, sends the selection and a click back as the component's state and trigger, and applies
// the highlight and ring that `explorer_scatter_control` sends.

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const root = parentElement.querySelector(".explorer-scatter");
  if (!root || !data) return;
  const received = performance.now();
  const points = unpack(data);
  const instance = points.head.instance;
  const prev = REGISTRY.get(instance);
  if (prev && prev.digest === points.head.digest && prev.root === root) return; // same points: nothing to redraw
  if (prev && prev.state) prev.state.dispose();
  const entry = { digest: points.head.digest, root, state: null };
  REGISTRY.set(instance, entry);
  try {
    entry.state = build(root, points, setStateValue, setTriggerValue);
  } catch (err) {
    root.textContent = "The projection chart could not be drawn: " + err.message;
    return;
  }
  entry.state.times.received = received;
  entry.state.times.drawn = performance.now();
  const prevTimes = (window.__explorerTimes || {})[instance] || {};
  window.__explorerTimes = { ...(window.__explorerTimes || {}), [instance]: entry.state.times };
  entry.state.times.builds = (prevTimes.builds || 0) + 1;
  const cmd = window.__explorerScatterCommands && window.__explorerScatterCommands.get(instance);
  if (cmd) applyCommand(entry.state, cmd);
  return () => {
    if (REGISTRY.get(instance) === entry) REGISTRY.delete(instance);
    if (entry.state) entry.state.dispose();
  };
}

// Commands from `explorer_scatter_control` (scatter.py): { instance, highlight?: [indices] | null,
// picked: index | null }; the last one per instance is applied again after a redraw. A highlight
// equal to what is shown (the selection Python just got back) redraws nothing.
function applyCommand(st, cmd) {
  if (cmd.highlight !== undefined) st.applySelection(cmd.highlight);
  if (cmd.picked !== undefined && cmd.picked !== st.picked) st.applyPick(cmd.picked);
}

window.__explorerScatterControl = (cmd) => {
  const entry = REGISTRY.get(cmd.instance);
  if (!entry || !entry.state) return;
  applyCommand(entry.state, cmd);
};
