// A document's page; for a screenplay: scenes with their cards, the characters report, a
// pacing chart, the outline, character sheets, plot threads, and how far its analysis got.
import { all, get } from "./api.js";
import { bars, legend } from "./charts.js";
import { h, heading, number, replace, when } from "./dom.js";

export async function showDocument(page, documentId, at) {
  // Everything at once: a report that is not a screenplay's answers 409, which just means "none".
  const report = (path) =>
    get(`/v1/documents/${documentId}/${path}`).catch((error) => {
      if (error.status === 409) return null;
      throw error;
    });
  // Sections come 100 a page, one page after another: a script's scenes are drawn from its pacing
  // report and cards at once, and each scene's page, tokens and speakers filled in when they come.
  const sectionsLoad = all(`/v1/documents/${documentId}/sections`);
  sectionsLoad.catch(() => {}); // a script's page does not wait for them; a failure shows elsewhere
  const [doc, artifacts, characters, pacing] = await Promise.all([
    get(`/v1/documents/${documentId}`),
    get(`/v1/documents/${documentId}/artifacts`).then((a) => a.artifacts),
    report("characters").then((c) => c && c.characters),
    report("pacing"),
  ]);
  const isScript = doc.analysis_state !== null;
  const sections = isScript ? [] : await sectionsLoad;
  const byKind = (kind) => artifacts.filter((a) => a.kind === kind);
  const cards = new Map(byKind("scene_card").map((a) => [a.key, a]));
  const stale = artifacts.filter((a) => a.stale).length;

  const facts = h(
    "dl",
    { class: "facts" },
    [
      ["Status", h("span", { class: `badge ${doc.status}` }, doc.status)],
      ["Version", doc.version],
      ["Type", doc.content_type],
      ["Chunks", number.format(doc.chunk_count)],
      ["Tokens", number.format(doc.token_count)],
      isScript ? ["Analysis", doc.analysis_state] : null,
      ["Artifacts", `${artifacts.length}${stale ? `, ${stale} stale` : ""}`],
      ["Updated", when(doc.updated_at)],
    ]
      .filter(Boolean)
      .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
  );

  // The collection's name fills in when it arrives; the page does not wait for it.
  const crumb = h("a", { href: `#/collections/${doc.collection_id}` }, "Collection");
  get(`/v1/collections/${doc.collection_id}`).then((c) => (crumb.textContent = c.name), () => {});

  const panels = isScript
    ? [
        ["Scenes", () => scenesPanel(pacing, cards, sectionsLoad)],
        ["Characters", () => charactersPanel(characters)],
        ["Pacing", () => pacingPanel(pacing)],
        ["Outline", () => artifactsPanel(byKind("outline"), "No outline yet: a script gets one from 30 scenes or 60 pages.")],
        ["Character sheets", () => artifactsPanel(byKind("character_sheet"), "No character sheets yet (from 30 scenes or 60 pages).")],
        ["Plot threads", () => artifactsPanel(byKind("plot_thread"), "No plot threads yet (from 30 scenes or 60 pages).")],
      ]
    : [
        ["Sections", () => sectionsPanel(sections, cards)],
        ["Outline", () => artifactsPanel(byKind("outline"), "No outline: a document's artifacts are written when asked for.")],
      ];

  replace(
    page,
    h("p", { class: "crumbs" }, crumb, " › "),
    heading(doc.title),
    facts,
    doc.message ? h("p", { class: "hint" }, doc.message) : null,
    doc.status === "failed" ? h("p", { class: "error" }, `Failed while ${doc.failed_stage}: ${doc.error}`) : null,
    tabs(panels),
  );
  if (at) focusOn(page, decodeURIComponent(at));
}

// A citation opens its document at the scene or section it cites: the first card whose heading
// ends with the cited heading is scrolled to, marked and focused.
function focusOn(page, cited) {
  const card = [...page.querySelectorAll(".scenes > li")].find((li) =>
    li.querySelector("h3").textContent.trim().endsWith(cited.trim()));
  if (!card) return;
  card.classList.add("focused");
  card.tabIndex = -1;
  card.scrollIntoView({ block: "center" });
  card.focus({ preventScroll: true });
}

// Tabs as the WAI-ARIA pattern has them: arrow keys move between tabs, one panel shown. A panel
// is built when first shown: a long script's charts and sheets cost nothing until asked for.
function tabs(panels) {
  const list = h("div", { role: "tablist", "aria-label": "Views", class: "tabs" });
  const buttons = [];
  const regions = [];
  panels.forEach(([name, build], i) => {
    const id = name.toLowerCase().replace(/\s+/g, "-");
    const tab = h("button", { type: "button", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`,
      "aria-selected": String(i === 0), tabindex: i === 0 ? "0" : "-1" }, name);
    const region = h("section", { role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}`,
      hidden: i !== 0, tabindex: "0" });
    region.build = build;
    tab.addEventListener("click", () => select(i));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) select((i + step + buttons.length) % buttons.length, true);
    });
    buttons.push(tab);
    regions.push(region);
    list.append(tab);
  });
  function select(index, focus = false) {
    buttons.forEach((b, j) => {
      b.setAttribute("aria-selected", String(j === index));
      b.tabIndex = j === index ? 0 : -1;
      regions[j].hidden = j !== index;
    });
    const region = regions[index];
    if (region.build) {
      region.append(region.build());
      region.build = null;
    }
    if (focus) buttons[index].focus();
  }
  select(0);
  return h("div", {}, list, regions);
}

function scenesPanel(pacing, cards, sectionsLoad) {
  if (!pacing || !pacing.per_scene.length) return h("p", {}, "No scenes yet: the script is still being read.");
  const hints = new Map();
  const printed = new Map();
  const list = h(
    "ol",
    { class: "scenes" },
    pacing.per_scene.map((s) => {
      // A number the script prints twice has the cards "12" and "12 (2)".
      const seen = (printed.get(s.number) || 0) + 1;
      printed.set(s.number, seen);
      const card = cards.get(seen > 1 ? `${s.number} (${seen})` : s.number);
      const hint = h("p", { class: "hint" }, `${s.eighths}/8 page`);
      hints.set(s.number, hint);
      return h(
        "li",
        { class: "card scene", id: `scene-${s.number}` },
        h("h3", {}, `${s.number}. ${s.heading}`),
        hint,
        card ? sceneCard(card.content) : null,
        card && card.stale ? h("p", { class: "badge stale" }, "card stale") : null,
      );
    }),
  );
  sectionsLoad.then((sections) => {
    for (const s of sections) {
      const hint = s.scene && hints.get(s.scene.number);
      if (!hint) continue;
      hint.textContent = [s.page ? `page ${s.page}` : "", `${s.tokens} tokens`,
        s.scene.characters.length ? s.scene.characters.join(", ") : "no dialogue"].filter(Boolean).join(" · ");
    }
  }, () => {});
  return list;
}

// A scene card reads as a card: what happens, the sharpest line, the tone in one line; any other
// field a model's card has follows, as data.
function sceneCard(card) {
  const shown = new Set(["scene", "heading", "page", "characters", "method", "what_happens", "conflict", "tone",
    "dialogue_share"]);
  const tone = card.tone || {};
  const toneLine = [tone.int_ext, tone.time_of_day, tone.length_eighths ? `${tone.length_eighths}/8 page` : "", tone.pace,
    typeof card.dialogue_share === "number" ? `${Math.round(card.dialogue_share * 100)} % dialogue` : ""];
  const conflict = card.conflict;
  return h(
    "div",
    { class: "scene-card" },
    card.what_happens ? h("p", {}, card.what_happens) : null,
    conflict && conflict.line ? h("blockquote", {}, `“${conflict.line}” — ${conflict.speaker || ""}`) : null,
    h("p", { class: "hint" }, toneLine.filter(Boolean).join(" · ")),
    content(Object.fromEntries(Object.entries(card).filter(([k]) => !shown.has(k)))),
  );
}

function sectionsPanel(sections, cards) {
  return h("ol", { class: "scenes" }, sections.map((s) => h("li", { class: "card" },
    h("h3", {}, s.heading_path.join(" › ") || s.heading || `Section ${s.ordinal}`),
    h("p", { class: "hint" }, `${s.tokens} tokens`),
    cards.has(String(s.ordinal)) ? content(cards.get(String(s.ordinal)).content, new Set(["method", "section"])) : null)));
}

function charactersPanel(characters) {
  if (!characters || !characters.length) return h("p", {}, "No one speaks yet.");
  const columns = ["Name", "Scenes", "Speeches", "Words", "First", "Last", "Longest absence", "Most with"];
  return h("div", { class: "scroll" }, h("table", {},
    h("caption", { class: "visually-hidden" }, "Characters"),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, characters.map((c) => h("tr", {},
      h("th", { scope: "row" }, c.name), h("td", {}, c.scenes), h("td", {}, c.dialogue_blocks),
      h("td", {}, number.format(c.words)), h("td", {}, c.first_scene), h("td", {}, c.last_scene),
      h("td", {}, `${c.longest_absence} scenes`),
      h("td", {}, c.most_shared_with ? `${c.most_shared_with} (${c.shared_scenes})` : "—"))))));
}

function pacingPanel(p) {
  if (!p) return h("p", {}, "No pacing yet: the script is still being read.");
  const night = p.day_night.night || 0;
  const day = p.day_night.day || 0;
  const scenes = p.per_scene.map((s) => ({
    label: `${s.number}. ${s.heading}`,
    value: s.eighths / 8,
    share: s.dialogue_share,
    kind: /NIGHT|EVENING|DUSK/i.test(s.heading) ? "night" : /DAY|MORNING|DAWN|NOON/i.test(s.heading) ? "day" : "other",
  }));
  return h(
    "div",
    {},
    h("dl", { class: "facts" }, [
      ["Pages", p.pages], ["Scenes", p.scenes], ["Dialogue", `${Math.round(p.dialogue_share * 100)} %`],
      ["Day / night / other", `${day} / ${night} / ${p.day_night.other || 0}`],
      ["INT / EXT", `${p.int_ext.INT || 0} / ${p.int_ext.EXT || 0}`],
    ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
    h("h3", {}, "Scene lengths (pages), coloured by time of day"),
    legend([["day", "day"], ["night", "night"], ["other", "other"]]),
    bars(scenes, { unit: "pages", title: "Scene lengths in pages", classOf: (s) => s.kind }),
    h("h3", {}, "Dialogue share per scene"),
    bars(scenes.map((s) => ({ ...s, value: s.share })), { unit: "share", max: 1, title: "Dialogue share per scene",
      format: (v) => `${Math.round(v * 100)} %` }),
    p.per_act.length ? h("table", {}, h("caption", {}, "Acts"),
      h("thead", {}, h("tr", {}, ["Act", "Scenes", "Pages"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, p.per_act.map((a) => h("tr", {}, h("th", { scope: "row" }, a.act || "—"), h("td", {}, a.scenes),
        h("td", {}, a.pages.toFixed(1)))))) : null,
  );
}

function artifactsPanel(items, empty) {
  if (!items.length) return h("p", {}, empty);
  return h("div", {}, items.map((a) => h("article", { class: "card" },
    h("h3", {}, a.key === "outline" ? "Outline" : a.key),
    h("p", { class: "hint" }, `by ${a.model} from version ${a.document_version}${a.stale ? " · stale" : ""}`),
    content(a.content, new Set(["method"])))));
}

// Any artifact's JSON, readable: objects as definition lists, lists as lists.
function content(value, skip = new Set()) {
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v !== "object" || v === null)) return value.join(", ");
    return h("ul", {}, value.map((v) => h("li", {}, content(v))));
  }
  if (value && typeof value === "object") {
    return h("dl", { class: "content" }, Object.entries(value)
      .filter(([k]) => !skip.has(k))
      .map(([k, v]) => h("div", {}, h("dt", {}, k.replace(/_/g, " ")), h("dd", {}, content(v)))));
  }
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(2);
  return value === null || value === undefined ? "—" : String(value);
}
