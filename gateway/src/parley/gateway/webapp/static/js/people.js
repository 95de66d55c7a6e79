// People and keys: everyone's own API keys (make one, its secret shown once; revoke), and for
// an admin the tenant's people (add, change a role, remove) and every key of the tenant. Who is
// an admin is the API's to say (`GET /v1/me`); the page only hides what would be refused, and
// shows the refusal, request id and all, if one comes anyway.
import { ApiError, all, get, send, setApiKey } from "./api.js";
import { h, heading, problem, replace, say, when } from "./dom.js";

const ROLES = ["owner", "admin", "member", "viewer"];
const SCOPES = ["read", "write", "chat", "admin"];
const EXPIRIES = [["", "never"], ["7", "in 7 days"], ["30", "in 30 days"], ["90", "in 90 days"], ["365", "in a year"]];

export async function showPeople(page) {
  // The secret of a key just made survives the page being drawn anew, until it is put away.
  const state = { secret: null };
  await draw(page, state);
}

async function draw(page, state) {
  const me = await get("/v1/me");
  const admin = me.scopes.includes("admin") && (me.user.role === "owner" || me.user.role === "admin");
  const [keys, users] = await Promise.all([
    all("/v1/api-keys"),
    admin ? all("/v1/users") : Promise.resolve([me.user]),
  ]);
  const names = new Map(users.map((user) => [user.id, user.name]));
  const mine = keys.filter((key) => key.user_id === me.user.id);
  const redraw = async (focus) => {
    await draw(page, state);
    const target = focus && page.querySelector(focus);
    if (target) target.focus(); // the page was drawn anew: keep the keyboard where it was
  };

  replace(
    page,
    heading(admin ? "People and keys" : "API keys"),
    h("p", { class: "hint" }, `Signed in as ${me.user.name} (${me.user.role}) with the scopes ${me.scopes.join(", ") || "none"}.`),
    state.secret ? secretBox(state, redraw) : null,
    h("section", { "aria-labelledby": "my-keys-title" },
      h("h2", { id: "my-keys-title" }, "Your API keys"),
      keyForm(me, admin ? users : [me.user], state, redraw),
      keyTable(mine, { caption: "Your API keys", me, names: null, redraw })),
    admin
      ? h("section", { "aria-labelledby": "people-title" },
        h("h2", { id: "people-title" }, "People"),
        userForm(me, redraw),
        userTable(users, me, redraw))
      : null,
    admin
      ? h("section", { "aria-labelledby": "tenant-keys-title" },
        h("h2", { id: "tenant-keys-title" }, "Every key of the tenant"),
        keyTable(keys, { caption: "Every key of the tenant", me, names, redraw }))
      : null,
  );
}

// An inline line beside the form that was refused (the status line says it too).
function refusal(box, failure) {
  box.textContent = failure instanceof ApiError ? `Refused: ${failure.describe()}` : String(failure);
  problem(failure);
}

function secretBox(state, redraw) {
  const { created, holder } = state.secret;
  const field = h("input", { id: "new-key-secret", readonly: true, value: created.key, spellcheck: "false",
    autocomplete: "off", class: "secret" });
  const copy = h("button", { type: "button", class: "secondary" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(created.key);
    } catch {
      field.select(); // no clipboard permission: the old way, from the selected field
      document.execCommand("copy");
    }
    say("The key is copied.");
  });
  const done = h("button", { type: "button" }, "I have stored it");
  done.addEventListener("click", () => {
    state.secret = null;
    redraw("#key-name");
  });
  return h("section", { class: "card secret-box", role: "alert", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, `New key “${created.name}” for ${holder}`),
    h("p", { class: "warning" }, "Copy it now: you will not see it again. Parley keeps only a hash of it."),
    h("label", { for: "new-key-secret" }, "The new key"),
    h("div", { class: "row-form" }, h("div", {}, field), copy, done));
}

function keyForm(me, holders, state, redraw) {
  const error = h("p", { class: "error", role: "alert" });
  const name = h("input", { id: "key-name", required: true, maxlength: "200", placeholder: "laptop, CI, …" });
  const expires = h("select", { id: "key-expires" }, EXPIRIES.map(([v, t]) => h("option", { value: v }, t)));
  const holder = holders.length > 1
    ? h("select", { id: "key-holder" }, holders.map((user) =>
      h("option", { value: user.id, selected: user.id === me.user.id }, `${user.name} (${user.role})`)))
    : null;
  const scopes = h("fieldset", {},
    h("legend", {}, "Scopes (none ticked: all the holder's role allows)"),
    SCOPES.filter((scope) => me.scopes.includes(scope)).map((scope) => [
      h("input", { type: "checkbox", id: `scope-${scope}`, value: scope }),
      h("label", { for: `scope-${scope}` }, scope),
    ]));
  const form = h(
    "form",
    { "aria-label": "Make an API key" },
    h("div", { class: "row-form" },
      h("div", {}, h("label", { for: "key-name" }, "Key name"), name),
      holder ? h("div", {}, h("label", { for: "key-holder" }, "For"), holder) : null,
      h("div", {}, h("label", { for: "key-expires" }, "Expires"), expires)),
    scopes,
    h("button", { type: "submit" }, "Make key"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { name: name.value.trim() };
    const ticked = [...scopes.querySelectorAll("input:checked")].map((box) => box.value);
    if (ticked.length) body.scopes = ticked;
    if (expires.value) body.expires_at = new Date(Date.now() + Number(expires.value) * 86_400_000).toISOString();
    if (holder && holder.value !== me.user.id) body.user_id = holder.value;
    try {
      const created = await send("POST", "/v1/api-keys", body);
      state.secret = { created, holder: holder ? holder.selectedOptions[0].textContent : me.user.name };
      await redraw("#new-key-secret");
    } catch (failure) {
      refusal(error, failure);
    }
  });
  return form;
}

function keyState(key) {
  if (key.revoked_at) return ["revoked", `revoked ${when(key.revoked_at)}`];
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return ["stale", "expired"];
  return ["ready", "active"];
}

function keyTable(keys, { caption, me, names, redraw }) {
  if (!keys.length) return h("p", {}, "No keys yet.");
  const columns = ["Name", ...(names ? ["Holder"] : []), "Prefix", "Scopes", "Created", "Expires", "Last used", "State", ""];
  return h("div", { class: "scroll" }, h("table", { class: "keys" },
    h("caption", { class: "visually-hidden" }, caption), // the section's heading says it
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, keys.map((key) => {
      const [badge, state] = keyState(key);
      const current = key.id === me.api_key_id;
      return h("tr", {},
        h("th", { scope: "row" }, key.name, current ? h("span", { class: "hint" }, " (this sign-in)") : null),
        names ? h("td", {}, names.get(key.user_id) || key.user_id) : null,
        h("td", {}, h("code", {}, `${key.prefix}…`)),
        h("td", {}, key.scopes.join(", ")),
        h("td", {}, when(key.created_at)),
        h("td", {}, key.expires_at ? when(key.expires_at) : "never"),
        h("td", {}, key.last_used_at ? when(key.last_used_at) : "never"),
        h("td", {}, h("span", { class: `badge ${badge}` }, state)),
        h("td", { class: "actions" }, key.revoked_at ? null : revokeButton(key, current, redraw)));
    }))));
}

function revokeButton(key, current, redraw) {
  return h("button", {
    type: "button",
    class: "link danger",
    "aria-label": `Revoke ${key.name} (${key.prefix}…)`,
    onclick: async () => {
      const question = current
        ? `“${key.name}” is the key you are signed in with: revoke it and sign out?`
        : `Revoke “${key.name}”? Whatever uses it is refused from now on.`;
      if (!confirm(question)) return;
      try {
        await send("DELETE", `/v1/api-keys/${key.id}`);
      } catch (failure) {
        return problem(failure);
      }
      if (current) {
        setApiKey("");
        location.hash = "#/"; // the shell, finding no key, asks for one
        return;
      }
      say(`“${key.name}” is revoked.`);
      await redraw("#my-keys-title");
    },
  }, "Revoke");
}

function userForm(me, redraw) {
  const error = h("p", { class: "error", role: "alert" });
  const name = h("input", { id: "user-name", required: true, maxlength: "200" });
  const email = h("input", { id: "user-email", type: "email", autocomplete: "off" });
  // Only an owner may make an owner: the choice is not offered to an admin.
  const offered = me.user.role === "owner" ? ROLES : ROLES.filter((role) => role !== "owner");
  const role = h("select", { id: "user-role" },
    offered.map((r) => h("option", { value: r, selected: r === "member" }, r)));
  const form = h(
    "form",
    { "aria-label": "Add a person" },
    h("div", { class: "row-form" },
      h("div", {}, h("label", { for: "user-name" }, "Person's name"), name),
      h("div", {}, h("label", { for: "user-email" }, "Email (optional)"), email),
      h("div", {}, h("label", { for: "user-role" }, "Role"), role),
      h("button", { type: "submit" }, "Add person")),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { name: name.value.trim(), role: role.value };
    if (email.value.trim()) body.email = email.value.trim();
    try {
      const added = await send("POST", "/v1/users", body);
      say(`${added.name} is added as ${added.role}. Make them a key above.`);
      await redraw("#user-name");
    } catch (failure) {
      refusal(error, failure);
    }
  });
  return form;
}

function userTable(users, me, redraw) {
  const error = h("p", { class: "error", role: "alert" });
  const table = h("div", { class: "scroll" }, h("table", { class: "people" },
    h("caption", { class: "visually-hidden" }, "People of the tenant"),
    h("thead", {}, h("tr", {}, ["Name", "Email", "Role", "Added", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, users.map((user) => {
      const id = `role-${user.id}`;
      const select = h("select", { id }, ROLES.map((r) => h("option", { value: r, selected: r === user.role }, r)));
      const change = h("button", { type: "button", class: "secondary" }, "Change role");
      change.setAttribute("aria-label", `Change ${user.name}’s role`);
      change.addEventListener("click", async () => {
        error.textContent = "";
        try {
          const changed = await send("PATCH", `/v1/users/${user.id}`, { role: select.value });
          say(`${changed.name} is now ${changed.role}.`);
          await redraw("#people-title");
        } catch (failure) {
          refusal(error, failure);
          select.value = user.role;
        }
      });
      const remove = h("button", { type: "button", class: "link danger", "aria-label": `Remove ${user.name}` }, "Remove");
      remove.addEventListener("click", async () => {
        if (!confirm(`Remove ${user.name} and revoke every key they hold?`)) return;
        error.textContent = "";
        try {
          await send("DELETE", `/v1/users/${user.id}`);
          say(`${user.name} is removed.`);
          await redraw("#people-title");
        } catch (failure) {
          refusal(error, failure);
        }
      });
      return h("tr", {},
        h("th", { scope: "row" }, user.name, user.id === me.user.id ? h("span", { class: "hint" }, " (you)") : null),
        h("td", {}, user.email || ""),
        h("td", { class: "role" },
          h("label", { for: id, class: "visually-hidden" }, `Role of ${user.name}`), select, " ", change),
        h("td", {}, when(user.created_at)),
        h("td", { class: "actions" }, remove));
    }))));
  return h("div", {}, error, table);
}
