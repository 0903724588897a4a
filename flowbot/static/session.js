// The session page: topic and state, speakers (renamed in place by the owner), the transcript
// growing live over SSE (interim text replaced in place by final text), downloads, audio of
// final segments, notes at the top once the meeting is done, and the presenter's microphone
// controls when the page was opened with the stream key (#key=..., never sent to the server).
"use strict";
const sessionId = document.body.dataset.session;
const params = new URLSearchParams(location.search);
const token = params.get("token");
const view = params.get("view");
const q = token ? "?token=" + encodeURIComponent(token) : view ? "?view=" + encodeURIComponent(view) : "";
const amp = q ? "&" + q.slice(1) : "";
const $ = id => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
const clock = s => { const m = Math.floor(s / 60), r = Math.floor(s % 60); return `${m}:${String(r).padStart(2, "0")}`; };
const FORMAT_LABELS = { text: "Text", srt: "SRT", vtt: "VTT", rttm: "RTTM", json: "JSON" };

const windows = new Map();   // window_index -> {is_final, start, segments}
let speakers = {};           // label -> display name
let canEdit = false;
const nameOf = label => speakers[label] || label || "S1";

// -- auto-scroll: follow the live edge unless the reader scrolled up ------------------------
const atLive = () => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
function followLive(update) {
  const follow = atLive();
  update();
  if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
  else $("jump").hidden = false;
}
window.addEventListener("scroll", () => { if (atLive()) $("jump").hidden = true; }, { passive: true });
$("jump").addEventListener("click", () => { window.scrollTo(0, document.documentElement.scrollHeight); $("jump").hidden = true; });

// -- transcript ----------------------------------------------------------------------------------
function drawWindow(idx) {
  const w = windows.get(idx);
  const root = $("transcript");
  let box = root.querySelector(`section.win[data-window="${idx}"]`);
  if (!box) {
    box = el("section", "win"); box.dataset.window = idx;
    const after = [...root.children].find(c => Number(c.dataset.window) > idx);
    root.insertBefore(box, after || null);
  }
  box.replaceChildren(...w.segments.map((s, i) => {
    const p = el("p", "seg" + (s.is_final ? " final" : " interim" + (s.stable ? " stable" : "")));
    p.dataset.window = idx; p.dataset.final = s.is_final; p.dataset.segment = i;
    p.append(el("span", "t", clock(s.start)));
    // Interim text has no diarization yet: no speaker name rather than a guessed one.
    p.append(s.is_final ? el("span", "who", nameOf(s.speaker) + ":") : el("span", "who pending", "…"));
    p.append(el("span", "text", s.text));
    if (s.is_final) { p.tabIndex = 0; p.title = "play this passage"; }
    return p;
  }));
}
function redrawAll() { for (const idx of windows.keys()) drawWindow(idx); drawSpeakers(); }

// -- speakers ----------------------------------------------------------------------------------
function drawSpeakers() {
  const list = $("speakers");
  const labels = Object.keys(speakers).sort();
  if (!labels.length) { list.replaceChildren(el("li", "none", "nobody yet")); return; }
  list.replaceChildren(...labels.map(label => {
    const li = el("li"); li.dataset.label = label;
    li.append(el("span", "name", speakers[label]));
    if (speakers[label] !== label) li.append(el("small", "label", `(${label})`));
    if (canEdit) {
      const b = el("button", "rename", "rename"); b.type = "button";
      b.addEventListener("click", () => editSpeaker(li, label));
      li.append(b);
    }
    return li;
  }));
}
function editSpeaker(li, label) {
  const input = el("input"); input.value = speakers[label]; input.maxLength = 100; input.setAttribute("aria-label", `name of ${label}`);
  const save = el("button", "save", "save"); save.type = "button";
  const status = el("small", "status");
  li.replaceChildren(input, save, status);
  input.focus();
  const submit = async () => {
    const name = input.value.trim();
    if (!name) { status.textContent = "enter a name"; return; }
    save.disabled = true;
    try {
      const r = await fetch("/api", {
        method: "POST",
        headers: Object.assign({ "content-type": "application/json" }, token ? { authorization: "Bearer " + token } : {}),
        body: JSON.stringify({ action: "rename_speaker", session_id: sessionId, speaker: label, name }),
      });
      const d = await r.json();
      if (!r.ok) throw new Error(d.error ? d.error.message : `HTTP ${r.status}`);
      speakers = d.speakers; redrawAll();
    } catch (err) { status.textContent = err.message; save.disabled = false; }
  };
  save.addEventListener("click", submit);
  input.addEventListener("keydown", ev => { if (ev.key === "Enter") submit(); if (ev.key === "Escape") drawSpeakers(); });
}

// -- audio of final segments --------------------------------------------------------------------
const player = $("player");
let stopAt = null;
$("transcript").addEventListener("click", ev => {
  const p = ev.target.closest("p.seg.final");
  if (!p) return;
  const idx = Number(p.dataset.window), w = windows.get(idx);
  const seg = w && w.segments[Number(p.dataset.segment)];
  if (!seg || w.start === null || w.start === undefined) return;
  document.querySelectorAll("p.playing").forEach(x => x.classList.remove("playing"));
  p.classList.add("playing");
  const src = `/sessions/${sessionId}/audio/${idx}${q}`;
  if (!player.src.endsWith(src)) player.src = src;
  player.currentTime = Math.max(0, seg.start - w.start);
  stopAt = seg.end - w.start;
  player.play().catch(err => { p.title = "could not play: " + err.message; });
});
$("transcript").addEventListener("keydown", ev => { if (ev.key === "Enter" && ev.target.matches("p.seg.final")) ev.target.click(); });
player.addEventListener("timeupdate", () => { if (stopAt !== null && player.currentTime >= stopAt) { player.pause(); stopAt = null; } });
player.addEventListener("pause", () => document.querySelectorAll("p.playing").forEach(x => x.classList.remove("playing")));

// -- a moment to open at (#t=SECONDS, from a search hit): scroll to it and play it --------------
let moment = Number(new URLSearchParams(location.hash.slice(1)).get("t"));
if (!Number.isFinite(moment) || moment < 0 || !location.hash.includes("t=")) moment = null;
function openMoment() {
  if (moment === null) return;
  for (const [idx, w] of [...windows.entries()].sort((a, b) => a[0] - b[0])) {
    if (!w.is_final) continue;
    const i = w.segments.findIndex(s => s.start <= moment + 0.05 && s.end > moment);
    if (i < 0) continue;
    const p = document.querySelector(`p.seg.final[data-window="${idx}"][data-segment="${i}"]`);
    if (!p) return;
    moment = null;
    p.classList.add("moment"); p.focus({ preventScroll: true });
    p.scrollIntoView({ block: "center" });
    p.click();
    return;
  }
}

// -- notes: robust to their shape (strings or {text, owner, start} objects) -----------------------
function noteText(item) {
  if (item === null || item === undefined) return "";
  if (typeof item !== "object") return String(item);
  const text = item.text ?? item.summary ?? item.title ?? JSON.stringify(item);
  const owner = item.owner ? `[${nameOf(item.owner)}] ` : "";
  const at = typeof item.start === "number" ? ` (${clock(item.start)})` : "";
  return owner + text + at;
}
function drawNotes(n) {
  const sec = $("notes");
  sec.hidden = false; sec.replaceChildren(el("h2", null, "Meeting notes"));
  const list = (title, items) => {
    const arr = Array.isArray(items) ? items : items === null || items === undefined ? [] : [items];
    sec.append(el("h3", null, title));
    const ul = el("ul");
    (arr.length ? arr.map(noteText) : ["(none)"]).forEach(t => ul.append(el("li", null, t)));
    sec.append(ul);
  };
  const talk = n.talk_time && typeof n.talk_time === "object" ? n.talk_time : {};
  const total = Object.values(talk).reduce((a, b) => a + (Number(b) || 0), 0) || 1;
  const known = { summary: "Summary", decisions: "Decisions", action_items: "Action items" };
  for (const [key, title] of Object.entries(known)) list(title, n[key]);
  list("Talk time", Object.entries(talk).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${nameOf(k)}: ${Math.round(v)} s (${Math.round(100 * v / total)}%)`));
  for (const [key, value] of Object.entries(n)) {
    if (key in known || key === "talk_time") continue;
    list(key.replace(/_/g, " "), value);
  }
}

// -- session header ------------------------------------------------------------------------------
function showSession(s) {
  $("topic").textContent = s.topic || "Live transcript";
  document.title = (s.topic || "Live transcript") + " — flowbot";
  $("meeting").textContent = s.meeting_id ? `meeting ${s.meeting_id}` : "";
  const badge = $("state");
  badge.textContent = s.state + (s.reason ? ` — ${s.reason}` : "");
  badge.className = "badge " + s.state;
  document.body.dataset.state = s.state;
}
// Which transcript revision this page shows, when a meeting was re-transcribed (owners get links).
function showRevisions(list) {
  if (!list || list.length < 2) return;
  const box = $("revision");
  const here = list.find(r => r.session_id === sessionId);
  const parts = [`Revision ${here.revision} of ${list.length}` + (here.asr_model ? ` (model ${here.asr_model})` : "")];
  box.replaceChildren(parts[0]);
  const others = list.filter(r => r !== here);
  if (canEdit) {
    box.append(" · other revisions: ");
    others.forEach((r, i) => {
      const a = el("a", null, `${r.revision}` + (r.state === "completed" ? "" : ` (${r.state})`));
      a.href = `/sessions/${r.session_id}${q}`;
      box.append(...(i ? [", ", a] : [a]));
    });
  }
  box.hidden = false;
}
function showExports(formats) {
  const nav = $("exports");
  nav.replaceChildren(el("span", "label", "Download:"), ...formats.map(f => {
    const a = el("a", null, FORMAT_LABELS[f] || f);
    a.href = `/sessions/${sessionId}/transcript?format=${f}&download=1${amp}`;
    a.dataset.format = f; a.setAttribute("download", "");
    return a;
  }));
  nav.hidden = false;
}

async function start() {
  try {
    const r = await fetch(`/sessions/${sessionId}/info${q}`);
    if (r.ok) {
      const info = await r.json();
      canEdit = info.can_edit; speakers = Object.assign({}, info.speakers, speakers);
      showSession(info.session); showExports(info.formats); drawSpeakers(); showRevisions(info.revisions);
      if (info.share_path) {
        const share = $("share"); share.hidden = false;
        const a = el("a", null, "viewer link"); a.href = info.share_path;
        share.replaceChildren("Share a read-only ", a, " with attendees.");
      }
    }
  } catch (err) { console.warn("session info", err); }
  const es = new EventSource(`/sessions/${sessionId}/events${q}`);
  es.addEventListener("window", ev => {
    const d = JSON.parse(ev.data);
    const old = windows.get(d.window_index);
    if (old && old.is_final && !d.is_final) return;   // a final is never replaced by interim text
    windows.set(d.window_index, d);
    const renamed = d.speakers && JSON.stringify(d.speakers) !== JSON.stringify(speakers);
    if (d.speakers) speakers = d.speakers;
    followLive(() => { if (renamed) redrawAll(); else drawWindow(d.window_index); });
    openMoment();
  });
  es.addEventListener("speakers", ev => { speakers = JSON.parse(ev.data); redrawAll(); });
  es.addEventListener("state", ev => {
    const d = JSON.parse(ev.data);
    showSession(d);
    if (["completed", "partial", "failed"].includes(d.state)) setTimeout(() => es.close(), 1000);   // before the 2 s retry
  });
  es.addEventListener("notes", ev => drawNotes(JSON.parse(ev.data)));
}

$("presenter").hidden = !setupMicrophone(sessionId);
start();
