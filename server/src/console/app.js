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

/**
 * The server's clock minus the browser's, from the last response's `Date` header (1 s
 * resolution). Times the console proposes (silence ends, maintenance windows, chart ranges)
 * and states it derives (a silence active or expired) follow the server, whose clock the
 * evidence uses, not a laptop's.
 */
let clockSkewMs = 0;
function serverNow() { return Date.now() + clockSkewMs; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && me && me.csrf_token) headers["X-CSRF-Token"] = me.csrf_token;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const date = Date.parse(r.headers.get("Date") || "");
  if (!Number.isNaN(date)) {
    // The header is truncated to the second: add half a second, its expected loss.
    const skew = date + 500 - Date.now();
    // Ignore the header's truncation to the second; take real differences.
    clockSkewMs = Math.abs(skew) > 2000 ? skew : 0;
  }
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
  await overviewExtras();
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
    const to = serverNow() / 1000, from = to - Number(range.value);
    const sel = `${metric.value}{instance="${h.hostname}"}`;
    const r = await api("GET", `/api/v1/yunwei/series?match=${encodeURIComponent(sel)}&from=${from}&to=${to}&source=rollup`);
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

// ---- contracts, incidents, alert groups, silences, maintenance ------------------------------

Object.assign(I18N["zh-CN"], {
  contractsPage: "合同考核", incidentsPage: "事件", alertsPage: "告警与静默", maintenancePage: "维护申请",
  openIncidents: "未关闭事件", noIncidents: "没有未关闭的事件", score: "得分", grade: "等级",
  availability: "可用性", errorBudget: "剩余故障预算", minutes: "分钟", system: "业务系统", tier: "层级",
  target: "目标", actual: "实际", met: "达标", notMet: "未达标", downtime: "停机", excluded: "已剔除",
  missing: "缺数据", period: "考核期", provisional: "暂定（数据可能仍会变化）", final: "最终",
  openBreaches: "当前扣分项", noBreaches: "本期至今没有扣分", item: "扣分项", points: "扣分",
  subject: "对象", arithmetic: "计算", evidence: "证据编号", inspections: "巡检记录", noInspections: "没有巡检记录",
  kind: "类型", scheduled: "计划时间", done: "完成时间", passed: "通过", failed: "未通过", noContracts: "没有加载合同",
  title: "标题", level: "级别", detected: "发现时间", acknowledged: "确认", onsite: "到场", restored: "恢复",
  by: "由", at: "于", srcManual: "人工登记", srcAlert: "告警", newIncident: "登记事件（如电话报障）",
  create: "创建", ack: "确认", unack: "取消确认", resolve: "解决", markOnsite: "已到场", markRestored: "已恢复",
  note: "备注", addNote: "添加备注", rca: "根因分析 (RCA)", saveRca: "保存 RCA", changeLevel: "调整级别",
  reason: "原因", history: "处理记录", backIncidents: "返回事件列表", open: "处理中", closed: "已恢复",
  allIncidents: "全部事件", levelN: "{n}级", noPerm: "您的角色无此权限；点击将被拒绝",
  alertGroups: "告警组", receiver: "接收人", groupLabels: "分组标签", alerts: "告警数", firstNotified: "首次通知",
  ackedBy: "确认人", noGroups: "当前没有告警组", silences: "静默规则", matchers: "匹配条件",
  starts: "开始", ends: "结束", createdBy: "创建人", comment: "说明", expire: "使其失效", expired: "已失效",
  activeState: "生效中", silencePending: "未开始", newSilence: "新建静默", hours: "时长（小时）", noSilences: "没有静默规则",
  matchersHint: "匹配条件，逗号分隔，如 alertname=\"TestMetricHigh\",instance=\"web-01\"",
  exclusions: "维护与剔除申请", newExclusion: "提交维护申请", from: "开始时间", to: "结束时间",
  requestedBy: "申请人", requested: "提交时间", reviewedBy: "审核人", approve: "批准", reject: "驳回",
  pendingState: "待审核", approved: "已批准", rejected: "已驳回", late: "事后补报", submit: "提交",
  kMaintenance: "计划维护", kForce_majeure: "不可抗力", kBuyer_caused: "甲方原因", noExclusions: "没有申请",
  origin: "来源",
  insufficientEvidence: "数据不足", notAssessed: "不予评定", gradeWithheld: "不予评定", partialEvidence: "（部分证据）",
  clock_response: "响应", clock_on_site: "到场", clock_restore: "恢复", clockStatus_met: "按时", clockStatus_late: "已超时",
  clockStatus_running: "计时中", clockStatus_breached: "计时中，已超时",
  insp_daily: "日常巡检", insp_weekly: "每周巡检", insp_before_holiday: "节前巡检",
  decidedBy: "判定依据", vantage_agents: "运维方代理", vantage_server_probes: "服务端独立拨测",
  vantage_both: "代理与服务端拨测（任一方中断即中断）", disagreements: "独立拨测与代理结论不一致",
  disagreementsNote: "服务端（采购方视角）自行拨测的结果与运维方代理的结论相反的时段：代理判为正常而服务端判为中断，或相反。",
  serverProbe: "服务端拨测", agentsView: "代理结论", serverView: "服务端结论", state_up: "正常", state_down: "中断",
});
Object.assign(I18N.en, {
  contractsPage: "Contracts", incidentsPage: "Incidents", alertsPage: "Alerts & silences",
  maintenancePage: "Maintenance", openIncidents: "Open incidents", noIncidents: "No open incidents",
  score: "Score", grade: "Grade", availability: "Availability", errorBudget: "Error budget left",
  minutes: "min", system: "System", tier: "Tier", target: "Target", actual: "Actual", met: "met",
  notMet: "not met", downtime: "Downtime", excluded: "Excluded", missing: "No data", period: "Period",
  provisional: "Provisional (figures may still change)", final: "Final", openBreaches: "Open breaches",
  noBreaches: "No deductions so far in this period", item: "Item", points: "Points", subject: "Subject",
  arithmetic: "Arithmetic", evidence: "Evidence ids", inspections: "Inspections",
  noInspections: "No inspection records", kind: "Kind", scheduled: "Scheduled", done: "Done",
  passed: "passed", failed: "failed", noContracts: "No contracts loaded", title: "Title", level: "Level",
  detected: "Detected", acknowledged: "Acknowledged", onsite: "On site", restored: "Restored", by: "by",
  at: "at", srcManual: "manual", srcAlert: "alert", newIncident: "Open an incident (e.g. a phoned-in fault)",
  create: "Create", ack: "Acknowledge", unack: "Unacknowledge", resolve: "Resolve", markOnsite: "On site",
  markRestored: "Restored", note: "Note", addNote: "Add note", rca: "Root cause analysis (RCA)",
  saveRca: "Save RCA", changeLevel: "Change level", reason: "Reason", history: "History",
  backIncidents: "Back to incidents", open: "open", closed: "restored", allIncidents: "All incidents",
  levelN: "Level {n}", noPerm: "Your role may not do this; pressing it will be refused",
  alertGroups: "Alert groups", receiver: "Receiver", groupLabels: "Group labels", alerts: "Alerts",
  firstNotified: "First notified", ackedBy: "Acknowledged by", noGroups: "No alert groups",
  silences: "Silences", matchers: "Matchers", starts: "Starts", ends: "Ends", createdBy: "Created by",
  comment: "Comment", expire: "Expire", expired: "expired", activeState: "active", silencePending: "not started", newSilence: "New silence",
  hours: "Duration (hours)", noSilences: "No silences",
  matchersHint: "Matchers, comma separated, e.g. alertname=\"TestMetricHigh\",instance=\"web-01\"",
  exclusions: "Maintenance and exclusion requests", newExclusion: "Request a maintenance window",
  from: "From", to: "To", requestedBy: "Requested by", requested: "Filed", reviewedBy: "Reviewed by",
  approve: "Approve", reject: "Reject", pendingState: "pending", approved: "approved", rejected: "rejected",
  late: "filed after the fact", submit: "Submit", kMaintenance: "Planned maintenance",
  kForce_majeure: "Force majeure", kBuyer_caused: "Caused by the buyer", noExclusions: "No requests",
  origin: "Origin",
  insufficientEvidence: "insufficient evidence", notAssessed: "not assessed", gradeWithheld: "not graded",
  partialEvidence: " (partial evidence)", clock_response: "response", clock_on_site: "on site", clock_restore: "restore",
  clockStatus_met: "met", clockStatus_late: "late", clockStatus_running: "running", clockStatus_breached: "running, past target",
  insp_daily: "daily inspection", insp_weekly: "weekly inspection", insp_before_holiday: "before-holiday inspection",
  decidedBy: "Decided by", vantage_agents: "the vendor's agents", vantage_server_probes: "the server's own probes",
  vantage_both: "agents and server probes (down when either says down)",
  disagreements: "Independent probes disagreeing with the agents",
  disagreementsNote: "Spans in which the server's own probes (the office's vantage) and the vendor's agents reach opposite results: the agents say up and the server down, or the reverse.",
  serverProbe: "Server probe", agentsView: "Agents", serverView: "Server", state_up: "up", state_down: "down",
});

PAGES.splice(1, 0,
  { id: "contractsPage", perm: "read", render: renderContracts },
  { id: "incidentsPage", perm: "read", render: renderIncidents },
  { id: "alertsPage", perm: "read", render: renderAlertGroups },
  { id: "maintenancePage", perm: "read", render: renderMaintenance });

function pct(v) { return v === null || v === undefined ? "—" : `${Number(v).toFixed(3)}%`; }
/** A system's availability so far, or "insufficient evidence" (数据不足) below its coverage minimum. */
function actualText(y) { return y.insufficient_evidence ? t("insufficientEvidence") : pct(y.actual_percent); }
function mins(v) { return `${Math.round(Number(v) * 10) / 10} ${t("minutes")}`; }
function localName(o) { return lang === "en" ? (o.name_en || o.name) : o.name; }
function kindName(k) { return t("k" + k.charAt(0).toUpperCase() + k.slice(1)); }
function levelName(n) { return t("levelN").replace("{n}", lang === "en" ? n : "一二三四"[n - 1] || n); }

/** An action button; a role lacking `perm` still sees it, dimmed, and the server refuses it. */
function actButton(id, label, perm, onclick, cls) {
  const mine = allowed(perm);
  return el("button", { id, class: (cls || "") + (mine ? "" : " noperm"), title: mine ? null : t("noPerm"), onclick }, label);
}

/** Runs an API call, then re-renders the page and shows `ok`; a failure is shown in `out`. */
async function doAct(out, method, path, body, okText) {
  try {
    await api(method, path, body);
    await route();
    const box = document.getElementById(out.id);
    if (box) box.replaceChildren(message("ok", okText || t("saved")));
  } catch (e) { out.replaceChildren(errorMessage(e)); }
}

async function contractStatuses() {
  const list = (await api("GET", "/api/v1/contracts")).contracts;
  const status = await Promise.all(list.map((c) => api("GET", `/api/v1/contracts/${encodeURIComponent(c.id)}/status`)));
  return list.map((c, i) => ({ c, s: status[i] }));
}

/** The period's grade: withheld (insufficient evidence), or its name, marked when it rests on
 * partial evidence. */
function gradeOf(s) {
  if (s.grade_withheld) return t("gradeWithheld");
  if (!s.grade) return "—";
  return localName({ name: s.grade.name, name_en: s.grade.name_en }) + (s.grade.partial_evidence ? t("partialEvidence") : "");
}

function gradeText(s) {
  return `${s.score} · ${gradeOf(s)}`;
}

// The assessment's notes, provisional reasons and deduction arithmetic come as a code with
// parameters (sla/src/assess/text.rs); the reports crate renders the same codes
// (reports/src/i18n/messages.rs).
const MSG = {
  "zh-CN": {
    period_outside_contract: (p) => `考核周期 ${p.period}（${p.start}..${p.end}）不在合同期 ${p.contract_start}..${p.contract_end} 之内`,
    no_subjects: (p) => `系统 ${p.name}（${p.system}）未选中任何主机或探测，没有任何证据：数据不足，不予评定`,
    insufficient_evidence: (p) => `系统 ${p.name}（${p.system}）服务时段内有数据的时间占 ${covText(p.coverage_percent)}，低于合同约定的证据覆盖率下限 ${p.min_coverage_percent}%：数据不足，不予评定（无可用率，不判定达标与否，不扣可用性分）`,
    grade_withheld: (p) => `因系统 ${p.systems.join("、")} 数据不足，本期等级不予评定，付款比例待甲方核定`,
    grade_on_partial_evidence: (p) => `因系统 ${p.systems.join("、")} 数据不足，本期等级仅依据部分证据评定`,
    unknown_incident_level: (p) => `故障 ${p.incident}：合同未定义等级“${p.level}”，不计时`,
    incident_without_system: (p) => `故障 ${p.incident}：未对应合同中的任何系统，按 7x24 计时`,
    calendar_year_missing: (p) => `节假日日历缺少 ${p.year} 年的数据：周一至周五按工作日计`,
    window_year_missing: () => "服务时段用到了节假日日历缺少的年份",
    period_not_over: () => "考核周期尚未结束",
    inspections_not_recorded: (p) => `${p.count} 次巡检应于本系统开始记录巡检之前完成，不予考核`,
    incidents_open: (p) => `故障 ${p.incidents.join("、")} 尚未恢复，其计时仍在进行；恢复后将重新出具本期报告（新版本）`,
    availability_short: (p) => `实际 ${p.actual_percent.toFixed(4)}%，目标 ${p.target_percent.toFixed(4)}%：差 ${p.short_pp.toFixed(4)} 个百分点 = ${p.steps} 档 × 每档 ${p.step_pp} 个百分点 × ${p.points} 分`,
    clock_late: (p) => `${clockName(p.clock)}超时 ${p.late_minutes.toFixed(1)} 分钟（${clockStatus(p.status)}）` + (p.units !== null && p.per_minutes !== null ? `= ${p.units} × 每 ${p.per_minutes} 分钟 × ${p.points} 分` : `：${p.points} 分`),
    inspection_missed: (p) => `漏巡检：${p.points} 分`,
    resource_breach: (p) => `${p.value.toFixed(4)} ≥ 限值 ${p.below}：${p.points} 分`,
    manual: (p) => `${p.evidence}：${p.points} 分`,
  },
  en: {
    period_outside_contract: (p) => `The period ${p.period} (${p.start}..${p.end}) is not inside the contract period ${p.contract_start}..${p.contract_end}.`,
    no_subjects: (p) => `System ${p.name} (${p.system}) selects no host or probe, so there is no evidence: insufficient evidence, not assessed.`,
    insufficient_evidence: (p) => `System ${p.name} (${p.system}): data covers ${covText(p.coverage_percent)} of its service window, below the contract's minimum evidence coverage of ${p.min_coverage_percent}%: insufficient evidence, not assessed (no availability figure, neither met nor breached, no availability deduction).`,
    grade_withheld: (p) => `The grade is withheld because of insufficient evidence for ${p.systems.join(", ")}; the payable share is for the buyer to decide.`,
    grade_on_partial_evidence: (p) => `The grade rests on partial evidence: insufficient evidence for ${p.systems.join(", ")}.`,
    unknown_incident_level: (p) => `Incident ${p.incident}: level "${p.level}" is not defined by the contract; no clocks.`,
    incident_without_system: (p) => `Incident ${p.incident}: matches no system of the contract; its clocks run 7x24.`,
    calendar_year_missing: (p) => `The calendar has no data for ${p.year}: Monday to Friday were taken as working days.`,
    window_year_missing: () => "A service window needed a year the calendar lacks.",
    period_not_over: () => "The period is not over.",
    inspections_not_recorded: (p) => `${p.count} inspections were due before yunwei began recording inspections and are not assessed.`,
    incidents_open: (p) => `Incidents ${p.incidents.join(", ")} are still open and their clocks still run; this period's report is issued again (a new version) when they close.`,
    availability_short: (p) => `${p.actual_percent.toFixed(4)}% vs target ${p.target_percent.toFixed(4)}%: ${p.short_pp.toFixed(4)} pp short = ${p.steps} × ${p.step_pp} pp × ${p.points} points`,
    clock_late: (p) => `${clockName(p.clock)} ${p.late_minutes.toFixed(1)} min late (${clockStatus(p.status)})` + (p.units !== null && p.per_minutes !== null ? ` = ${p.units} × ${p.per_minutes} min × ${p.points} points` : `: ${p.points} points`),
    inspection_missed: (p) => `missed inspection: ${p.points} points`,
    resource_breach: (p) => `${p.value.toFixed(4)} ≥ limit ${p.below}: ${p.points} points`,
    manual: (p) => `${p.evidence}: ${p.points} points`,
  },
};
function covText(v) { return v === null || v === undefined ? "—" : `${Number(v).toFixed(2)}%`; }
function clockName(c) { return t("clock_" + c); }
function clockStatus(s) { return t("clockStatus_" + s); }
/** What a deduction line concerns; a missed inspection by its kind and scheduled time. */
function lineSubject(l) {
  if (l.detail && l.detail.code === "inspection_missed") return `${t("insp_" + l.detail.kind)} ${fmtTime(l.detail.scheduled_ms)}`;
  return l.subject;
}
/** A message (note, reason, deduction arithmetic) in the page's language. */
function msgText(m) {
  const f = (MSG[lang] || MSG["zh-CN"])[m.code] || MSG["zh-CN"][m.code];
  return f ? f(m) : m.code;
}

async function overviewExtras() {
  const [inc, cs] = await Promise.all([api("GET", "/api/v1/incidents?open=true"), contractStatuses()]);
  const open = inc.data.filter((i) => i.restored_ms === null);
  document.getElementById("card-incidents").replaceWith(el("div", { class: "card", id: "card-incidents" },
    el("div", { class: "label" }, t("incidents")),
    el("div", { class: "value " + (open.length ? "down" : "up") }, open.length),
    open.slice(0, 5).map((i) => el("div", {}, el("a", { href: "#/incidentsPage/" + encodeURIComponent(i.id) }, `${levelName(i.level)} · ${i.title}`)))));
  document.getElementById("card-contracts").replaceWith(el("div", { class: "card", id: "card-contracts" },
    el("div", { class: "label" }, t("contracts")),
    cs.length === 0 ? el("div", { class: "na" }, t("noContracts")) : null,
    cs.map(({ c, s }) => el("div", { class: "contract-line" },
      el("a", { href: "#/contractsPage" }, c.name), " ", el("b", {}, gradeText(s)),
      s.systems.map((y) => el("div", { class: "sys " + (y.insufficient_evidence ? "na" : y.met ? "up" : "down") },
        `${y.name}: ${actualText(y)} / ${pct(y.target_percent)} · ${t("errorBudget")} ${mins(y.error_budget_left_minutes)}`))))));
}

async function renderContracts(main) {
  main.append(el("h1", {}, t("contractsPage")));
  const cs = await contractStatuses();
  if (cs.length === 0) { main.append(message("ok", t("noContracts"))); return; }
  for (const { c, s } of cs) {
    const box = el("section", { class: "contract", id: "contract-" + c.id });
    box.append(el("h2", {}, `${c.name} (${c.id})`),
      el("div", { class: "cards" },
        card(t("score"), s.score, "", null),
        card(t("grade"), gradeOf(s), "", null),
        card(t("period"), s.period.label, "", null)),
      el("p", { class: s.provisional ? "warning" : "" }, s.provisional ? t("provisional") : t("final")),
      (s.provisional_reasons || []).concat(s.notes || []).length === 0 ? null : el("ul", { class: "contract-notes" },
        (s.provisional_reasons || []).concat(s.notes || []).map((m) => el("li", {}, msgText(m)))));
    box.append(el("h2", {}, t("availability")), el("table", { class: "contract-systems" },
      el("tr", {}, ["system", "tier", "target", "actual", "status", "downtime", "excluded", "missing", "errorBudget", "decidedBy"].map((k) => el("th", {}, t(k)))),
      s.systems.map((y) => el("tr", { "data-system": y.id }, el("td", {}, y.name), el("td", {}, y.tier), el("td", {}, pct(y.target_percent)),
        el("td", {}, actualText(y)), el("td", { class: y.insufficient_evidence ? "na" : y.met ? "up" : "down" }, y.insufficient_evidence ? t("notAssessed") : y.met ? t("met") : t("notMet")),
        el("td", {}, mins(y.downtime_minutes)), el("td", {}, mins(y.excluded_minutes)), el("td", {}, mins(y.missing_minutes)),
        el("td", {}, mins(y.error_budget_left_minutes)), el("td", { class: "decided-by" }, t("vantage_" + (y.decided_by || "agents")))))));
    // Spans in which the server's own probes and the agents disagree (none: no section).
    const dis = s.disagreements || [];
    if (dis.length > 0) {
      const sysName = (id) => (s.systems.find((y) => y.id === id) || { name: id }).name;
      box.append(el("h2", {}, t("disagreements")), el("p", { class: "note" }, t("disagreementsNote")),
        el("table", { class: "contract-disagreements" },
          el("tr", {}, ["system", "serverProbe", "from", "to", "agentsView", "serverView", "minutes", "evidence"].map((k) => el("th", {}, t(k)))),
          dis.map((d) => el("tr", {}, el("td", {}, sysName(d.system)), el("td", {}, d.probe), el("td", {}, fmtTime(d.from_ms)),
            el("td", {}, fmtTime(d.to_ms)), el("td", { class: d.agents }, t("state_" + d.agents)),
            el("td", { class: d.server }, t("state_" + d.server)), el("td", {}, d.minutes), el("td", { class: "mono" }, d.evidence.join(", "))))));
    }
    box.append(el("h2", {}, t("openBreaches")));
    const lines = [];
    for (const d of s.open_breaches) for (const l of d.lines) lines.push([d, l]);
    box.append(lines.length === 0 ? message("ok", t("noBreaches")) : el("table", { class: "contract-breaches" },
      el("tr", {}, ["item", "subject", "arithmetic", "points", "evidence"].map((k) => el("th", {}, t(k)))),
      lines.map(([d, l]) => el("tr", {}, el("td", {}, localName(d)), el("td", {}, lineSubject(l)), el("td", { class: "mono" }, l.detail ? msgText(l.detail) : l.arithmetic),
        el("td", {}, l.points), el("td", { class: "mono" }, l.evidence.join(", "))))));
    const ins = (await api("GET", `/api/v1/contracts/${encodeURIComponent(c.id)}/inspections`)).inspections;
    box.append(el("h2", {}, t("inspections")), ins.length === 0 ? message("ok", t("noInspections")) : el("table", { class: "contract-inspections" },
      el("tr", {}, ["kind", "scheduled", "done", "result"].map((k) => el("th", {}, t(k)))),
      ins.map((r) => el("tr", {}, el("td", {}, r.kind), el("td", {}, fmtTime(r.scheduled_ms)), el("td", {}, fmtTime(r.done_ms)),
        el("td", { class: r.ok ? "up" : "down" }, r.ok ? t("passed") : t("failed"))))));
    main.append(box);
  }
}

function clockCell(ms, who) {
  if (ms === null || ms === undefined) return "—";
  return who ? `${fmtTime(ms)} (${who})` : fmtTime(ms);
}

async function renderIncidents(main, args) {
  if (args[0]) return renderIncident(main, args[0]);
  main.append(el("h1", {}, t("incidentsPage")));
  const out = el("div", { id: "incidents-msg" });
  const title = el("input", { id: "inc-title", placeholder: t("title") });
  const level = el("select", { id: "inc-level" }, [1, 2, 3, 4].map((n) => el("option", { value: n }, levelName(n))));
  const note = el("input", { id: "inc-note", placeholder: t("note") });
  main.append(el("h2", {}, t("newIncident")), el("div", { class: "toolbar" }, title, level, note,
    actButton("inc-create", t("create"), "operate", () => doAct(out, "POST", "/api/v1/incidents",
      { title: title.value, level: Number(level.value), note: note.value || null }))), out);
  const d = await api("GET", "/api/v1/incidents");
  main.append(el("h2", {}, t("allIncidents")), d.data.length === 0 ? message("ok", t("noIncidents")) : el("table", { id: "incidents-table" },
    el("tr", {}, ["title", "level", "origin", "detected", "acknowledged", "onsite", "restored"].map((k) => el("th", {}, t(k)))),
    d.data.map((i) => el("tr", {},
      el("td", {}, el("a", { href: "#/incidentsPage/" + encodeURIComponent(i.id) }, i.title)),
      el("td", { class: i.level <= 2 ? "critical" : "" }, levelName(i.level)),
      el("td", {}, i.source === "manual" ? t("srcManual") : t("srcAlert")), el("td", {}, fmtTime(i.detected_ms)),
      el("td", {}, clockCell(i.acknowledged_ms, i.acknowledged_by)), el("td", {}, clockCell(i.onsite_ms)),
      el("td", { class: i.restored_ms ? "up" : "down" }, i.restored_ms ? fmtTime(i.restored_ms) : t("open"))))));
}

async function renderIncident(main, id) {
  const d = (await api("GET", "/api/v1/incidents/" + encodeURIComponent(id))).data;
  const i = d.incident;
  const base = "/api/v1/incidents/" + encodeURIComponent(id);
  const out = el("div", { id: "incident-msg" });
  main.append(el("p", {}, el("a", { href: "#/incidentsPage" }, "← " + t("backIncidents"))),
    el("h1", {}, `${levelName(i.level)} · ${i.title}`),
    el("table", { id: "incident-facts" },
      el("tr", {}, el("th", {}, t("origin")), el("td", {}, `${i.source === "manual" ? t("srcManual") : t("srcAlert")} (${i.created_by})`)),
      el("tr", {}, el("th", {}, t("labels")), el("td", {}, Object.entries(i.labels).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`)))),
      el("tr", {}, el("th", {}, t("detected")), el("td", {}, fmtTime(i.detected_ms))),
      el("tr", {}, el("th", {}, t("acknowledged")), el("td", { id: "incident-ack" }, clockCell(i.acknowledged_ms, i.acknowledged_by))),
      el("tr", {}, el("th", {}, t("onsite")), el("td", { id: "incident-onsite" }, clockCell(i.onsite_ms))),
      el("tr", {}, el("th", {}, t("restored")), el("td", { id: "incident-restored" }, clockCell(i.restored_ms))),
      el("tr", {}, el("th", {}, t("rca")), el("td", {}, i.rca || "—"))),
    el("div", { class: "toolbar actions" },
      i.acknowledged_ms ? null : actButton("incident-ack-btn", t("ack"), "operate", () => doAct(out, "POST", base + "/ack", {})),
      i.onsite_ms ? null : actButton("incident-onsite-btn", t("markOnsite"), "operate", () => doAct(out, "POST", base + "/onsite", {})),
      i.restored_ms ? null : actButton("incident-restore-btn", t("markRestored"), "operate", () => doAct(out, "POST", base + "/restore", {}))),
    out);
  const note = el("input", { id: "incident-note", placeholder: t("note") });
  const rca = el("textarea", { id: "incident-rca", rows: 3, placeholder: t("rca") }, i.rca || "");
  const level = el("select", { id: "incident-level" }, [1, 2, 3, 4].map((n) => el("option", n === i.level ? { value: n, selected: "" } : { value: n }, levelName(n))));
  const reason = el("input", { id: "incident-level-reason", placeholder: t("reason") });
  main.append(el("h2", {}, t("note")), el("div", { class: "toolbar" }, note,
    actButton("incident-note-btn", t("addNote"), "operate", () => doAct(out, "POST", base + "/note", { text: note.value }))),
  el("h2", {}, t("rca")), el("div", { class: "toolbar" }, rca,
    actButton("incident-rca-btn", t("saveRca"), "operate", () => doAct(out, "POST", base + "/rca", { text: rca.value }))),
  el("h2", {}, t("changeLevel")), el("div", { class: "toolbar" }, level, reason,
    actButton("incident-level-btn", t("changeLevel"), "operate", () => doAct(out, "POST", base + "/level", { level: Number(level.value), reason: reason.value }))));
  main.append(el("h2", {}, t("history")), el("table", { id: "incident-events" },
    el("tr", {}, ["time", "action", "actor", "comment"].map((k) => el("th", {}, t(k)))),
    d.events.map((e) => el("tr", {}, el("td", {}, fmtTime(e.at_ms)), el("td", {}, e.kind), el("td", {}, e.actor), el("td", {}, e.detail)))));
}

async function renderAlertGroups(main) {
  main.append(el("h1", {}, t("alertsPage")));
  const out = el("div", { id: "alerts-msg" });
  main.append(out);
  const [g, s] = await Promise.all([api("GET", "/api/v1/notify/groups"), api("GET", "/api/v1/silences")]);
  main.append(el("h2", {}, t("alertGroups")), g.data.length === 0 ? message("ok", t("noGroups")) : el("table", { id: "groups-table" },
    el("tr", {}, ["receiver", "groupLabels", "alerts", "firstNotified", "ackedBy", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    g.data.map((x, n) => el("tr", {}, el("td", {}, x.receiver),
      el("td", {}, Object.entries(x.groupLabels || {}).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`))),
      el("td", {}, x.alerts.length), el("td", {}, fmtTime(x.firstNotifiedMs)),
      el("td", {}, x.ackedBy ? `${x.ackedBy} (${fmtTime(x.ackedMs)})` : "—"),
      el("td", {}, ["ack", "unack", "resolve"].map((a) => actButton(`group-${a}-${n}`, t(a), "operate",
        () => doAct(out, "POST", `/api/v1/notify/groups/${encodeURIComponent(x.id)}/${a}`, {}), "secondary")))))));
  main.append(el("h2", {}, t("silences")), s.data.length === 0 ? message("ok", t("noSilences")) : el("table", { id: "silences-table" },
    el("tr", {}, ["matchers", "starts", "ends", "createdBy", "comment", "status", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    s.data.map((x) => el("tr", {}, el("td", { class: "mono" }, x.matchers.join(", ")), el("td", {}, fmtTime(x.starts_ms)),
      el("td", {}, fmtTime(x.ends_ms)), el("td", {}, x.created_by), el("td", {}, x.comment),
      el("td", { class: x.state === "expired" ? "" : "warning" }, t(x.state === "active" ? "activeState" : x.state === "pending" ? "silencePending" : "expired")),
      el("td", {}, x.state !== "expired" ? actButton("silence-expire-" + x.id, t("expire"), "operate",
        () => doAct(out, "POST", `/api/v1/silences/${encodeURIComponent(x.id)}/expire`, {}), "secondary") : null)))));
  const matchers = el("input", { id: "silence-matchers", placeholder: t("matchersHint") });
  const hours = el("input", { id: "silence-hours", type: "number", min: "0.1", step: "0.5", value: "2", class: "short" });
  const comment = el("input", { id: "silence-comment", placeholder: t("comment") });
  main.append(el("h2", {}, t("newSilence")), el("div", { class: "toolbar" }, matchers, el("label", {}, t("hours"), " ", hours), comment,
    actButton("silence-create", t("create"), "operate", () => doAct(out, "POST", "/api/v1/silences", {
      matchers: splitMatchers(matchers.value), ends_ms: serverNow() + Number(hours.value) * 3600000, comment: comment.value,
    }))));
}

/** Splits `a="x",b=~"y,z"` at the commas outside quotes. */
function splitMatchers(text) {
  const out = [];
  let cur = "", q = false;
  for (const ch of text) {
    if (ch === "\"") q = !q;
    if ((ch === "," || ch === "，") && !q) { if (cur.trim()) out.push(cur.trim()); cur = ""; } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function toLocalInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

async function renderMaintenance(main) {
  main.append(el("h1", {}, t("exclusions")));
  const out = el("div", { id: "maint-msg" });
  main.append(out);
  const d = await api("GET", "/api/v1/exclusions");
  main.append(d.data.length === 0 ? message("ok", t("noExclusions")) : el("table", { id: "exclusions-table" },
    el("tr", {}, ["kind", "matchers", "from", "to", "reason", "requestedBy", "requested", "status", "reviewedBy", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    d.data.map((x) => el("tr", { id: "exclusion-" + x.id },
      el("td", {}, kindName(x.kind)), el("td", { class: "mono" }, x.matchers.join(", ")),
      el("td", {}, fmtTime(x.from_ms)), el("td", {}, fmtTime(x.to_ms)), el("td", {}, x.reason),
      el("td", {}, x.requested_by),
      // Filed after the window began: counted as "filed after the fact" by the assessment.
      el("td", {}, fmtTime(x.requested_ms), x.requested_ms > x.from_ms ? el("span", { class: "tag late" }, t("late")) : null),
      el("td", { class: x.status === "approved" ? "up" : x.status === "rejected" ? "down" : "warning" },
        t(x.status === "pending" ? "pendingState" : x.status)),
      el("td", {}, x.reviewed_by ? `${x.reviewed_by} (${fmtTime(x.reviewed_ms)})` : "—"),
      el("td", {}, x.status !== "pending" ? null : [
        actButton("exclusion-approve-" + x.id, t("approve"), "approve", () => doAct(out, "POST", `/api/v1/exclusions/${encodeURIComponent(x.id)}/approve`, {})),
        " ",
        actButton("exclusion-reject-" + x.id, t("reject"), "approve", () => doAct(out, "POST", `/api/v1/exclusions/${encodeURIComponent(x.id)}/reject`, {}), "secondary")])))));
  const kind = el("select", { id: "excl-kind" }, ["maintenance", "force_majeure", "buyer_caused"].map((k) => el("option", { value: k }, kindName(k))));
  const matchers = el("input", { id: "excl-matchers", placeholder: t("matchersHint") });
  const from = el("input", { id: "excl-from", type: "datetime-local", value: toLocalInput(serverNow() + 3600000), class: "dt" });
  const to = el("input", { id: "excl-to", type: "datetime-local", value: toLocalInput(serverNow() + 3 * 3600000), class: "dt" });
  const reason = el("input", { id: "excl-reason", placeholder: t("reason") });
  main.append(el("h2", {}, t("newExclusion")), el("div", { class: "toolbar" }, kind, matchers),
    el("div", { class: "toolbar" }, el("label", {}, t("from"), " ", from), el("label", {}, t("to"), " ", to), reason,
      actButton("excl-submit", t("submit"), "operate", () => doAct(out, "POST", "/api/v1/exclusions", {
        kind: kind.value, matchers: splitMatchers(matchers.value), from_ms: new Date(from.value).getTime(),
        to_ms: new Date(to.value).getTime(), reason: reason.value,
      }))));
}

// ---- reports ------------------------------------------------------------------------------

Object.assign(I18N["zh-CN"], {
  reportsPage: "报告", reportsTitle: "考核报告", generateReport: "生成报告", contract: "合同",
  periodHint: "考核期，如 2026-10、2026-Q3、2026", formats: "格式",
  evidenceFile: "证据文件", evidenceFileHint: "报告据以计算的全部证据（合同、日历、证据行）；用 yunwei-server report recompute 离线复算", language: "语言", generate: "生成",
  version: "版本", generatedAt: "生成时间", sha256: "SHA-256", download: "下载", noReports: "尚未生成报告",
  originCli: "命令行", originApi: "控制台/API", originSchedule: "定时任务", generated: "已生成：{c} {p} 第 {v} 版",
  langZh: "中文", langEn: "英文", provisionalShort: "暂定", gExcellent: "优秀", gGood: "良好", gPass: "合格",
  gFair: "基本合格", gFail: "不合格", gWithheld: "不予评定", mail: "邮件", mailSent: "已发送", mailPending: "待发送", mailFailed: "发送失败",
  verifyPre: "每个报告文件都带有签名。下载后用", verifyCmd: "yunwei-server report verify --public-key 公钥文件 文件名",
  verifyPost: "校验其完整性与签名（在服务器上可用 --data-dir 数据目录 代替公钥文件）；同一考核期重新生成会得到新版本，旧版本保留在归档中不可更改。",
  lifecycleState: "状态", stAppealOpen: "初稿 · 申诉期至 {d}", stInReview: "初稿 · 复核与签认至 {d}",
  stAwaitingFinal: "初稿 · 复核期已过，待生成终稿", stFinal: "终稿", stSuperseded: "已被第 {v} 版取代",
  stPending: "{n} 项申诉待复核", stSigned: "{r} {u} 已签认",
});
Object.assign(I18N.en, {
  reportsPage: "Reports", reportsTitle: "Assessment reports", generateReport: "Generate a report",
  contract: "Contract", periodHint: "Period, e.g. 2026-10, 2026-Q3, 2026", formats: "Formats",
  evidenceFile: "evidence file", evidenceFileHint: "Everything the report was computed from (contract, calendars, evidence rows); recompute it offline with yunwei-server report recompute",
  language: "Language", generate: "Generate", version: "Version", generatedAt: "Generated at",
  sha256: "SHA-256", download: "Download", noReports: "No reports generated yet", originCli: "command line",
  originApi: "console/API", originSchedule: "schedule", generated: "Generated: {c} {p} version {v}",
  langZh: "Chinese", langEn: "English", provisionalShort: "provisional", gExcellent: "excellent",
  gGood: "good", gPass: "pass", gFair: "fair", gFail: "fail", gWithheld: "not graded", mail: "Mail", mailSent: "sent",
  mailPending: "pending", mailFailed: "failed",
  verifyPre: "Every report file carries its signature. After downloading, check its integrity and signature with",
  verifyCmd: "yunwei-server report verify --public-key KEY_FILE FILE",
  verifyPost: "(on the server, --data-dir DATA_DIR instead of the key file). Regenerating a period makes a new " +
    "version; earlier versions stay in the archive unchanged.",
  lifecycleState: "State", stAppealOpen: "draft · appeals until {d}", stInReview: "draft · review and sign-off until {d}",
  stAwaitingFinal: "draft · review deadline passed, final version due", stFinal: "final", stSuperseded: "superseded by version {v}",
  stPending: "{n} appeal(s) pending review", stSigned: "signed off by {u} ({r})",
});

PAGES.push({ id: "reportsPage", perm: "reports", render: renderReports });

/** A report's grade key (excellent, good, pass, fair, fail) in the page's language. */
function gradeName(g) { return t("g" + g.charAt(0).toUpperCase() + g.slice(1)); }
function originName(o) { return t("origin" + o.charAt(0).toUpperCase() + o.slice(1)); }

/** A version's place in its period's lifecycle (contracts with a `lifecycle:`), else its
 * provisional mark. */
function stateCell(r) {
  const l = r.lifecycle;
  if (!l) return el("td", { class: "state" }, r.provisional ? el("span", { class: "tag late" }, t("provisionalShort")) : "—");
  const key = { appeal_open: "stAppealOpen", in_review: "stInReview", awaiting_final: "stAwaitingFinal", final: "stFinal", superseded: "stSuperseded" }[l.state];
  const text = t(key).replace("{d}", l.deadline_ms ? fmtTime(l.deadline_ms) : "").replace("{v}", l.superseded_by);
  const extra = [];
  if (l.pending_appeals > 0 && l.state !== "final" && l.state !== "superseded") extra.push(t("stPending").replace("{n}", l.pending_appeals));
  for (const s of l.signed_off) extra.push(t("stSigned").replace("{r}", roleName(s.role)).replace("{u}", s.signed_by));
  return el("td", { class: "state state-" + l.state, "data-state": l.state },
    el("span", { class: "tag" + (l.state === "final" ? " up" : l.state === "superseded" ? "" : " late") }, text),
    extra.map((x) => el("div", { class: "note" }, x)));
}

/** A scheduled report's mail: status (sent with its time), recipients and last error as tooltip. */
function mailCell(d) {
  if (!d) return el("td", { class: "mail" }, "—");
  const status = d.status.charAt(0).toUpperCase() + d.status.slice(1);
  const tip = [d.to.concat(d.cc).join(", "), d.last_error || ""].filter((x) => x).join("\n");
  return el("td", { class: "mail mail-" + d.status, title: tip }, t("mail" + status),
    d.sent_ms ? " " + fmtTime(d.sent_ms) : "");
}

async function renderReports(main) {
  main.append(el("h1", {}, t("reportsTitle")), el("p", { class: "note", id: "reports-verify" },
    t("verifyPre"), " ", el("code", {}, t("verifyCmd")), " ", t("verifyPost")));
  const out = el("div", { id: "reports-msg" });
  const [cl, list] = await Promise.all([api("GET", "/api/v1/contracts"), api("GET", "/api/v1/reports")]);
  const names = {};
  for (const c of cl.contracts) names[c.id] = c.name;
  const contract = el("select", { id: "report-contract" }, cl.contracts.map((c) => el("option", { value: c.id }, `${c.name} (${c.id})`)));
  // The default period is the chosen contract's current month in its own time zone, as the
  // server reckons it (a browser elsewhere, or with a wrong clock, would pick another month).
  const current = {};
  for (const c of cl.contracts) current[c.id] = c.current_period || "";
  const period = el("input", { id: "report-period", placeholder: t("periodHint"), value: current[contract.value] || "", class: "short" });
  contract.addEventListener("change", () => { period.value = current[contract.value] || ""; });
  const boxes = ["html", "pdf", "xlsx", "json"].map((f) => el("input", { type: "checkbox", id: "report-fmt-" + f, value: f, ...(f === "html" || f === "json" ? { checked: "" } : {}) }));
  const rlang = el("select", { id: "report-lang" },
    el("option", lang === "en" ? { value: "zh-CN" } : { value: "zh-CN", selected: "" }, t("langZh")),
    el("option", lang === "en" ? { value: "en", selected: "" } : { value: "en" }, t("langEn")));
  main.append(el("h2", {}, t("generateReport")),
    el("div", { class: "toolbar" },
      el("label", {}, t("contract"), " ", contract), el("label", {}, t("period"), " ", period),
      el("span", {}, t("formats"), " ", boxes.map((b) => el("label", { class: "check" }, b, " " + b.value))),
      el("label", {}, t("language"), " ", rlang),
      actButton("report-generate", t("generate"), "reports", async () => {
        const body = { contract: contract.value, period: period.value.trim(), formats: boxes.filter((b) => b.checked).map((b) => b.value), lang: rlang.value };
        try {
          const a = await api("POST", "/api/v1/reports", body);
          await route();
          const box = document.getElementById(out.id);
          if (box) box.replaceChildren(message("ok", t("generated").replace("{c}", names[a.contract_id] || a.contract_id).replace("{p}", a.period).replace("{v}", a.version)));
        } catch (e) { out.replaceChildren(errorMessage(e)); }
      })),
    out);
  main.append(el("h2", {}, t("reportsPage")), list.length === 0 ? message("ok", t("noReports")) : el("table", { id: "reports-table" },
    el("tr", {}, ["contract", "period", "version", "language", "generatedAt", "origin", "lifecycleState", "score", "grade", "sha256", "mail", "download"].map((k) => el("th", {}, t(k)))),
    list.map((r) => el("tr", { id: "report-" + r.id, "data-contract": r.contract_id, "data-period": r.period, "data-version": r.version },
      el("td", {}, names[r.contract_id] || r.contract_id), el("td", {}, r.period),
      el("td", { class: "version" }, "v" + r.version), el("td", {}, r.lang === "en" ? t("langEn") : t("langZh")),
      el("td", {}, fmtTime(r.generated_ms)), el("td", {}, originName(r.origin)), stateCell(r),
      el("td", {}, Number((r.score_milli / 1000).toFixed(3))),
      el("td", {}, gradeName(r.grade)),
      el("td", { class: "mono", title: r.sha256 }, r.sha256.slice(0, 12)), mailCell(r.delivery),
      el("td", {}, r.formats.flatMap((f) => [el("a", { href: `/api/v1/reports/${r.id}/${f}`, class: "dl dl-" + f, download: "" }, f), " "]),
        r.evidence_file ? el("a", { href: `/api/v1/reports/${r.id}/evidence`, class: "dl dl-evidence", download: "", title: t("evidenceFileHint") }, t("evidenceFile")) : null)))));
}

// ---- systems and probes ----------------------------------------------------------------------

Object.assign(I18N["zh-CN"], {
  systemsPage: "业务系统与拨测", systemsTitle: "业务系统", probesTitle: "拨测", noSystems: "已加载的合同中没有定义业务系统",
  noProbes: "最近 24 小时没有拨测结果", serverVantage: "服务端（独立拨测）", host: "主机", probe: "拨测", since: "状态起始", avail24h: "24 小时可用率",
  down24h: "24 小时故障", unknown24h: "24 小时无数据", downWhen: "故障判定", window: "服务时段",
  nowState: "当前状态", mtd: "本月至今可用率", inSystems: "所属业务系统", probeFilter: "按主机、拨测或业务系统筛选",
  stUp: "正常", stDown: "故障", stUnknown: "无数据", seconds: "秒",
  selectsNothing: "未选中任何主机或拨测", selectsNothingHint: "请检查合同中的标签选择器：此系统的可用率无从计量",
  dwAny_probe_or_all_hosts: "任一拨测失败或全部主机故障", dwAll_hosts: "全部主机故障", dwAny_probe: "任一拨测失败",
  dwAny_subject: "任一主机或拨测故障",
  systemsNote: "状态取自已存储的状态区间，与合同考核同一口径：主机停止上报的时段记为“无数据”，不计为停机。",
});
Object.assign(I18N.en, {
  systemsPage: "Systems & probes", systemsTitle: "Systems", probesTitle: "Probes", noSystems: "The loaded contracts define no systems",
  noProbes: "No probe results in the last 24 hours", serverVantage: "Server (independent probe)", host: "Host", probe: "Probe", since: "Since", avail24h: "Availability (24 h)",
  down24h: "Down (24 h)", unknown24h: "No data (24 h)", downWhen: "Down when", window: "Service window",
  nowState: "Now", mtd: "Availability, month to date", inSystems: "Systems", probeFilter: "Filter by host, probe or system",
  stUp: "up", stDown: "down", stUnknown: "no data", seconds: "s",
  selectsNothing: "Selects no host or probe", selectsNothingHint: "Check the contract's label selectors: this system's availability cannot be measured",
  dwAny_probe_or_all_hosts: "any probe fails or every host is down", dwAll_hosts: "every host is down",
  dwAny_probe: "any probe fails", dwAny_subject: "any host or probe is down",
  systemsNote: "States come from the stored status intervals, as in the contract assessment: time when a host sent nothing counts as no data, not as downtime.",
});

PAGES.splice(PAGES.findIndex((p) => p.id === "hosts") + 1, 0, { id: "systemsPage", perm: "read", render: renderSystems });

function stName(s) { return t("st" + s.charAt(0).toUpperCase() + s.slice(1)); }
function stCell(s) { return el("td", { class: "state " + s }, stName(s)); }
function durMin(ms) { return ms > 0 && ms < 60000 ? `${Math.ceil(ms / 1000)} ${t("seconds")}` : mins(ms / 60000); }
function members(list) { return list.length === 0 ? "—" : list.map((m) => el("div", { class: "member" }, m.link || m.name, " ", el("span", { class: "tag " + m.state }, stName(m.state)))); }

async function renderSystems(main) {
  main.append(el("h1", {}, t("systemsPage")), el("p", { class: "note" }, t("systemsNote")));
  const [sys, pr, cs] = await Promise.all([api("GET", "/api/v1/systems"), api("GET", "/api/v1/probes"), contractStatuses()]);
  const mtd = {};
  for (const { c, s } of cs) for (const y of s.systems) mtd[c.id + "/" + y.id] = y;
  const hostLink = (agent, name) => el("a", { href: "#/hosts/" + encodeURIComponent(agent) }, name);
  main.append(el("h2", {}, t("systemsTitle")), sys.systems.length === 0 ? message("ok", t("noSystems")) : el("table", { id: "systems-table" },
    el("tr", {}, ["contract", "system", "tier", "window", "downWhen", "nowState", "mtd", "hosts", "probesTitle"].map((k) => el("th", {}, t(k)))),
    sys.systems.map((y) => {
      const m = mtd[y.contract_id + "/" + y.id];
      return el("tr", { id: `system-${y.contract_id}-${y.id}`, "data-state": y.state },
        el("td", {}, y.contract_name),
        el("td", {}, y.name, y.hosts.length + y.probes.length === 0 ? el("div", { class: "tag late selects-nothing", title: t("selectsNothingHint") }, t("selectsNothing")) : null),
        el("td", {}, y.tier), el("td", {}, y.window),
        el("td", {}, t("dw" + y.down_when.charAt(0).toUpperCase() + y.down_when.slice(1))), stCell(y.state),
        el("td", { class: m && m.actual_percent !== null ? (m.met ? "up" : "down") : "" }, m ? `${actualText(m)} / ${pct(m.target_percent)}` : "—"),
        el("td", {}, members(y.hosts.map((h) => ({ ...h, link: hostLink(h.id, h.name) })))),
        el("td", {}, members(y.probes)));
    })));
  const input = el("input", { id: "probe-filter", placeholder: t("probeFilter") });
  const box = el("div", { id: "probes-box" });
  const draw = () => {
    const q = input.value.trim().toLowerCase();
    const rows = pr.probes.filter((p) => !q || [p.hostname, p.probe, ...p.systems].some((x) => x.toLowerCase().includes(q)));
    box.replaceChildren(rows.length === 0 ? message("ok", t("noProbes")) : el("table", { id: "probes-table" },
      el("tr", {}, ["host", "probe", "nowState", "since", "avail24h", "down24h", "unknown24h", "inSystems"].map((k) => el("th", {}, t(k)))),
      rows.map((p) => el("tr", { "data-subject": p.subject, "data-state": p.state },
        el("td", {}, p.source === "server" ? el("span", { class: "tag" }, t("serverVantage")) : hostLink(p.agent_id, p.hostname)),
        el("td", {}, p.probe), stCell(p.state),
        el("td", {}, p.since ? fmtTime(p.since) : "—"),
        el("td", {}, p.availability_24h_percent === null ? "—" : pct(p.availability_24h_percent)),
        el("td", { class: p.down_ms_24h > 0 ? "down" : "" }, durMin(p.down_ms_24h)), el("td", {}, durMin(p.unknown_ms_24h)),
        el("td", {}, p.systems.map((s) => el("span", { class: "tag" }, s)))))));
  };
  input.addEventListener("input", draw);
  main.append(el("h2", {}, t("probesTitle")), el("div", { class: "toolbar" }, input), box);
  draw();
}

// ---- incident requests and membership -------------------------------------------------------

Object.assign(I18N["zh-CN"], {
  requestsPage: "补录与降级审批", requestsTitle: "事件时间补录与降级申请",
  requestsNote: "早于记录时间 5 分钟以上的时间戳与等级下调须由申请人以外的审核人员批准；批准前按记录时间（原等级）计算。",
  incident: "事件", clock: "时钟", claimed: "申报时间/等级", recorded: "记录时间", decided: "审批时间",
  kBackdate: "时间补录", kDowngrade: "降级", cNotified: "通知", cAck: "确认", cOnsite: "到场", cRestored: "恢复",
  noRequests: "没有申请", allRequests: "全部", pendingOnly: "仅待审核", countsNow: "当前按记录时间计",
  membershipPage: "系统成员", membershipTitle: "业务系统成员（主机与拨测）", current: "当前成员",
  pendingAssign: "待分配（标签匹配但未分配）", memberHistory: "变更历史", memberFrom: "生效时间", memberTo: "截止时间",
  assignedBy: "分配人", endedBy: "结束人", assign: "分配", unassign: "移出", noMembers: "没有成员",
  noPendingMembers: "没有待分配的主机或拨测", autoAssignOn: "首次发现时按合同标签自动分配：已开启",
  autoAssignOff: "首次发现时按合同标签自动分配：已关闭（新主机与拨测须人工分配）",
  memberReasonHint: "分配或移出的原因（必填，如工单号）", kHost: "主机", kProbe: "拨测",
});
Object.assign(I18N.en, {
  requestsPage: "Backdates & downgrades", requestsTitle: "Incident backdating and downgrade requests",
  requestsNote: "A stamp more than 5 minutes earlier than its recording, and a level downgrade, count only once a reviewer other than the requester approves; until then the recorded time (the old level) counts.",
  incident: "Incident", clock: "Clock", claimed: "Claimed", recorded: "Recorded", decided: "Decided",
  kBackdate: "backdate", kDowngrade: "downgrade", cNotified: "notified", cAck: "acknowledged", cOnsite: "on site", cRestored: "restored",
  noRequests: "No requests", allRequests: "All", pendingOnly: "Pending only", countsNow: "the recorded time counts for now",
  membershipPage: "Membership", membershipTitle: "System membership (hosts and probes)", current: "Current members",
  pendingAssign: "Pending (matching labels, not assigned)", memberHistory: "History", memberFrom: "From", memberTo: "Until",
  assignedBy: "Assigned by", endedBy: "Ended by", assign: "Assign", unassign: "Unassign", noMembers: "No members",
  noPendingMembers: "No hosts or probes pending", autoAssignOn: "Assignment from the contract's labels at first sight: on",
  autoAssignOff: "Assignment from the contract's labels at first sight: off (new hosts and probes are assigned by hand)",
  memberReasonHint: "Reason for the change (required, e.g. a ticket number)", kHost: "host", kProbe: "probe",
});

PAGES.splice(PAGES.findIndex((p) => p.id === "maintenancePage") + 1, 0,
  { id: "requestsPage", perm: "read", render: renderRequests },
  { id: "membershipPage", perm: "read", render: renderMembership });

function clockName(c) { return c ? t("c" + c.charAt(0).toUpperCase() + c.slice(1)) : t("level"); }
function statusCell(s) {
  return el("td", { class: "req-status " + (s === "approved" ? "up" : s === "rejected" ? "down" : "warning") },
    t(s === "pending" ? "pendingState" : s));
}

async function renderRequests(main, args) {
  const only = args[0] === "pending";
  main.append(el("h1", {}, t("requestsTitle")), el("p", { class: "note" }, t("requestsNote")));
  const out = el("div", { id: "requests-msg" });
  main.append(el("div", { class: "toolbar" },
    el("a", { href: "#/requestsPage", id: "requests-all", class: only ? "" : "active" }, t("allRequests")), " · ",
    el("a", { href: "#/requestsPage/pending", id: "requests-pending", class: only ? "active" : "" }, t("pendingOnly"))), out);
  const d = await api("GET", "/api/v1/incident-requests" + (only ? "?status=pending" : ""));
  main.append(d.data.length === 0 ? message("ok", t("noRequests")) : el("table", { id: "requests-table" },
    el("tr", {}, ["incident", "kind", "clock", "claimed", "recorded", "requestedBy", "reason", "status", "reviewedBy", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    d.data.map((r) => {
      const backdate = r.kind === "backdate";
      const base = `/api/v1/incident-requests/${encodeURIComponent(r.id)}/`;
      return el("tr", { id: "request-" + r.id, "data-status": r.status },
        el("td", {}, el("a", { href: "#/incidentsPage/" + encodeURIComponent(r.incident_id) }, r.incident_id)),
        el("td", {}, t(backdate ? "kBackdate" : "kDowngrade")),
        el("td", {}, clockName(r.clock)),
        el("td", { class: "claimed" }, backdate ? fmtTime(r.value) : `${levelName(r.previous)} → ${levelName(r.value)}`),
        el("td", { class: "recorded" }, fmtTime(r.requested_ms),
          r.status === "approved" ? null : el("span", { class: "tag late" }, t("countsNow"))),
        el("td", {}, r.requested_by), el("td", {}, r.reason), statusCell(r.status),
        el("td", {}, r.reviewed_by ? `${r.reviewed_by} (${fmtTime(r.reviewed_ms)})` : "—"),
        el("td", {}, r.status !== "pending" ? null : [
          actButton("request-approve-" + r.id, t("approve"), "approve", () => doAct(out, "POST", base + "approve", {})),
          " ",
          actButton("request-reject-" + r.id, t("reject"), "approve", () => doAct(out, "POST", base + "reject", {}), "secondary")]));
    })));
}

async function renderMembership(main, args) {
  main.append(el("h1", {}, t("membershipTitle")));
  const list = (await api("GET", "/api/v1/contracts")).contracts;
  if (list.length === 0) { main.append(message("ok", t("noContracts"))); return; }
  const id = list.some((c) => c.id === args[0]) ? args[0] : list[0].id;
  const pick = el("select", { id: "membership-contract" }, list.map((c) => el("option", c.id === id ? { value: c.id, selected: "" } : { value: c.id }, `${c.name} (${c.id})`)));
  pick.addEventListener("change", () => { location.hash = "#/membershipPage/" + encodeURIComponent(pick.value); });
  const reason = el("input", { id: "membership-reason", placeholder: t("memberReasonHint") });
  const out = el("div", { id: "membership-msg" });
  const path = `/api/v1/contracts/${encodeURIComponent(id)}/membership`;
  const m = await api("GET", path);
  const change = (action, x) => doAct(out, "POST", path, { action, system: x.system, kind: x.kind, subject: x.subject, reason: reason.value });
  main.append(el("div", { class: "toolbar" }, el("label", {}, t("contract"), " ", pick), reason), out,
    el("p", { class: "note", id: "membership-auto" }, t(m.auto_assign_from_labels ? "autoAssignOn" : "autoAssignOff")));
  const tags = (labels) => Object.entries(labels || {}).map(([k, v]) => el("span", { class: "tag" }, `${k}=${v}`));
  main.append(el("h2", {}, t("pendingAssign")), m.pending.length === 0 ? message("ok", t("noPendingMembers")) : el("table", { id: "membership-pending" },
    el("tr", {}, ["system", "kind", "subject", "labels", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    m.pending.map((x, n) => el("tr", { "data-subject": x.subject, "data-system": x.system },
      el("td", {}, x.system), el("td", {}, kindName(x.kind)), el("td", { class: "mono" }, x.subject), el("td", {}, tags(x.labels)),
      el("td", {}, actButton("membership-assign-" + n, t("assign"), "approve", () => change("assign", x)))))));
  main.append(el("h2", {}, t("current")), m.current.length === 0 ? message("ok", t("noMembers")) : el("table", { id: "membership-current" },
    el("tr", {}, ["system", "kind", "subject", "memberFrom", "assignedBy", "reason", ""].map((k) => el("th", {}, k ? t(k) : ""))),
    m.current.map((x, n) => el("tr", { "data-subject": x.subject, "data-system": x.system_id },
      el("td", {}, x.system_id), el("td", {}, kindName(x.kind)), el("td", { class: "mono" }, x.subject),
      el("td", {}, fmtTime(x.from_ms)), el("td", {}, x.assigned_by), el("td", {}, x.reason),
      el("td", {}, actButton("membership-unassign-" + n, t("unassign"), "approve",
        () => change("unassign", { system: x.system_id, kind: x.kind, subject: x.subject }), "secondary"))))));
  main.append(el("h2", {}, t("memberHistory")), m.history.length === 0 ? message("ok", t("noMembers")) : el("table", { id: "membership-history" },
    el("tr", {}, ["system", "kind", "subject", "memberFrom", "memberTo", "assignedBy", "reason", "endedBy"].map((k) => el("th", {}, t(k)))),
    m.history.map((x) => el("tr", {},
      el("td", {}, x.system_id), el("td", {}, kindName(x.kind)), el("td", { class: "mono" }, x.subject),
      el("td", {}, fmtTime(x.from_ms)), el("td", {}, x.to_ms === null ? "—" : fmtTime(x.to_ms)),
      el("td", {}, x.assigned_by), el("td", {}, x.reason),
      el("td", {}, x.ended_by ? `${x.ended_by}${x.end_reason ? " · " + x.end_reason : ""}` : "—")))));
}

// ---- appeals (申诉), review (复核) and sign-off (签认) ------------------------------------------

Object.assign(I18N["zh-CN"], {
  appealsPage: "申诉与复核", appealsTitle: "考核申诉与复核", noAppeals: "暂无申诉", appealTarget: "申诉内容",
  appellant: "申诉人", filed: "申诉时间", attachments: "附件", decision: "复核结论", reviewer: "复核人",
  appealDeadline: "申诉截止", reviewDeadline: "复核截止", aPending: "待复核", aUpheld: "维持扣分",
  aOverturned: "撤销扣分", aAdjusted: "调整扣分", overturn: "撤销扣分", uphold: "维持扣分",
  decisionReason: "复核理由（必填）", newAppeal: "提出申诉", report: "报告版本", item: "扣分项编号",
  subject: "扣分对象（如 event:7）", appealReason: "申诉理由", fileAppeal: "提交申诉", signOff: "签认",
  signOffTitle: "签认考核结果", signOffNote: "全部申诉复核后，双方对最新版本签认；最后一方签认后生成终稿。",
  originFinal: "终稿", reportId: "报告",
});
Object.assign(I18N.en, {
  appealsPage: "Appeals", appealsTitle: "Appeals and review", noAppeals: "No appeals", appealTarget: "Appealed",
  appellant: "Appellant", filed: "Filed", attachments: "Attachments", decision: "Decision", reviewer: "Reviewer",
  appealDeadline: "Appeals until", reviewDeadline: "Review until", aPending: "pending review", aUpheld: "upheld",
  aOverturned: "overturned", aAdjusted: "adjusted", overturn: "Overturn", uphold: "Uphold",
  decisionReason: "Reason for the decision (required)", newAppeal: "File an appeal", report: "Report version",
  item: "Deduction item id", subject: "Line subject (e.g. event:7)", appealReason: "Reason for the appeal",
  fileAppeal: "File the appeal", signOff: "Sign off", signOffTitle: "Sign the assessment off",
  signOffNote: "Once every appeal is decided, both parties sign the latest version off; the last signature makes the final report.",
  originFinal: "final report", reportId: "Report",
});

PAGES.splice(PAGES.findIndex((p) => p.id === "reportsPage") + 1, 0,
  { id: "appealsPage", perm: "read", render: renderAppeals });

function appealTargetText(x) {
  const g = x.target || {};
  if (g.kind === "deduction") return `${g.item}: ${g.subject}`;
  if (g.kind === "outage") return `${g.system} @ ${fmtTime(g.start_ms)}`;
  if (g.kind === "incident_clock") return `${g.incident} ${g.clock}`;
  if (g.kind === "inspection") return `${g.inspection} @ ${fmtTime(g.scheduled_ms)}`;
  return JSON.stringify(g);
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function renderAppeals(main, args) {
  main.append(el("h1", {}, t("appealsTitle")));
  const out = el("div", { id: "appeals-msg" });
  main.append(out);
  const q = args[0] ? `?contract=${encodeURIComponent(args[0])}` + (args[1] ? `&period=${encodeURIComponent(args[1])}` : "") : "";
  const [d, reports] = await Promise.all([
    api("GET", "/api/v1/appeals" + q),
    allowed("reports") ? api("GET", "/api/v1/reports" + (args[0] ? `?contract=${encodeURIComponent(args[0])}` : "")) : Promise.resolve([]),
  ]);
  const statusKey = { pending: "aPending", upheld: "aUpheld", overturned: "aOverturned", adjusted: "aAdjusted" };
  main.append(d.data.length === 0 ? message("ok", t("noAppeals")) : el("table", { id: "appeals-table" },
    el("tr", {}, ["contract", "period", "appealTarget", "appellant", "filed", "reason", "attachments", "decision", "reviewer", "appealDeadline", ""]
      .map((k) => el("th", {}, k ? t(k) : ""))),
    d.data.map((x) => {
      const reason = el("input", { id: "appeal-reason-" + x.id, placeholder: t("decisionReason") });
      const decide = (outcome) => doAct(out, "POST", `/api/v1/appeals/${encodeURIComponent(x.id)}/decision`, { outcome, reason: reason.value });
      return el("tr", { id: "appeal-" + x.id },
        el("td", {}, x.contract_id), el("td", {}, x.period), el("td", { class: "mono" }, appealTargetText(x)),
        el("td", {}, x.filed_by), el("td", {}, fmtTime(x.filed_ms)), el("td", {}, x.reason),
        el("td", {}, x.attachments.map((f) => el("div", {},
          el("a", { href: `/api/v1/appeals/${encodeURIComponent(x.id)}/attachments/${encodeURIComponent(f.name)}` }, f.name),
          el("span", { class: "mono note" }, " " + f.sha256.slice(0, 12))))),
        el("td", { class: "appeal-status " + (x.status === "overturned" ? "up" : x.status === "upheld" ? "down" : "warning") },
          t(statusKey[x.status] || x.status), x.decision_reason ? el("div", { class: "note" }, x.decision_reason) : null),
        el("td", {}, x.decided_by ? `${x.decided_by} (${fmtTime(x.decided_ms)})` : "—"),
        el("td", {}, x.appeal_deadline_ms ? fmtTime(x.appeal_deadline_ms) : "—"),
        el("td", {}, x.status !== "pending" ? null : [reason, " ",
          actButton("appeal-overturn-" + x.id, t("overturn"), "approve", () => decide("overturned")), " ",
          actButton("appeal-uphold-" + x.id, t("uphold"), "approve", () => decide("upheld"), "secondary")]));
    })));
  // Filing: the vendor's operators, against a version of a period's report.
  const pick = el("select", { id: "appeal-report" }, reports.map((r) =>
    el("option", { value: r.id }, `${r.contract_id} ${r.period} v${r.version}${r.origin === "final" ? " · " + t("originFinal") : ""}`)));
  const item = el("input", { id: "appeal-item", placeholder: t("item") });
  const subject = el("input", { id: "appeal-subject", placeholder: t("subject") });
  const why = el("input", { id: "appeal-why", placeholder: t("appealReason") });
  const files = el("input", { id: "appeal-files", type: "file", multiple: true });
  main.append(el("h2", {}, t("newAppeal")),
    el("div", { class: "toolbar" }, el("label", {}, t("report"), " ", pick), item, subject),
    el("div", { class: "toolbar" }, why, files,
      actButton("appeal-submit", t("fileAppeal"), "operate", async () => {
        const attachments = [];
        for (const f of files.files || []) {
          attachments.push({ name: f.name, content_type: f.type || "application/octet-stream", data: await readBase64(f) });
        }
        await doAct(out, "POST", "/api/v1/appeals", {
          report_id: Number(pick.value), target: { kind: "deduction", item: item.value, subject: subject.value },
          reason: why.value, attachments,
        });
      })));
  // Sign-off: each party, on the latest version.
  const signPick = el("select", { id: "signoff-report" }, reports.map((r) =>
    el("option", { value: r.id }, `${r.contract_id} ${r.period} v${r.version}`)));
  main.append(el("h2", {}, t("signOffTitle")), el("p", { class: "note" }, t("signOffNote")),
    el("div", { class: "toolbar" }, signPick,
      actButton("signoff-submit", t("signOff"), "reports", () => doAct(out, "POST", `/api/v1/reports/${encodeURIComponent(signPick.value)}/sign-off`, {}))));
}

window.addEventListener("hashchange", () => { if (me) route(); });
document.documentElement.lang = lang;
route();
