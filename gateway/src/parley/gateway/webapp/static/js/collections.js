// Collections and their documents: create, upload (drag and drop, several at once, a progress
// bar each from the document's events stream), new versions, delete.
import { all, events, get, request, send } from "./api.js";
import { h, heading, number, problem, replace, say, when } from "./dom.js";

const STAGES = ["queued", "parsing", "chunking", "indexing", "analyzing", "ready"];
const SCREENPLAY_TYPES = ["text/x-fountain", "application/x-fdx"];

export async function showCollections(page) {
  const collections = await all("/v1/collections");
  const name = h("input", { id: "collection-name", name: "name", required: true, maxlength: 200 });
  const description = h("input", { id: "collection-description", name: "description", maxlength: 2000 });
  const form = h(
    "form",
    { class: "row-form", "aria-label": "New collection" },
    h("div", {}, h("label", { for: "collection-name" }, "Name"), name),
    h("div", {}, h("label", { for: "collection-description" }, "Description"), description),
    h("button", { type: "submit" }, "Create collection"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await send("POST", "/v1/collections", {
        name: name.value.trim(),
        description: description.value.trim(),
      });
      location.hash = `#/collections/${created.id}`;
    } catch (failure) {
      problem(failure);
    }
  });
  const list = collections.length
    ? h(
        "ul",
        { class: "cards" },
        collections.map((c) =>
          h(
            "li",
            { class: "card" },
            h("h2", {}, h("a", { href: `#/collections/${c.id}` }, c.name)),
            h("p", {}, c.description || "No description."),
            h("p", { class: "hint" }, `${number.format(c.document_count)} documents · created ${when(c.created_at)}`),
          ),
        ),
      )
    : h("p", {}, "No collections yet: create one, then drop documents into it.");
  replace(page, heading("Collections"), form, list);
}

// A browser keeps at most six connections to one server; a progress stream holds one until its
// document is ready. Three at a time leaves room for the page's other calls when many files are
// dropped at once; the others wait their turn, their bars at "queued".
const WATCHERS = 3;

function limiter(size) {
  let free = size;
  const waiting = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next(release);
    else free += 1;
  };
  return {
    acquire: () =>
      new Promise((resolve) => {
        if (free > 0) {
          free -= 1;
          resolve(release);
        } else waiting.push(resolve);
      }),
  };
}

export async function showCollection(page, collectionId) {
  const collection = await get(`/v1/collections/${collectionId}`);
  const watching = limiter(WATCHERS);
  const controllers = new Set(); // progress streams to stop when the page is left
  const rows = h("tbody");
  const uploads = h("ul", { class: "uploads", "aria-label": "Uploads" });

  const table = h(
    "table",
    { class: "documents" },
    h("caption", { class: "visually-hidden" }, "Documents"),
    h(
      "thead",
      {},
      h("tr", {}, ["Title", "Type", "Status", "Version", "Chunks", "Actions"].map((t) => h("th", { scope: "col" }, t))),
    ),
    rows,
  );

  async function refresh() {
    const documents = await all(`/v1/collections/${collectionId}/documents`);
    replace(rows, documents.length ? documents.map(row) : h("tr", {}, h("td", { colspan: 6 }, "No documents yet.")));
  }

  function row(doc) {
    const isScript = SCREENPLAY_TYPES.includes(doc.content_type) || doc.analysis_state;
    // Hidden from the keyboard and screen readers: its label is the one control people use.
    const versionInput = h("input", { type: "file", class: "visually-hidden", id: `version-${doc.id}`,
      tabindex: "-1", "aria-hidden": "true" });
    versionInput.addEventListener("change", async () => {
      const [file] = versionInput.files;
      if (!file) return;
      const form = new FormData();
      form.append("file", file);
      try {
        const response = await request("PUT", `/v1/documents/${doc.id}`, { form });
        const update = await response.json();
        if (update.outcome === "unchanged") say(`${doc.title}: the same file, no new version`);
        else {
          const s = update.sections;
          say(`${doc.title}: version ${update.document.version} (${s.added} added, ${s.changed} changed, ${s.removed} removed)`);
          track(update.document, file.name);
        }
      } catch (failure) {
        problem(failure);
      }
    });
    const remove = h("button", { type: "button", class: "link danger" }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete “${doc.title}” and everything made from it?`)) return;
      try {
        await send("DELETE", `/v1/documents/${doc.id}`);
        say(`Deleted ${doc.title}`);
        await refresh();
      } catch (failure) {
        problem(failure);
      }
    });
    return h(
      "tr",
      { dataset: { documentId: doc.id } },
      h("th", { scope: "row" }, h("a", { href: `#/documents/${doc.id}` }, doc.title)),
      h("td", {}, isScript ? "screenplay" : doc.content_type),
      h("td", {}, h("span", { class: `badge ${doc.status}` }, doc.status), doc.status === "failed" ? ` ${doc.error}` : ""),
      h("td", {}, doc.version),
      h("td", {}, number.format(doc.chunk_count)),
      h(
        "td",
        { class: "actions" },
        h("label", { for: `version-${doc.id}`, class: "button-like", tabindex: "0", role: "button",
          onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), versionInput.click()) },
          "New version"),
        versionInput,
        remove,
      ),
    );
  }

  // One upload's card: its bar follows the events stream until ready or failed.
  function track(doc, fileName) {
    const bar = h("progress", { max: 100, value: 0, "aria-label": `${fileName} progress` });
    const stage = h("span", { class: "stage" }, doc.status);
    const detail = h("span", { class: "hint" });
    const item = h("li", { class: "upload", dataset: { documentId: doc.id } }, h("strong", {}, fileName), stage, bar, detail);
    uploads.prepend(item);
    const controller = new AbortController();
    controllers.add(controller);
    (async () => {
      const release = await watching.acquire();
      try {
        if (controller.signal.aborted) return;
        const response = await request("GET", `/v1/documents/${doc.id}/events`, { signal: controller.signal });
        for await (const frame of events(response)) {
          if (frame.event === "error") throw new Error(frame.data.message);
          const p = frame.data;
          const rank = Math.max(0, STAGES.indexOf(p.status));
          const within = p.total ? p.done / p.total : 0;
          bar.value = p.status === "ready" ? 100 : Math.round(((rank + within) / (STAGES.length - 1)) * 100);
          stage.textContent = p.status === "failed" ? `failed while ${p.failed_stage}` : p.status;
          item.className = `upload ${p.status}`;
          detail.textContent = p.status === "failed" ? p.error : p.message || (p.total ? `${p.done} of ${p.total}` : "");
          if (p.status === "ready" || p.status === "failed") break;
        }
      } catch (failure) {
        if (controller.signal.aborted) return;
        detail.textContent = failure.describe ? failure.describe() : String(failure.message);
      } finally {
        release();
        controllers.delete(controller);
      }
      if (!controller.signal.aborted) await refresh().catch(problem);
    })();
  }

  async function upload(files) {
    for (const file of files) {
      const form = new FormData();
      form.append("file", file);
      try {
        const response = await request("POST", `/v1/collections/${collectionId}/documents`, { form });
        track(await response.json(), file.name);
      } catch (failure) {
        const failed = h("li", { class: "upload failed" }, h("strong", {}, file.name), " ",
          failure.describe ? failure.describe() : String(failure));
        uploads.prepend(failed);
      }
    }
    await refresh().catch(problem);
  }

  const picker = h("input", { type: "file", id: "upload-files", multiple: true, class: "visually-hidden",
    tabindex: "-1", "aria-hidden": "true" });
  picker.addEventListener("change", () => upload([...picker.files]).then(() => (picker.value = "")));
  const zone = h(
    "div",
    { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop files here (screenplays in Fountain, Final Draft or PDF; Markdown, HTML, text), or "),
    h("label", { for: "upload-files", class: "button-like", tabindex: "0", role: "button",
      onkeydown: (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), picker.click()) },
      "choose files"),
    picker,
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload([...event.dataTransfer.files]);
  });

  // The chat page starts its next conversation on this collection.
  const chat = h("a", { href: "#/chat", class: "button-like" }, "Ask this collection");
  chat.addEventListener("click", () => sessionStorage.setItem("parley.chatCollection", collectionId));
  const removeCollection = h("button", { type: "button", class: "link danger" }, "Delete collection");
  removeCollection.addEventListener("click", async () => {
    if (!confirm(`Delete the collection “${collection.name}” and all its documents?`)) return;
    try {
      await send("DELETE", `/v1/collections/${collectionId}`);
      location.hash = "#/collections";
    } catch (failure) {
      problem(failure);
    }
  });
  replace(
    page,
    h("p", { class: "crumbs" }, h("a", { href: "#/collections" }, "Collections"), " › "),
    heading(collection.name),
    h("p", {}, collection.description),
    h("div", { class: "toolbar" }, chat, removeCollection),
    zone,
    uploads,
    h("h2", {}, "Documents"),
    h("div", { class: "scroll" }, table),
  );
  await refresh();
  return () => controllers.forEach((c) => c.abort());
}
