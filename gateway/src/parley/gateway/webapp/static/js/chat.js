// Chat: the conversation list, answers streamed as they arrive, citations that open their
// passage, the context report, cancel and export.
import { ApiError, all, download, events, get, request, send } from "./api.js";
import { h, heading, number, problem, replace, say, usd, when } from "./dom.js";

const TIERS = ["quick", "standard", "deep"];

export async function showChat(page, conversationId) {
  const [conversations, collections] = await Promise.all([
    all("/v1/conversations", { limit: 200 }),
    all("/v1/collections"),
  ]);
  // A long conversation's messages may come a page at a time, the most recent first (a
  // `next_page_token` reads back); a button shows the earlier ones.
  const conversation = conversationId ? await get(`/v1/conversations/${conversationId}?page_size=100`) : null;
  const titles = new Map(collections.map((c) => [c.id, c.name]));
  let running = null; // {controller, conversationId, turnId} while an answer streams

  const list = h(
    "nav",
    { class: "conversations", "aria-label": "Conversations" },
    h("h2", {}, "Conversations"),
    h("a", { href: "#/chat", class: "button-like" }, "New conversation"),
    h(
      "ul",
      {},
      conversations.map((c) =>
        h(
          "li",
          {},
          h("a", { href: `#/chat/${c.id}`, "aria-current": c.id === conversationId ? "page" : null }, c.title || "Untitled"),
          h("span", { class: "hint" }, when(c.updated_at)),
        ),
      ),
    ),
  );

  const log = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  for (const message of conversation ? conversation.messages : []) log.append(renderMessage(message));
  const earlier = h("button", { type: "button", class: "secondary" }, "Show earlier messages");
  let before = conversation && conversation.next_page_token;
  earlier.hidden = !before;
  earlier.addEventListener("click", async () => {
    try {
      const page = await get(`/v1/conversations/${conversation.id}?page_size=100&page_token=${encodeURIComponent(before)}`);
      log.prepend(...page.messages.map(renderMessage));
      before = page.next_page_token;
      earlier.hidden = !before;
    } catch (failure) {
      problem(failure);
    }
  });

  // A new conversation asks which collections; a continued one keeps its own.
  const preselected = sessionStorage.getItem("parley.chatCollection");
  sessionStorage.removeItem("parley.chatCollection");
  const picks = collections.map((c, i) =>
    h("input", { type: "checkbox", id: `pick-${c.id}`, value: c.id,
      checked: preselected ? c.id === preselected : i === 0 }),
  );
  const scope = conversation
    ? h("p", { class: "hint" }, "Asking: ", conversation.collection_ids.map((id) => titles.get(id) || id).join(", "))
    : h(
        "fieldset",
        { class: "picks" },
        h("legend", {}, "Collections to ask"),
        collections.length
          ? collections.map((c, i) => h("span", {}, picks[i], h("label", { for: `pick-${c.id}` }, c.name)))
          : h("span", {}, "No collections yet: ", h("a", { href: "#/collections" }, "create one"), "."),
      );
  const tier = h("select", { id: "tier" }, TIERS.map((t) => h("option", { value: t, selected: t === "standard" }, t)));
  const text = h("textarea", { id: "message", rows: 3, required: true, maxlength: 8000,
    placeholder: "Ask about your documents… (Enter sends, Shift+Enter for a new line)" });
  const sendButton = h("button", { type: "submit" }, "Send");
  const cancelButton = h("button", { type: "button", class: "secondary", disabled: true }, "Cancel");
  const composer = h(
    "form",
    { class: "composer", "aria-label": "Ask" },
    scope,
    h("label", { for: "message" }, "Message"),
    text,
    h("div", { class: "toolbar" },
      h("label", { for: "tier" }, "Context"), tier, sendButton, cancelButton),
  );
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  composer.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = text.value.trim();
    if (!message || running) return;
    const body = { message, stream: true, tier: tier.value };
    if (conversation) body.conversation_id = conversation.id;
    else body.collection_ids = picks.filter((p) => p.checked).map((p) => p.value);
    if (!conversation && body.collection_ids.length === 0) return say("Pick at least one collection.", { error: true });
    text.value = "";
    const controller = new AbortController();
    setRunning({ controller, message });
    const answer = begin(message);
    try {
      const response = await request("POST", "/v1/chat", { json: body, signal: controller.signal });
      running.conversationId = response.headers.get("X-Conversation-Id");
      running.turnId = response.headers.get("X-Turn-Id");
      announce();
      const end = await follow(response, answer);
      if (end && !conversation) {
        // The new conversation has an address now: its page lists it with the others.
        setRunning(null);
        location.hash = `#/chat/${end.conversation_id}`;
      }
    } catch (failure) {
      if (!controller.signal.aborted) {
        problem(failure);
        answer.append(h("p", { class: "error" }, failure.describe ? failure.describe() : String(failure)));
      }
    } finally {
      answer.classList.remove("streaming");
      answer.removeAttribute("aria-busy");
      setRunning(null);
    }
  });

  // The question, and an empty answer that fills as the stream arrives.
  function begin(message) {
    log.append(renderMessage({ role: "user", content: message, sources: [] }));
    // Busy while it streams: a screen reader reads the answer once, not every few words.
    const answer = h("li", { class: "message assistant streaming", "aria-busy": "true" }, h("p", { class: "who" }, "Parley"),
      h("div", { class: "text" }));
    log.append(answer);
    return answer;
  }

  // A turn's frames into its answer; the `end` frame's data, or null when it failed or was cancelled.
  async function follow(response, answer) {
    const textNode = answer.querySelector(".text");
    let content = "";
    let sources = [];
    let usage = null;
    for await (const frame of events(response)) {
      if (frame.event === "delta") {
        content += frame.data.text;
        textNode.textContent = content;
      } else if (frame.event === "sources") sources = frame.data.sources;
      else if (frame.event === "usage") usage = frame.data;
      else if (frame.event === "error") {
        const cancelled = frame.data.code === "cancelled";
        answer.append(h("p", { class: cancelled ? "hint" : "error" },
          cancelled ? "Cancelled." : `The answer failed: ${frame.data.message} (${frame.data.code})`));
        answer.classList.add(cancelled ? "cancelled" : "failed");
        return null;
      } else if (frame.event === "end") {
        answer.replaceWith(renderMessage({ role: "assistant", content, sources, usage, model: usage && usage.model,
          cost_usd: usage && usage.cost_usd, context_used: usage && usage.context_used, created_at: frame.data.created_at }));
        return frame.data;
      }
    }
    return null;
  }

  // Tabs of this browser tell each other which turn they are streaming, so a second tab on the
  // same conversation joins it from the turn's events (the API replays them from the start).
  const tabs = new BroadcastChannel("parley.turns");
  let joined = null;
  function announce() {
    if (running && running.turnId) {
      tabs.postMessage({ running: { conversationId: running.conversationId, turnId: running.turnId, message: running.message } });
    }
  }
  tabs.onmessage = async ({ data }) => {
    if (data.asking) return announce();
    const turn = data.running;
    if (!conversation || !turn || turn.conversationId !== conversation.id || running || joined === turn.turnId) return;
    joined = turn.turnId;
    const controller = new AbortController();
    setRunning({ controller, message: turn.message, ...turn });
    const answer = begin(turn.message);
    try {
      const response = await request("GET", `/v1/conversations/${turn.conversationId}/turns/${turn.turnId}/events`,
        { signal: controller.signal });
      await follow(response, answer);
    } catch (failure) {
      if (!controller.signal.aborted) problem(failure);
    } finally {
      answer.classList.remove("streaming");
      answer.removeAttribute("aria-busy");
      setRunning(null);
    }
  };
  if (conversation) tabs.postMessage({ asking: conversation.id });

  cancelButton.addEventListener("click", async () => {
    if (!running || !running.turnId) return;
    try {
      await send("POST", `/v1/conversations/${running.conversationId}/turns/${running.turnId}/cancel`);
      say("Cancelling…");
    } catch (failure) {
      problem(failure); // 404: it finished meanwhile
    }
  });

  function setRunning(value) {
    running = value;
    sendButton.disabled = Boolean(value);
    cancelButton.disabled = !value;
  }

  const tools = conversation
    ? h(
        "div",
        { class: "toolbar" },
        h("button", { type: "button", class: "secondary", onclick: () =>
          download(`/v1/conversations/${conversation.id}/export?format=markdown`, "conversation.md").catch(problem) },
          "Export Markdown"),
        h("button", { type: "button", class: "secondary", onclick: () =>
          download(`/v1/conversations/${conversation.id}/export?format=json`, "conversation.json").catch(problem) },
          "Export JSON"),
        h("button", { type: "button", class: "link danger", onclick: async () => {
          if (!confirm("Delete this conversation?")) return;
          try {
            await send("DELETE", `/v1/conversations/${conversation.id}`);
            location.hash = "#/chat";
          } catch (failure) {
            problem(failure);
          }
        } }, "Delete"),
      )
    : null;

  replace(
    page,
    h("div", { class: "chat" },
      list,
      h("section", { class: "thread", "aria-labelledby": "chat-title" },
        Object.assign(heading(conversation ? conversation.title || "Conversation" : "New conversation"), { id: "chat-title" }),
        tools, earlier, log, composer)),
  );
  if (!conversation) text.focus();
  return () => {
    tabs.close();
    if (running) running.controller.abort();
  };
}

// A message; an answer's [n] become buttons that open the passage they cite.
function renderMessage(message) {
  const item = h("li", { class: `message ${message.role}` });
  item.append(h("p", { class: "who" }, message.role === "user" ? "You" : "Parley"));
  const body = h("div", { class: "text" });
  const byIndex = new Map((message.sources || []).map((s) => [s.index, s]));
  for (const part of message.content.split(/(\[\d+\])/)) {
    const cited = /^\[(\d+)\]$/.exec(part);
    const source = cited && byIndex.get(Number(cited[1]));
    body.append(source ? citation(source) : part);
  }
  item.append(body);
  if (message.incomplete) item.append(h("p", { class: "hint" }, "The model stopped before the end of this answer."));
  if (message.sources && message.sources.length) {
    item.append(h("ol", { class: "sources", "aria-label": "Sources" },
      message.sources.map((s) => h("li", { value: s.index }, citation(s, `${s.document_title}${s.heading ? ` › ${s.heading}` : ""}`)))));
  }
  if (message.role === "assistant" && (message.context_used || message.usage)) item.append(report(message));
  return item;
}

function citation(source, label = `[${source.index}]`) {
  return h("button", { type: "button", class: "citation", "aria-haspopup": "dialog",
    "aria-label": `Source ${source.index}: ${source.document_title}`, onclick: () => openPassage(source) }, label);
}

// The cited passage whole (a source carries its first 280 characters): the snippet is shown
// at once and replaced by the passage's text when it comes.
function wholePassage(source, quote) {
  const path = `/v1/documents/${encodeURIComponent(source.document_id)}/passages/${encodeURIComponent(source.chunk_id)}`;
  get(path).then(
    (passage) => replace(quote, passage.text),
    (failure) => quote.after(h("p", { class: "hint" },
      failure instanceof ApiError && failure.status === 404
        ? "Only the start of the passage is shown: a newer version of the document has replaced it."
        : `Only the start of the passage is shown: ${failure.describe ? failure.describe() : failure}`)),
  ).finally(() => quote.removeAttribute("aria-busy"));
}

function openPassage(source) {
  const quote = h("blockquote", { "aria-busy": "true" }, source.snippet);
  wholePassage(source, quote);
  const dialog = h(
    "dialog",
    { class: "passage", "aria-labelledby": "passage-title" },
    h("h2", { id: "passage-title" }, `[${source.index}] ${source.document_title}`),
    source.heading ? h("p", { class: "heading" }, source.heading) : null,
    quote,
    h("p", { class: "hint" }, `relevance ${source.score.toFixed(3)}`),
    h("div", { class: "toolbar" },
      h("a", { href: `#/documents/${source.document_id}${source.heading ? `/at/${encodeURIComponent(source.heading)}` : ""}`,
        class: "button-like", onclick: () => dialog.close() }, // the modal must not outlive its page
        source.heading ? "Open it in the document" : "Open the document"),
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Close")),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// How the answer's prompt was built and what it cost: the API's context report.
function report(message) {
  const c = message.context_used;
  const u = message.usage || {};
  const rows = [
    ["Model", message.model || "—"],
    ["Cost", usd(message.cost_usd)],
    ["Tokens in / out", `${number.format(u.input_tokens || 0)} / ${number.format(u.output_tokens || 0)}`],
    ["Cache read / write", `${number.format(u.cache_read_tokens || 0)} / ${number.format(u.cache_write_tokens || 0)}`],
  ];
  if (c) {
    rows.unshift(["Intent", `${c.intent} (${c.intent_source})`], ["Retrieval", c.retrieval],
      ["Tier", `${c.tier}, ${number.format(c.budget_tokens)} tokens`]);
  }
  return h(
    "details",
    { class: "report" },
    h("summary", {}, "Context report"),
    h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    c ? h("table", {}, h("caption", {}, "Tokens per part of the prompt"),
      h("tbody", {}, c.parts.map((p) => h("tr", {}, h("th", { scope: "row" }, p.name), h("td", {}, number.format(p.tokens)))))) : null,
    c && c.trimmed.length ? h("p", {}, "Trimmed: ", c.trimmed.join("; ")) : null,
    c && c.notes.length ? h("p", {}, "Notes: ", c.notes.join("; ")) : null,
  );
}
