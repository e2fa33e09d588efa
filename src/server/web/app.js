// samepage chat page (served by src/server/web.c; no build step, no CDN).
//
// Conversations are kept in localStorage: their messages, and the id of the
// server's session that holds them (the x-samepage-session response
// header). Sending a message posts the whole conversation to
// /v1/chat/completions with stream: true; the server continues the actor
// whose tokens the messages extend (and, where it has X-Session-Id, the one
// named), so only the new tokens are prefilled, after a reload too. Where
// the server has GET /v1/sessions, the list says which conversations it
// still holds. Text only ever goes into the page through textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const CHATS = "samepage.chats", CURRENT = "samepage.current", SETTINGS = "samepage.settings";

let chats = load(CHATS, []);           // [{id, title, messages: [{role, content}], session, updated}]
let current = localStorage.getItem(CURRENT);
let model = null;                      // the id /v1/models lists
let serverSessions = null;             // Set of ids from GET /v1/sessions, or null without it
let inFlight = null;                   // AbortController of the streaming request

function load(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v === null || v === undefined ? fallback : v;
  } catch (e) {
    return fallback;
  }
}

function save() {
  localStorage.setItem(CHATS, JSON.stringify(chats));
  if (current) localStorage.setItem(CURRENT, current);
  else localStorage.removeItem(CURRENT);
}

function chat() {
  return chats.find((c) => c.id === current) || null;
}

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

// ---- settings ----

function settings() {
  const num = (id) => {
    const v = $(id).value.trim();
    return v === "" || !Number.isFinite(Number(v)) ? null : Number(v);
  };
  return {temperature: num("temperature"), maxTokens: num("max-tokens"), seed: num("seed"), apiKey: $("api-key").value};
}

function restoreSettings() {
  const s = load(SETTINGS, {});
  for (const [id, key] of [["temperature", "temperature"], ["max-tokens", "maxTokens"], ["seed", "seed"], ["api-key", "apiKey"]])
    if (s[key] !== undefined && s[key] !== null) $(id).value = s[key];
  for (const id of ["temperature", "max-tokens", "seed", "api-key"])
    $(id).addEventListener("change", () => localStorage.setItem(SETTINGS, JSON.stringify(settings())));
}

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = settings().apiKey;
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function errorText(r) {
  try {
    const j = await r.json();
    if (j && j.error && j.error.message) return r.status + ": " + j.error.message;
  } catch (e) { /* not JSON */ }
  return "HTTP " + r.status;
}

// ---- rendering ----

function bubble(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  d.textContent = text;
  $("messages").appendChild(d);
  $("messages").scrollTop = $("messages").scrollHeight;
  return d;
}

function renderMessages() {
  $("messages").replaceChildren();
  const c = chat();
  for (const m of c ? c.messages : []) bubble(m.role, m.content);
}

function renderSessions() {
  const ul = $("sessions");
  ul.replaceChildren();
  for (const c of [...chats].sort((a, b) => b.updated - a.updated)) {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    if (c.id === current) li.className = "active";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.title = c.session ? "server session " + c.session : "not yet on the server";
    open.textContent = c.title || "(empty)";
    open.addEventListener("click", () => select(c.id));
    const where = document.createElement("span");
    where.className = "where";
    where.textContent = !c.session ? "" : serverSessions === null ? "" : serverSessions.has(c.session) ? "held" : "gone";
    const del = document.createElement("button");
    del.type = "button";
    del.className = "delete";
    del.title = "forget this conversation";
    del.textContent = "\u00d7";
    del.addEventListener("click", () => forget(c.id));
    li.append(open, where, del);
    ul.appendChild(li);
  }
}

function select(id) {
  if (inFlight) return;
  current = id;
  save();
  renderSessions();
  renderMessages();
  $("speed").textContent = "";
  $("info").textContent = "";
  $("prompt").focus();
}

async function forget(id) {
  if (inFlight) return;
  const c = chats.find((x) => x.id === id);
  chats = chats.filter((x) => x.id !== id);
  if (current === id) current = null;
  save();
  renderSessions();
  renderMessages();
  // Where the server lists sessions it can delete them too.
  if (c && c.session && serverSessions && serverSessions.has(c.session)) {
    try {
      await fetch("/v1/sessions/" + encodeURIComponent(c.session), {method: "DELETE", headers: headers()});
    } catch (e) { /* the server keeps it */ }
    refreshServerSessions();
  }
}

// ---- the server ----

async function fetchModel() {
  try {
    const r = await fetch("/v1/models", {headers: headers()});
    if (!r.ok) return;
    const j = await r.json();
    if (j.data && j.data.length) {
      model = j.data[0].id;
      $("model").textContent = "model: " + model;
    }
  } catch (e) { /* the request goes without a model */ }
}

async function refreshServerSessions() {
  try {
    const r = await fetch("/v1/sessions", {headers: headers()});
    if (!r.ok) return;
    const j = await r.json();
    const list = Array.isArray(j) ? j : j.data || j.sessions || [];
    serverSessions = new Set(list.map((s) => (typeof s === "string" ? s : s.id)).filter(Boolean));
    renderSessions();
  } catch (e) { /* an older server: the list stays ours alone */ }
}

// Server-sent events from a fetch body: yields each event's data.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += value.replace(/\r/g, "");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, ""));
      if (data.length) yield data.join("\n");
    }
  }
}

function showSpeed(tokens, t0, tFirst, tNow, done) {
  if (tFirst === null) return;
  const decode = tokens > 1 && tNow > tFirst ? ((tokens - 1) * 1000) / (tNow - tFirst) : 0;
  $("speed").textContent = `${decode.toFixed(1)} tok/s`;
  $("speed").dataset.tokS = decode.toFixed(2);
  $("info").textContent = `${tokens} tokens, first after ${Math.round(tFirst - t0)} ms` + (done ? "" : " \u2026");
}

async function send(text) {
  let c = chat();
  if (!c) {
    c = {id: newId(), title: text.slice(0, 48), messages: [], session: null, updated: Date.now()};
    chats.push(c);
    current = c.id;
  }
  c.messages.push({role: "user", content: text});
  c.updated = Date.now();
  save();
  renderSessions();
  renderMessages();

  const s = settings();
  const body = {messages: c.messages, stream: true, stream_options: {include_usage: true}};
  if (model) body.model = model;
  if (s.temperature !== null) body.temperature = s.temperature;
  if (s.maxTokens !== null) body.max_tokens = s.maxTokens;
  if (s.seed !== null) body.seed = s.seed;
  const hdrs = headers();
  if (c.session && serverSessions && serverSessions.has(c.session)) hdrs["X-Session-Id"] = c.session;

  const out = bubble("assistant", "");
  out.classList.add("streaming");
  inFlight = new AbortController();
  setBusy(true);
  const t0 = performance.now();
  let tFirst = null, chunks = 0, reply = "", usage = null, failed = null;
  try {
    let r = await fetch("/v1/chat/completions", {method: "POST", headers: hdrs, body: JSON.stringify(body), signal: inFlight.signal});
    if (!r.ok && hdrs["X-Session-Id"] && (r.status === 404 || r.status === 400)) {
      // The named session is gone: the server finds or starts one by tokens.
      delete hdrs["X-Session-Id"];
      r = await fetch("/v1/chat/completions", {method: "POST", headers: hdrs, body: JSON.stringify(body), signal: inFlight.signal});
    }
    if (!r.ok) throw new Error(await errorText(r));
    const sid = r.headers.get("x-samepage-session");
    if (sid) c.session = sid;
    out.dataset.session = sid || "";
    out.dataset.prefilled = r.headers.get("x-samepage-prefilled-tokens") || "";
    for await (const data of events(r.body)) {
      if (data === "[DONE]") break;
      const j = JSON.parse(data);
      if (j.error) throw new Error(j.error.message || "server error");
      if (j.usage) usage = j.usage;
      const choice = j.choices && j.choices[0];
      const piece = choice && choice.delta && choice.delta.content;
      if (piece) {
        if (tFirst === null) tFirst = performance.now();
        reply += piece;
        chunks++;
        out.textContent = reply;
        out.dataset.chunks = String(chunks);
        $("messages").scrollTop = $("messages").scrollHeight;
        showSpeed(chunks, t0, tFirst, performance.now(), false);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") failed = e.message || String(e);
  }
  const tEnd = performance.now();
  out.classList.remove("streaming");
  out.dataset.done = "1";
  showSpeed(usage ? usage.completion_tokens : chunks, t0, tFirst, tEnd, true);
  if (usage) {
    out.dataset.completionTokens = String(usage.completion_tokens);
    out.dataset.promptTokens = String(usage.prompt_tokens);
  }
  if (reply) {
    c.messages.push({role: "assistant", content: reply});
  } else {
    // Nothing came back: the message goes back to the box, not the history.
    c.messages.pop();
    out.remove();
    if (!$("prompt").value) $("prompt").value = text;
  }
  if (failed) bubble("error", failed);
  c.updated = Date.now();
  if (!c.messages.length) {
    chats = chats.filter((x) => x !== c);
    current = null;
  }
  save();
  inFlight = null;
  setBusy(false);
  renderSessions();
  refreshServerSessions();
}

function setBusy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
  document.body.dataset.busy = on ? "1" : "";
}

// ---- start ----

function start() {
  restoreSettings();
  if (current && !chat()) current = null;
  renderSessions();
  renderMessages();
  $("composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || inFlight) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => inFlight && inFlight.abort());
  $("new-chat").addEventListener("click", () => select(null));
  fetchModel();
  refreshServerSessions();
  document.body.dataset.ready = "1";
}

start();
