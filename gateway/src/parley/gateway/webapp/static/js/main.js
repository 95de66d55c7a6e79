// The app's shell: sign-in (an API key, or single sign-on where the gateway has it), the
// navigation, and the hash routes each page answers.
import { ApiError, apiKey, get, setApiKey, signedInVia } from "./api.js";
import { h, heading, problem, replace } from "./dom.js";
import { showChat } from "./chat.js";
import { showCollection, showCollections } from "./collections.js";
import { showPeople } from "./people.js";
import { showDocument } from "./screenplay.js";
import { showSearch } from "./search.js";
import { finishSsoSignIn, ssoConfig, startSsoSignIn } from "./sso.js";
import { showUsage } from "./usage.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

// "#/chat/abc" → the page for "chat" with ["abc"]; longest prefix first.
const routes = [
  [/^\/collections\/([^/]+)$/, showCollection],
  [/^\/collections\/?$/, showCollections],
  [/^\/documents\/([^/]+)(?:\/at\/(.+))?$/, showDocument],
  [/^\/chat(?:\/([^/]+))?$/, showChat],
  [/^\/search\/?$/, showSearch],
  [/^\/usage\/?$/, showUsage],
  [/^\/people\/?$/, showPeople],
];

function showSignIn(reason = "") {
  nav.hidden = true;
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
    placeholder: "pk_…",
  });
  const error = h("p", { class: "error", role: "alert" }, reason);
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "Sign in with an API key. It stays in this browser tab only and is forgotten when the tab closes."),
    h("label", { for: "api-key" }, "API key"),
    input,
    error,
    h("button", { type: "submit" }, "Sign in"),
    h("p", { class: "hint" }, "On a machine running make run, the admin key is in .parley/admin-key."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      await get("/v1/collections?page_size=1", { key });
      setApiKey(key);
      if (!location.hash || location.hash === "#/") location.hash = "#/collections";
      else route();
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.describe() : String(failure);
      input.focus();
    }
  });
  replace(main, form);
  input.focus();
  offerSso(form, error);
}

// "Sign in with <company SSO>" when the gateway has an identity provider, above the key form.
async function offerSso(form, error) {
  const config = await ssoConfig().catch(() => ({ enabled: false }));
  if (!config.enabled || !form.isConnected) return;
  const button = h("button", { type: "button", class: "sso" }, `Sign in with ${config.name}`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await startSsoSignIn(config);
    } catch (failure) {
      error.textContent = String(failure.message || failure);
      button.disabled = false;
    }
  });
  form.querySelector("h1").after(button, h("p", { class: "hint" }, "or:"));
}

function signOut(reason = "") {
  clearTimeout(expiryTimer);
  setApiKey("");
  who.textContent = "";
  showSignIn(reason);
}

function expired() {
  const sso = signedInVia();
  return sso && sso.expiresAt && sso.expiresAt * 1000 <= Date.now();
}

const EXPIRED = (sso) => `Your sign-in with ${sso ? sso.via : "single sign-on"} has expired: sign in again.`;
let expiryTimer = 0;

// A token from single sign-on is good until its expiry: then back to sign-in, saying why.
function watchExpiry() {
  clearTimeout(expiryTimer);
  const sso = signedInVia();
  if (!sso || !sso.expiresAt) return;
  const left = Math.min(sso.expiresAt * 1000 - Date.now(), 2 ** 31 - 1);
  expiryTimer = setTimeout(() => {
    if (leave) leave();
    leave = null;
    signOut(EXPIRED(sso));
  }, Math.max(left, 0));
}

async function showWho() {
  if (who.textContent) return;
  try {
    const me = await get("/v1/me");
    who.textContent = `${me.user.name} (${me.user.role})`;
  } catch {
    // The page itself says what is wrong with the credential.
  }
}

let leave = null;

async function route() {
  if (leave) leave(); // a page's streams and timers stop when it is left
  leave = null;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close(); // nor do its dialogs stay
  if (!apiKey()) return showSignIn();
  if (expired()) return signOut(EXPIRED(signedInVia()));
  nav.hidden = false;
  showWho();
  const asked = location.hash.replace(/^#/, "");
  const path = asked === "" || asked === "/" ? "/collections" : asked;
  for (const link of nav.querySelectorAll("a")) {
    const current = path.startsWith(link.getAttribute("href").slice(1));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, show] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    const page = h("div", { class: "page" });
    replace(main, page);
    try {
      leave = (await show(page, ...match.slice(1))) || null;
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 401) {
        const sso = signedInVia();
        return signOut(
          sso
            ? `Your sign-in with ${sso.via} is no longer valid (expired or revoked): sign in again.`
            : "That API key is no longer valid: sign in again.",
        );
      }
      problem(failure);
      page.append(h("p", { class: "error" }, failure.describe ? failure.describe() : String(failure)));
    }
    // Keyboard and screen-reader users land on the new page's title, not the old link.
    // (unless the page put the focus somewhere itself, such as on a cited scene).
    const title = page.querySelector("h1");
    if (title && !page.contains(document.activeElement)) title.focus({ preventScroll: true });
    return;
  }
  replace(main, heading("Not found"), h("p", {}, h("a", { href: "#/collections" }, "Back to collections")));
}

document.getElementById("sign-out").addEventListener("click", () => {
  clearTimeout(expiryTimer);
  setApiKey("");
  who.textContent = "";
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);

// A return from the identity provider is finished first; then the page asked for.
finishSsoSignIn().then(
  () => {
    watchExpiry();
    route();
  },
  (failure) => signOut(String(failure.message || failure)),
);
