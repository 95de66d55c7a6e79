// Where the money went: cost and tokens per day, by model and by kind, the prompt cache's
// share of the input, and what is left of the month's budget.
import { get, send } from "./api.js";
import { bars, legend } from "./charts.js";
import { h, heading, number, problem, replace, say, usd } from "./dom.js";

const DAYS = 14;
const SERIES = 6; // colours; further models or kinds share the last one

export async function showUsage(page) {
  const today = new Date();
  today.setUTCHours(0, 0, 0, 0);
  const days = Array.from({ length: DAYS }, (_, i) => new Date(today.getTime() - (DAYS - 1 - i) * 86_400_000));
  const range = (day) => `since=${day.toISOString()}&until=${new Date(day.getTime() + 86_400_000).toISOString()}`;
  const since = days[0].toISOString();
  const [perDayTotals, models, kinds, summary, quota] = await Promise.all([
    get(`/v1/usage?group_by=day&since=${since}`),
    get(`/v1/usage?group_by=model&since=${since}`),
    get(`/v1/usage?group_by=kind&since=${since}`),
    get("/v1/usage/summary?window=7d"),
    get("/v1/quota"),
  ]);
  // The API groups by one thing at a time: a day's split by model and by kind is asked for only
  // on the days that used anything, so a quiet fortnight costs no requests.
  const active = new Set(perDayTotals.rows.filter((r) => r.events > 0).map((r) => r.group));
  const empty = { rows: [] };
  const perDay = (group) =>
    Promise.all(days.map((day) => active.has(day.toISOString().slice(0, 10))
      ? get(`/v1/usage?group_by=${group}&${range(day)}`) : empty));
  const [byModel, byKind] = await Promise.all([perDay("model"), perDay("kind")]);
  const total = models.total;
  const input = total.input_tokens + total.cache_read_tokens + total.cache_write_tokens;
  const cacheShare = input ? total.cache_read_tokens / input : 0;
  const left = quota.monthly_limit_usd === null ? null : quota.monthly_limit_usd - quota.spent_usd - quota.reserved_usd;

  const figures = h(
    "dl",
    { class: "facts big" },
    [
      [`Cost, last ${DAYS} days`, usd(total.cost_usd)],
      ["Tokens", number.format(total.total_tokens)],
      ["Cache-read share of input", `${Math.round(cacheShare * 100)} %`],
      ["Spent this month", usd(quota.spent_usd)],
      ["Budget left", quota.monthly_limit_usd === null ? "no limit" : `${usd(Math.max(0, left))} of ${usd(quota.monthly_limit_usd)}`],
      ["Requests (7 d)", `${number.format(summary.requests)}, ${Math.round(summary.success_rate * 100)} % ok`],
    ].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))),
  );

  replace(
    page,
    heading("Usage"),
    figures,
    quota.allowed ? null : h("p", { class: "error" }, "The budget is spent: answers that cost money are refused."),
    budgetForm(page, quota.monthly_limit_usd),
    chartsBy("model", byModel, days, models.rows),
    chartsBy("kind", byKind, days, kinds.rows),
  );
}

function chartsBy(group, perDay, days, rows) {
  const names = rows.map((r) => r.group);
  const series = (name) => `s${Math.min(names.indexOf(name), SERIES - 1)}`;
  const stacked = (field) =>
    perDay.map((answer, i) => {
      const parts = answer.rows.map((r) => ({ name: series(r.group), label: r.group, value: r[field] }));
      return { label: days[i].toISOString().slice(0, 10), value: parts.reduce((a, p) => a + p.value, 0), parts };
    });
  const keyed = names.map((name) => [series(name), name]);
  const day = (d) => d.toISOString().slice(0, 10);
  const span = h("p", { class: "hint span" }, h("span", {}, day(days[0])), h("span", {}, `${day(days.at(-1))} (UTC)`));
  return h(
    "section",
    { class: "usage-group" },
    h("h2", {}, `By ${group}`),
    names.length ? legend(keyed) : h("p", {}, "Nothing used in this period."),
    h("h3", {}, "Cost per day"),
    bars(stacked("cost_usd"), { title: `Cost per day by ${group}`, format: usd }),
    span,
    h("h3", {}, "Tokens per day"),
    bars(stacked("total_tokens"), { title: `Tokens per day by ${group}`, format: (v) => `${number.format(v)} tokens` }),
    span.cloneNode(true),
    h("div", { class: "scroll" }, h("table", {},
      h("caption", {}, `Last ${days.length} days by ${group}`),
      h("thead", {}, h("tr", {}, [group, "Calls", "Input", "Output", "Cache read", "Cache write", "Cost"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, h("th", { scope: "row" }, r.group || "—"),
        [r.events, r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens]
          .map((v) => h("td", {}, number.format(v))), h("td", {}, usd(r.cost_usd))))))),
  );
}

// The tenant's monthly limit: an admin's to set (another key's change is refused with 403, said
// in the status line). Empty means no limit, said in so many words, never as 0.
function budgetForm(page, limit) {
  const amount = h("input", { id: "budget", type: "number", min: "0", step: "0.01", inputmode: "decimal",
    value: limit === null ? "" : String(limit), placeholder: "no limit" });
  const form = h(
    "form",
    { class: "row-form", "aria-label": "Monthly budget" },
    h("div", {}, h("label", { for: "budget" }, "Monthly budget in USD (empty: no limit)"), amount),
    h("button", { type: "submit" }, "Set budget"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = amount.value.trim();
    try {
      const saved = await send("PUT", "/v1/budget", { monthly_limit_usd: value === "" ? null : Number(value) });
      say(saved.monthly_limit_usd === null ? "No monthly limit." : `Monthly budget set to ${usd(saved.monthly_limit_usd)}.`);
      await showUsage(page);
      page.querySelector("#budget").focus(); // the form was drawn anew: keep the keyboard where it was
    } catch (failure) {
      problem(failure);
    }
  });
  return form;
}

