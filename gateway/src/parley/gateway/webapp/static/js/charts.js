// Bar charts as inline SVG: no chart library, nothing to download. Each bar has a <title>, and
// every chart has a text alternative, so the figures are readable without seeing the bars.
import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

// items: [{label, value, parts?: [{name, value}]}]; stacked when `parts` is given.
export function bars(items, { title, unit = "", max, format = (v) => `${+v.toFixed(2)} ${unit}`, classOf } = {}) {
  const width = Math.max(items.length * 6, 300);
  const height = 120;
  const top = max || Math.max(1e-9, ...items.map((i) => i.value));
  const step = width / Math.max(items.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "bars",
    role: "img", "aria-label": `${title}: ${items.length} bars, the largest ${format(Math.max(0, ...items.map((i) => i.value)))}` });
  items.forEach((item, i) => {
    const parts = item.parts || [{ name: classOf ? classOf(item) : "value", value: item.value }];
    let y = height;
    for (const part of parts) {
      const barHeight = (part.value / top) * (height - 4);
      y -= barHeight;
      chart.append(svg("rect", { x: i * step + step * 0.1, y, width: step * 0.8, height: Math.max(barHeight, 0),
        class: `bar ${part.name}` }, svg("title", {}, `${item.label}${parts.length > 1 ? ` · ${part.label || part.name}` : ""}: ${format(part.value)}`)));
    }
  });
  return h("figure", { class: "chart" }, chart);
}

export function legend(entries) {
  return h("ul", { class: "legend" }, entries.map(([name, label]) => h("li", {}, h("span", { class: `swatch ${name}` }), label)));
}
