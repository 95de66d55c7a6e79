// Building the page from data without innerHTML: text is always text, so a document's words
// can never become markup. The one exception, search snippets, goes through `marked`.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// A snippet the API marked up: escaped text with <mark> around matched words. Rebuilt from
// its text so that only <mark> can ever come through.
export function marked(html) {
  const parsed = new DOMParser().parseFromString(`<p>${html}</p>`, "text/html").body.firstChild;
  const out = h("span");
  for (const part of parsed ? parsed.childNodes : []) {
    out.append(part.nodeName === "MARK" ? h("mark", {}, part.textContent) : document.createTextNode(part.textContent));
  }
  return out;
}

let statusTimer = 0;

// One line for the screen reader and the eye: what just happened, or what went wrong.
export function say(message, { error = false } = {}) {
  const box = document.getElementById("status");
  box.textContent = message;
  box.classList.toggle("error", error);
  box.hidden = false;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => (box.hidden = true), error ? 12_000 : 4_000);
}

export function problem(error) {
  say(error.describe ? error.describe() : String(error.message || error), { error: true });
}

export const number = new Intl.NumberFormat("en");
export const usd = (value) =>
  value === null || value === undefined
    ? "—"
    : `$${value < 0.01 && value > 0 ? value.toFixed(6) : value.toFixed(value >= 100 ? 0 : 2)}`;
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export function heading(text) {
  const title = h("h1", { tabindex: "-1" }, text);
  document.title = `${text} · Parley`;
  return title;
}
