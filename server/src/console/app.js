// yunwei console: a single page in vanilla JS. No external scripts, fonts or CDNs.
// Talks to the JSON API with the HttpOnly session cookie; state-changing calls send the
// per-session CSRF token in the X-CSRF-Token header.
"use strict";

const I18N = {
  "zh-CN": {
    brand: "云维 运维监控", login: "登录", logout: "退出", user: "用户名", password: "密码",
    loginFailed: "登录失败", badCredentials: "登录失败：用户名或密码错误",
    lockedMsg: "账户已锁定：连续登录失败次数过多，请 {s} 秒后再试",
    forbiddenDetail: "您的角色（{role}）无权执行此操作",
    weak_password: "密码不符合要求：至少 10 个字符，至少包含小写字母、大写字母、数字、符号中的三类，且不得包含用户名",
    exists: "该用户已存在", csrf: "安全校验失败，请刷新页面后重试", overview: "总览", hosts: "主机", rules: "告警规则",
    audit: "审计日志", users: "用户", lang: "English", hostsUp: "在线主机", hostsDown: "离线主机",
    hostsUnknown: "状态未知主机", activeAlerts: "活动告警", bySeverity: "按级别",
    contracts: "合同考核（本期至今得分）", incidents: "未关闭事件", notYet: "暂不可用（该功能尚未上线）",
    hostname: "主机名", status: "状态", labels: "标签", lastSeen: "最近上报", os: "操作系统",
    arch: "架构", filter: "按标签筛选，如 system=政务服务网,environment=prod", apply: "筛选",
    noHosts: "没有匹配的主机", back: "返回主机列表", metric: "指标", chartTitle: "小时汇总（平均值）",
    noData: "该时间段没有汇总数据", load: "加载", up: "在线", down: "离线", unknown: "未知",
    rule: "规则", type: "类型", state: "状态", health: "健康", query: "表达式",
    reload: "重新加载规则", reloaded: "规则已重新加载", forbidden: "权限不足 (403)：",
    alertName: "告警", severity: "级别", since: "开始时间", value: "值", noAlerts: "当前没有活动告警",
    time: "时间", actor: "操作人", action: "操作", target: "对象", result: "结果", source: "来源地址",
    role: "角色", disabled: "已停用", lockedState: "已锁定", active: "正常", addUser: "添加用户",
    add: "添加", setPassword: "重置密码", disable: "停用", enable: "启用", unlock: "解锁", saved: "已保存",
    error: "出错了：", sessionEnded: "会话已结束，请重新登录", inactive: "未触发", pending: "待触发",
    firing: "触发中", alerting: "告警", recording: "记录", ok: "正常", err: "错误",
    roleAdmin: "管理员", roleOperator: "运维人员", roleReviewer: "审核人员", roleAuditor: "审计员",
    hour24: "最近 24 小时", days7: "最近 7 天", range: "时间范围", welcome: "欢迎，",
  },
  en: {
    brand: "yunwei O&M", login: "Log in", logout: "Log out", user: "User name", password: "Password",
    loginFailed: "Login failed", badCredentials: "Login failed: wrong user name or password",
    lockedMsg: "Account locked: too many failed logins; try again in {s} s",
    forbiddenDetail: "your role ({role}) may not do this",
    weak_password: "Password refused: at least 10 characters with three of lower-case, upper-case, digits and symbols, not containing the user name",
    exists: "This user already exists", csrf: "Security check failed; reload the page and try again", overview: "Overview", hosts: "Hosts",
    rules: "Alert rules", audit: "Audit log", users: "Users", lang: "中文", hostsUp: "Hosts up",
    hostsDown: "Hosts down", hostsUnknown: "Hosts unknown", activeAlerts: "Active alerts",
    bySeverity: "by severity", contracts: "Contracts (period-to-date score)",
    incidents: "Open incidents", notYet: "Not yet available (this capability has not landed)",
    hostname: "Host name", status: "Status", labels: "Labels", lastSeen: "Last batch", os: "OS",
    arch: "Arch", filter: "Filter by labels, e.g. system=portal,environment=prod", apply: "Filter",
    noHosts: "No matching hosts", back: "Back to hosts", metric: "Metric",
    chartTitle: "Hourly rollups (mean)", noData: "No rollups in this range", load: "Load",
    up: "up", down: "down", unknown: "unknown", rule: "Rule", type: "Type", state: "State",
    health: "Health", query: "Expression", reload: "Reload rules", reloaded: "Rules reloaded",
    forbidden: "Forbidden (403): ", alertName: "Alert", severity: "Severity", since: "Since",
    value: "Value", noAlerts: "No active alerts", time: "Time", actor: "Actor", action: "Action",
    target: "Target", result: "Result", source: "Source address", role: "Role", setPassword: "Reset password",
    disabled: "disabled", lockedState: "locked", active: "active", addUser: "Add user", add: "Add",
    disable: "Disable", enable: "Enable", unlock: "Unlock", saved: "Saved", error: "Error: ",
    sessionEnded: "The session has ended; please log in again", inactive: "inactive",
    pending: "pending", firing: "firing", alerting: "alerting", recording: "recording", ok: "ok",
    err: "error", roleAdmin: "Administrator", roleOperator: "Operator", roleReviewer: "Reviewer",
    roleAuditor: "Auditor", hour24: "Last 24 hours", days7: "Last 7 days", range: "Range",
    welcome: "Signed in as ",
  },
};

let lang = localStorage.getItem("yunwei.lang") || "zh-CN";
let me = null; // {user, role, permissions, csrf_token}

function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N["zh-CN"][key] || key; }
function roleName(r) { return t("role" + r.charAt(0).toUpperCase() + r.slice(1)); }

/** Builds an element: el("td", {class: "x"}, "text", child, ...). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error && body.error.message) || String(status));
    this.status = status;
    this.kind = body && body.error && body.error.kind;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    const e = new ApiError(r.status, data, r.headers.get("Retry-After"));
    if (r.status === 401 && path !== "/api/v1/auth/login" && path !== "/api/v1/auth/me") {
      me = null;
      renderLogin(t("sessionEnded"));
    }
    throw e;
  }
  return data;
}

function message(kind, text) { return el("div", { class: "msg " + kind, role: "alert" }, text); }

/** A message for a failed call; a 403 says plainly that the role may not do this. */
function errorMessage(e) {
  if (e.status === 403 && e.kind === "forbidden") {
    return message("error", t("forbidden") + t("forbiddenDetail").replace("{role}", roleName(me.role)));
  }
  if (e.kind && I18N["zh-CN"][e.kind]) return message("error", t(e.kind));
  return message("error", t("error") + e.message);
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function setLang(l) {
  lang = l;
  localStorage.setItem("yunwei.lang", l);
  document.documentElement.lang = l;
  route();
}

function toggleLang() { setLang(lang === "zh-CN" ? "en" : "zh-CN"); }

// ---- layout ------------------------------------------------------------------------------

const PAGES = [
  { id: "overview", perm: "read", render: renderOverview },
  { id: "hosts", perm: "read", render: renderHosts },
  { id: "rules", perm: "read", render: renderRules },
  { id: "audit", perm: "audit", render: renderAudit },
  { id: "users", perm: "admin", render: renderUsers },
];

function allowed(perm) { return me && me.permissions.includes(perm); }

function shell(active) {
  const app = document.getElementById("app");
  app.replaceChildren();
  const nav = el("nav", {}, PAGES.filter((p) => allowed(p.perm)).map((p) =>
    el("a", { href: "#/" + p.id, class: p.id === active ? "active" : "", id: "nav-" + p.id }, t(p.id))));
  const header = el("header", {},
    el("span", { class: "brand" }, t("brand")),
    nav,
    el("span", { class: "who", id: "who" }, `${me.user} · ${roleName(me.role)}`),
    el("button", { id: "lang", onclick: toggleLang }, t("lang")),
    el("button", { id: "logout", onclick: logout }, t("logout")));
  const main = el("main", { id: "main" });
  app.append(header, main);
  return main;
}

async function logout() {
  try { await api("POST", "/api/v1/auth/logout"); } catch (_) { /* already ended */ }
  me = null;
  location.hash = "";
  renderLogin();
}

function renderLogin(note) {
  document.documentElement.lang = lang;
  const app = document.getElementById("app");
  const out = el("div", { id: "login-msg" }, note ? message("error", note) : null);
  const user = el("input", { id: "login-user", name: "user", autocomplete: "username", required: "" });
  const pass = el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: "" });
  const form = el("form", { class: "login", id: "login-form" },
    el("h1", {}, t("brand")),
    el("label", { for: "login-user" }, t("user")), user,
    el("label", { for: "login-password" }, t("password")), pass,
    el("button", { type: "submit", id: "login-submit" }, t("login")),
    out,
    el("div", { class: "lang" }, el("a", { href: "#", id: "login-lang", onclick: (ev) => { ev.preventDefault(); lang = lang === "zh-CN" ? "en" : "zh-CN"; localStorage.setItem("yunwei.lang", lang); renderLogin(); } }, t("lang"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      me = await api("POST", "/api/v1/auth/login", { user: user.value, password: pass.value });
      if (!location.hash || location.hash === "#") location.hash = "#/" + firstPage();
      route();
    } catch (e) {
      const text = e.kind === "locked" ? t("lockedMsg").replace("{s}", e.retryAfter || "?")
        : e.kind === "invalid_credentials" ? t("badCredentials")
          : t("loginFailed") + ": " + e.message;
      out.replaceChildren(message("error", text));
    }
  });
  app.replaceChildren(form);
}

function firstPage() {
  const p = PAGES.find((p) => allowed(p.perm));
  return p ? p.id : "overview";
}

async function route() {
  if (!me) {
    try { me = await api("GET", "/api/v1/auth/me"); } catch (_) { renderLogin(); return; }
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  let page = PAGES.find((p) => p.id === parts[0] && allowed(p.perm));
  if (!page) page = PAGES.find((p) => p.id === firstPage());
  const main = shell(page.id);
  try {
    await page.render(main, parts.slice(1).map(decodeURIComponent));
  } catch (e) {
    if (e.status !== 401) main.append(errorMessage(e));
  }
}

// ---- pages -------------------------------------------------------------------------------

function card(label, value, cls, id) {
  return el("div", { class: "card", id }, el("div", { class: "label" }, label),
    el("div", { class: "value " + (cls || "") }, value));
}

async function renderOverview(main) {
  main.append(el("h1", {}, t("overview")));
  const [hosts, alerts] = await Promise.all([api("GET", "/api/v1/hosts"), api("GET", "/api/v1/alerts")]);
  const count = { up: 0, down: 0, unknown: 0 };
  for (const h of hosts.hosts) count[h.status] = (count[h.status] || 0) + 1;
  const firing = alerts.data.alerts.filter((a) => a.state === "firing");
  const sev = {};
  for (const a of firing) {
    const s = (a.labels && a.labels.severity) || "none";
    sev[s] = (sev[s] || 0) + 1;
  }
  main.append(el("div", { class: "cards", id: "overview-cards" },
    card(t("hostsUp"), count.up, "up", "card-up"),
    card(t("hostsDown"), count.down, "down", "card-down"),
    card(t("hostsUnknown"), count.unknown, "unknown", "card-unknown"),
    el("div", { class: "card", id: "card-alerts" },
      el("div", { class: "label" }, `${t("activeAlerts")} (${t("bySeverity")})`),
      el("div", { class: "value" }, firing.length),
      Object.entries(sev).sort().map(([s, n]) => el("span", { class: "tag " + s }, `${s}: ${n}`))),
    el("div", { class: "card", id: "card-incidents" }, el("div", { class: "label" }, t("incidents")),
      el("div", { class: "na" }, t("notYet"))),
    el("div", { class: "card", id: "card-contracts" }, el("div", { class: "label" }, t("contracts")),
      el("div", { class: "na" }, t("notYet")))));
}

function parseFilter(text) {
  const out = [];
  for (const part of text.split(/[,，]/)) {
    const i = part.indexOf("=");
    if (i > 0) out.push([part.slice(0, i).trim(), part.slice(i + 1).trim()]);
  }
  return out;
}

async function renderHosts(main, args) {
  if (args[0]) return renderHost(main, args[0]);
  main.append(el("h1", {}, t("hosts")));
  const input = el("input", { id: "host-filter", placeholder: t("filter"), value: sessionStorage.getItem("yunwei.filter") || "" });
  const tableBox = el("div", { id: "hosts-table" });
  const data = await api("GET", "/api/v1/hosts");
  const draw = () => {
    sessionStorage.setItem("yunwei.filter", input.value);
    const f = parseFilter(input.value);
    const rows = data.hosts.filter((h) => f.every(([k, v]) => (h.labels[k] || "") === v));
    tableBox.replaceChildren(rows.length === 0 ? message("ok", t("noHosts")) : el("table", {},
      el("tr", {}, el("th", {}, t("hostname")), el("th", {}, t("status")), el("th", {}, t("labels")),
        el("th", {}, t("os")), el("th", {}, t("arch")), el("th", {}, t("lastSeen"))),
      rows.map((h) => el("tr", {},
        el("td", {}, el("a", { href: "#/hosts/" + encodeURIComponent(h.agent_id) }, h.hostname)),
        el("td", { class: h.status }, t(h.status)),
        el("td", {}, Object.entries(h.labels).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`))),
        el("td", {}, h.os), el("td", {}, h.arch), el("td", {}, fmtTime(h.last_seen))))));
  };
  input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") draw(); });
  main.append(el("div", { class: "toolbar" }, input, el("button", { id: "host-filter-apply", onclick: draw }, t("apply"))), tableBox);
  draw();
}

/** An inline SVG line chart of [t_seconds, value] points. */
function chart(points) {
  const W = 900, H = 240, L = 60, B = 24, T = 10, R = 10;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const add = (name, attrs, text) => {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
  if (y1 === y0) y1 = y0 + 1;
  const sx = (x) => L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - B - T);
  add("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
  add("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
  for (const v of [y0, (y0 + y1) / 2, y1]) add("text", { x: 4, y: sy(v) + 4 }, Number(v.toPrecision(4)));
  add("text", { x: L, y: H - 6 }, fmtTime(x0 * 1000));
  add("text", { x: W - R - 120, y: H - 6 }, fmtTime(x1 * 1000));
  add("polyline", { class: "line", points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") });
  for (const p of points) add("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: "#1f5fa8" });
  return svg;
}

async function renderHost(main, id) {
  const d = await api("GET", "/api/v1/hosts/" + encodeURIComponent(id));
  const h = d.host;
  main.append(el("p", {}, el("a", { href: "#/hosts" }, "← " + t("back"))),
    el("h1", {}, h.hostname, " ", el("span", { class: h.status }, "(" + t(h.status) + ")")),
    el("table", { id: "host-facts" },
      el("tr", {}, el("th", {}, t("os")), el("td", {}, `${h.os} / ${h.kernel}`)),
      el("tr", {}, el("th", {}, t("arch")), el("td", {}, h.arch)),
      el("tr", {}, el("th", {}, t("labels")), el("td", {}, Object.entries(h.labels).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`)))),
      el("tr", {}, el("th", {}, t("lastSeen")), el("td", {}, fmtTime(h.last_seen)))));
  const metric = el("select", { id: "chart-metric" },
    ["node_load1", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes", "test_metric"].map((m) => el("option", { value: m }, m)));
  const range = el("select", { id: "chart-range" },
    el("option", { value: "86400" }, t("hour24")), el("option", { value: "604800" }, t("days7")));
  const box = el("div", { class: "chart", id: "host-chart" });
  const draw = async () => {
    const to = Date.now() / 1000, from = to - Number(range.value);
    const sel = `${metric.value}{instance="${h.hostname}"}`;
    const r = await api("GET", `/api/v1/series?match=${encodeURIComponent(sel)}&from=${from}&to=${to}&source=rollup`);
    const series = r.data.result[0];
    box.replaceChildren(el("h2", {}, `${t("chartTitle")}: ${metric.value}`),
      series && series.values.length > 0 ? chart(series.values.map((v) => [v[0], Number(v[1])])) : message("ok", t("noData")));
  };
  main.append(el("h2", {}, t("metric")),
    el("div", { class: "toolbar" }, metric, range, el("button", { id: "chart-load", onclick: draw }, t("load"))), box);
  await draw();
}

async function renderRules(main) {
  main.append(el("h1", {}, t("rules")));
  const out = el("div", { id: "rules-msg" });
  const reload = el("button", {
    id: "reload-rules", onclick: async () => {
      try {
        await api("POST", "/api/v1/rules/reload");
        out.replaceChildren(message("ok", t("reloaded")));
      } catch (e) { out.replaceChildren(errorMessage(e)); }
    },
  }, t("reload"));
  main.append(el("div", { class: "toolbar" }, reload), out);
  const [rules, alerts] = await Promise.all([api("GET", "/api/v1/rules"), api("GET", "/api/v1/alerts")]);
  main.append(el("h2", {}, t("activeAlerts")));
  const list = alerts.data.alerts;
  main.append(list.length === 0 ? message("ok", t("noAlerts")) : el("table", { id: "alerts-table" },
    el("tr", {}, el("th", {}, t("alertName")), el("th", {}, t("severity")), el("th", {}, t("state")),
      el("th", {}, t("labels")), el("th", {}, t("since")), el("th", {}, t("value"))),
    list.map((a) => el("tr", {},
      el("td", {}, a.labels.alertname), el("td", { class: a.labels.severity || "" }, a.labels.severity || "—"),
      el("td", {}, t(a.state)),
      el("td", {}, Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`))),
      el("td", {}, a.activeAt ? fmtTime(Date.parse(a.activeAt)) : "—"), el("td", { class: "mono" }, a.value)))));
  main.append(el("h2", {}, t("rules")));
  const rows = [];
  for (const g of rules.data.groups) for (const r of g.rules) rows.push(r);
  main.append(el("table", { id: "rules-table" },
    el("tr", {}, el("th", {}, t("rule")), el("th", {}, t("type")), el("th", {}, t("state")),
      el("th", {}, t("health")), el("th", {}, t("query"))),
    rows.map((r) => el("tr", {}, el("td", {}, r.name), el("td", {}, t(r.type)),
      el("td", {}, r.state ? t(r.state) : "—"), el("td", {}, t(r.health)), el("td", { class: "mono" }, r.query)))));
}

async function renderAudit(main) {
  main.append(el("h1", {}, t("audit")));
  const d = await api("GET", "/api/v1/audit?limit=200");
  main.append(el("table", { id: "audit-table" },
    el("tr", {}, el("th", {}, "#"), el("th", {}, t("time")), el("th", {}, t("actor")), el("th", {}, t("action")),
      el("th", {}, t("target")), el("th", {}, t("result")), el("th", {}, t("source"))),
    d.entries.map((r) => el("tr", {}, el("td", {}, r.seq), el("td", {}, fmtTime(r.ts_ms)), el("td", {}, r.actor),
      el("td", { class: "mono" }, r.action), el("td", { class: "mono" }, r.target), el("td", {}, r.result),
      el("td", {}, r.source)))));
}

async function renderUsers(main) {
  main.append(el("h1", {}, t("users")));
  const out = el("div", { id: "users-msg" });
  const act = async (path, body) => {
    try {
      await api("POST", path, body);
      await route();
      document.getElementById("users-msg").replaceChildren(message("ok", t("saved")));
    } catch (e) { out.replaceChildren(errorMessage(e)); }
  };
  const d = await api("GET", "/api/v1/users");
  main.append(out, el("table", { id: "users-table" },
    el("tr", {}, el("th", {}, t("user")), el("th", {}, t("role")), el("th", {}, t("status")), el("th", {}, "")),
    d.users.map((u) => el("tr", {}, el("td", {}, u.name), el("td", {}, roleName(u.role)),
      el("td", {}, u.disabled ? t("disabled") : u.locked ? t("lockedState") : t("active")),
      el("td", {},
        u.disabled
          ? el("button", { class: "secondary", onclick: () => act(`/api/v1/users/${encodeURIComponent(u.name)}/enable`) }, t("enable"))
          : el("button", { class: "secondary", onclick: () => act(`/api/v1/users/${encodeURIComponent(u.name)}/disable`) }, t("disable")),
        " ",
        u.locked ? el("button", { class: "secondary", onclick: () => act(`/api/v1/users/${encodeURIComponent(u.name)}/unlock`) }, t("unlock")) : null)))));
  const name = el("input", { id: "new-user", placeholder: t("user") });
  const role = el("select", { id: "new-role" }, ["operator", "reviewer", "auditor", "admin"].map((r) => el("option", { value: r }, roleName(r))));
  const pass = el("input", { id: "new-password", type: "password", placeholder: t("password"), autocomplete: "new-password" });
  main.append(el("h2", {}, t("addUser")), el("div", { class: "toolbar" }, name, role, pass,
    el("button", { id: "add-user", onclick: () => act("/api/v1/users", { name: name.value, role: role.value, password: pass.value }) }, t("add"))));
  const who = el("select", { id: "reset-user" }, d.users.map((u) => el("option", { value: u.name }, u.name)));
  const newPass = el("input", { id: "reset-password", type: "password", placeholder: t("password"), autocomplete: "new-password" });
  main.append(el("h2", {}, t("setPassword")), el("div", { class: "toolbar" }, who, newPass,
    el("button", { id: "reset-submit", onclick: () => act(`/api/v1/users/${encodeURIComponent(who.value)}/password`, { password: newPass.value }) }, t("setPassword"))));
}

window.addEventListener("hashchange", () => { if (me) route(); });
document.documentElement.lang = lang;
route();
