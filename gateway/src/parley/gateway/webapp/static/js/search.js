// Search without asking: passages by keyword and meaning, a screenplay's scenes by who speaks,
// each opening its document at the passage.
import { all, send } from "./api.js";
import { h, heading, marked, problem, replace } from "./dom.js";

export async function showSearch(page) {
  const collections = await all("/v1/collections");
  const query = h("input", { id: "query", type: "search", required: true, maxlength: 2000 });
  const picks = collections.map((c, i) => h("input", { type: "checkbox", id: `search-${c.id}`, value: c.id, checked: i === 0 }));
  const mode = h("select", { id: "mode" }, ["hybrid", "keyword", "vector"].map((m) => h("option", { value: m }, m)));
  const characters = h("input", { id: "characters", placeholder: "ANNA, BEN" });
  const scenes = h("input", { id: "scenes", placeholder: "12, 12A" });
  const results = h("ol", { class: "hits", "aria-label": "Results", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Search" },
    h("label", { for: "query" }, "Search for"),
    query,
    h("fieldset", { class: "picks" }, h("legend", {}, "In collections"),
      collections.map((c, i) => h("span", {}, picks[i], h("label", { for: `search-${c.id}` }, c.name)))),
    h("div", { class: "row-form" },
      h("div", {}, h("label", { for: "mode" }, "Match by"), mode),
      h("div", {}, h("label", { for: "characters" }, "Scenes where these speak"), characters),
      h("div", {}, h("label", { for: "scenes" }, "Scene numbers"), scenes),
      h("button", { type: "submit" }, "Search")),
  );
  const list = (input) => input.value.split(",").map((v) => v.trim()).filter(Boolean);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      query: query.value.trim(),
      collection_ids: picks.filter((p) => p.checked).map((p) => p.value),
      mode: mode.value,
      k: 20,
      filters: { characters: list(characters), scene_numbers: list(scenes) },
    };
    if (!body.collection_ids.length) return problem(new Error("Pick at least one collection."));
    try {
      const found = (await send("POST", "/v1/search", body)).data;
      replace(results, found.length ? found.map(hit) : h("li", {}, "Nothing found."));
    } catch (failure) {
      problem(failure);
    }
  });
  replace(page, heading("Search"), form, results);
  query.focus();
}

function hit(found) {
  const where = [found.scene_number ? `scene ${found.scene_number}` : "", found.heading].filter(Boolean).join(": ");
  const target = `#/documents/${found.document_id}${found.heading ? `/at/${encodeURIComponent(found.heading.split(" › ").at(-1))}` : ""}`;
  return h(
    "li",
    { class: "card" },
    h("h2", {}, h("a", { href: target }, found.document_title)),
    where ? h("p", { class: "heading" }, where) : null,
    h("p", { class: "snippet" }, marked(found.snippet)),
    h("p", { class: "hint" }, [found.characters ? found.characters.join(", ") : "",
      found.page_start ? `page ${found.page_start}` : "", `score ${found.score.toFixed(3)}`].filter(Boolean).join(" · ")),
  );
}
