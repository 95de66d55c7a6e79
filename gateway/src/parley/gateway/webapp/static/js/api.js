// The one way the app talks to Parley: the public /v1 API with the key from this tab's session.
// Streams (chat answers, upload progress) are read with fetch, not EventSource, because
// EventSource can neither POST nor send an Authorization header.

const KEY = "parley.apiKey";
// A single sign-on token's: when it stops working (seconds since the epoch) and who issued it.
const EXPIRES = "parley.expiresAt";
const VIA = "parley.signedInVia";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  setCredential(key);
}

// The bearer of every request: an API key, or a token from single sign-on with its expiry.
export function setCredential(token, { expiresAt = 0, via = "" } = {}) {
  sessionStorage.removeItem(EXPIRES);
  sessionStorage.removeItem(VIA);
  if (!token) return sessionStorage.removeItem(KEY);
  sessionStorage.setItem(KEY, token);
  if (expiresAt) sessionStorage.setItem(EXPIRES, String(expiresAt));
  if (via) sessionStorage.setItem(VIA, via);
}

// {via, expiresAt} when signed in with single sign-on; null for an API key.
export function signedInVia() {
  const via = sessionStorage.getItem(VIA);
  return via ? { via, expiresAt: Number(sessionStorage.getItem(EXPIRES) || 0) } : null;
}

// An error answered by the API, in its one shape: code, message and the request id to quote.
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  describe() {
    return `${this.message} (${this.code}${this.requestId ? `, request ${this.requestId}` : ""})`;
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${apiKey()}`, ...extra };
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not the API's JSON (a proxy's page): the status says enough.
  }
  const error = body && body.error ? body.error : {};
  return new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || response.statusText || "the request failed",
    error.request_id || response.headers.get("X-Request-ID") || "",
  );
}

export async function request(method, path, { json, form, signal, key } = {}) {
  const init = { method, headers: headers(), signal };
  if (key === null) delete init.headers.Authorization;
  else if (key !== undefined) init.headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response);
  return response;
}

export async function get(path, options) {
  return (await request("GET", path, options)).json();
}

export async function send(method, path, json) {
  const response = await request(method, path, { json });
  return response.status === 204 ? null : response.json();
}

// Every page of a list route, concatenated (the API's `next_page_token` paging).
export async function all(path, { pageSize = 100, limit = 5000 } = {}) {
  const items = [];
  let token = "";
  const joiner = path.includes("?") ? "&" : "?";
  do {
    const query = `${joiner}page_size=${pageSize}${token ? `&page_token=${encodeURIComponent(token)}` : ""}`;
    const page = await get(path + query);
    items.push(...page.data);
    token = page.next_page_token;
  } while (token && items.length < limit);
  return items;
}

// Server-sent events of a response body, as {event, id, data} with data parsed from JSON.
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline;
    while ((newline = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer[newline] === "\r" ? 2 : 1));
      if (line === "") {
        if (fields.data !== undefined) {
          yield { event: fields.event || "message", id: fields.id || "", data: JSON.parse(fields.data) };
        }
        fields = {};
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        fields[name] = name === "data" && fields.data !== undefined ? `${fields.data}\n${text}` : text;
      }
    }
  }
}

// Save a response body as a file (the export routes answer with Content-Disposition).
export async function download(path, fallbackName) {
  const response = await request("GET", path);
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = match ? match[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
