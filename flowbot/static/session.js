// The session page: topic and state, speakers (renamed in place by the owner, who also sees
// which were named by voice, with the score, and can undo that), the transcript
// growing live over SSE as speaker turns (interim text replaced in place by final text),
// downloads, audio of final segments, a moment named by ?t=SECONDS, notes at the top once the
// meeting is done, and the presenter's microphone controls when the page was opened with the
// stream key (#key=..., never sent to the server).
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

// -- transcript: speaker turns (the rule of contracts/turns.py) ----------------------------------
// Consecutive segments of one speaker are one turn, one paragraph; interim text (no diarization
// yet) continues the turn before it. Each final segment inside a turn plays its passage.
function orderedSegments() {
  const out = [];
  for (const idx of [...windows.keys()].sort((a, b) => a - b)) {
    windows.get(idx).segments.forEach((s, i) => out.push(Object.assign({ window: idx, index: i }, s)));
  }
  return out;
}
function speakerTurns(segments) {
  const turns = [];
  for (const s of segments) {
    if (!String(s.text || "").trim()) continue;
    const name = nameOf(s.speaker), last = turns[turns.length - 1];
    if (last && (!s.is_final || last.name === name)) last.segments.push(s);
    else turns.push({ name, pending: !s.is_final, segments: [s] });
  }
  return turns;
}
function turnSignature(t) {
  return JSON.stringify([t.name, t.pending, t.segments.map(s => [s.window, s.index, s.is_final, s.stable, s.text])]);
}
function drawTurn(t) {
  const p = el("p", "turn" + (t.segments.every(s => !s.is_final) ? " interim" : ""));
  p.dataset.start = t.segments[0].start;
  p.append(el("span", "t", clock(t.segments[0].start)));
  // A turn that starts with interim text has no speaker yet: no name rather than a guessed one.
  p.append(t.pending ? el("span", "who pending", "…") : el("span", "who", t.name + ":"));
  t.segments.forEach(s => {
    const span = el("span", "seg" + (s.is_final ? " final" : " interim" + (s.stable ? " stable" : "")), s.text.trim());
    Object.assign(span.dataset, { window: s.window, segment: s.index, final: s.is_final, start: s.start, end: s.end });
    if (s.is_final) { span.tabIndex = 0; span.title = "play this passage"; }
    p.append(" ", span);
  });
  return p;
}
function drawTranscript() {
  const root = $("transcript"), turns = speakerTurns(orderedSegments());
  // Only turns whose content changed are rebuilt: a live window touches the last turn or two.
  turns.forEach((t, i) => {
    const sig = turnSignature(t), node = root.children[i];
    if (node && node.dataset.sig === sig) return;
    const fresh = drawTurn(t); fresh.dataset.sig = sig;
    if (node) root.replaceChild(fresh, node); else root.append(fresh);
  });
  while (root.children.length > turns.length) root.lastElementChild.remove();
  applyMarks();
  if (pendingMoment !== null) { gotoMoment(pendingMoment, false); settleMoment(); }
}
function redrawAll() { drawTranscript(); drawSpeakers(); if (lastNotes) drawNotes(lastNotes); }

// -- speakers ----------------------------------------------------------------------------------
// The owner's page also gets which speakers were named by voice, with the score (/info; viewers
// never do): shown next to the name with an undo, while the speaker still carries that name.
let namedByVoice = {};       // label -> {name, score, state}
const byVoice = label => {
  const n = namedByVoice[label];
  return canEdit && n && n.state === "named" && speakers[label] === n.name ? n : null;
};
async function refreshNamings() {
  if (!canEdit) return;
  try {
    const r = await fetch(`/sessions/${sessionId}/info${q}`);
    if (r.ok) { namedByVoice = (await r.json()).named_by_voice || {}; drawSpeakers(); }
  } catch (err) { console.warn("session info", err); }
}
async function callApi(body) {
  const r = await fetch("/api", {
    method: "POST",
    headers: Object.assign({ "content-type": "application/json" }, token ? { authorization: "Bearer " + token } : {}),
    body: JSON.stringify(Object.assign({ session_id: sessionId }, body)),
  });
  const d = await r.json();
  if (!r.ok) throw new Error(d.error ? d.error.message : `HTTP ${r.status}`);
  return d;
}
function drawSpeakers() {
  const list = $("speakers");
  const labels = Object.keys(speakers).sort();
  if (!labels.length) { list.replaceChildren(el("li", "none", "nobody yet")); return; }
  list.replaceChildren(...labels.map(label => {
    const li = el("li"); li.dataset.label = label;
    li.append(el("span", "name", speakers[label]));
    if (speakers[label] !== label) li.append(el("small", "label", `(${label})`));
    const voice = byVoice(label);
    if (voice) {
      li.classList.add("by-voice");
      li.append(el("small", "voice", `named by voice, ${Number(voice.score).toFixed(2)}`));
      const undo = el("button", "undo", "undo"); undo.type = "button";
      undo.title = `give ${label} its label back; ${voice.name}'s voice is not tried on it again`;
      const status = el("small", "status");
      undo.addEventListener("click", async () => {
        undo.disabled = true;
        try {
          const d = await callApi({ action: "undo_voice_name", speaker: label });
          Object.assign(namedByVoice, d.undone); speakers = d.speakers; redrawAll();
        } catch (err) { status.textContent = err.message; undo.disabled = false; }
      });
      li.append(undo, status);
    }
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
      const d = await callApi({ action: "rename_speaker", speaker: label, name });
      speakers = d.speakers; redrawAll();
    } catch (err) { status.textContent = err.message; save.disabled = false; }
  };
  save.addEventListener("click", submit);
  input.addEventListener("keydown", ev => { if (ev.key === "Enter") submit(); if (ev.key === "Escape") drawSpeakers(); });
}

// -- audio of final segments, and links to a moment (?t=SECONDS) ----------------------------------
const player = $("player");
let stopAt = null;
// The segment playing and the one a link named, by key: a redrawn turn (a rename, a new window)
// keeps its marks.
const marks = { playing: null, moment: null };
const segKey = span => `${span.dataset.window}:${span.dataset.segment}`;
function applyMarks() {
  document.querySelectorAll("#transcript .playing, #transcript .moment").forEach(x => x.classList.remove("playing", "moment"));
  for (const span of document.querySelectorAll("#transcript .seg.final")) {
    if (segKey(span) === marks.playing) span.classList.add("playing");
    if (segKey(span) === marks.moment) span.closest(".turn").classList.add("moment");
  }
}
function playSpan(span, from) {
  const idx = Number(span.dataset.window), w = windows.get(idx);
  if (!w || w.start === null || w.start === undefined) return;
  marks.playing = segKey(span); applyMarks();
  const src = `/sessions/${sessionId}/audio/${idx}${q}`;
  if (!player.src.endsWith(src)) player.src = src;
  player.currentTime = Math.max(0, (from ?? Number(span.dataset.start)) - w.start);
  stopAt = Number(span.dataset.end) - w.start;
  player.play().catch(err => { span.title = "could not play: " + err.message; });
}
$("transcript").addEventListener("click", ev => {
  const span = ev.target.closest(".seg.final");
  if (span) playSpan(span);
});
$("transcript").addEventListener("keydown", ev => { if (ev.key === "Enter" && ev.target.matches(".seg.final")) ev.target.click(); });
player.addEventListener("timeupdate", () => { if (stopAt !== null && player.currentTime >= stopAt) { player.pause(); stopAt = null; } });
player.addEventListener("pause", () => { marks.playing = null; applyMarks(); });

// The moment a link names (notes, search hits): the final segment said at that time (or the
// next one), its turn marked and scrolled to, its passage played from there. Waits for the
// transcript to reach that time when the page is still loading.
const momentParam = Number.parseFloat(params.get("t") ?? new URLSearchParams(location.hash.slice(1)).get("t"));
let pendingMoment = Number.isFinite(momentParam) && momentParam >= 0 ? momentParam : null;
const momentHref = t => `/sessions/${sessionId}?${q ? q.slice(1) + "&" : ""}t=${t.toFixed(1)}`;
const isOver = () => ["completed", "partial", "failed"].includes(document.body.dataset.state);
function gotoMoment(t, pastEnd) {
  const spans = [...document.querySelectorAll("#transcript .seg.final")];
  // Not transcribed that far yet (or nothing received yet): try again on the next window.
  const target = spans.find(s => Number(s.dataset.end) > t) || (pastEnd ? spans[spans.length - 1] : null);
  if (!target) return;
  pendingMoment = null;
  marks.moment = segKey(target); applyMarks();
  target.closest(".turn").scrollIntoView({ block: "center" });
  $("jump").hidden = atLive();
  playSpan(target, Math.max(t, Number(target.dataset.start)));
}
// A finished session's backlog arrives as several events: only once they stopped coming is a
// moment past the last passage taken to mean the last passage.
let momentTimer = null;
function settleMoment() {
  clearTimeout(momentTimer);
  if (pendingMoment !== null && isOver()) momentTimer = setTimeout(() => { if (pendingMoment !== null) gotoMoment(pendingMoment, true); }, 1500);
}
function momentLink(t) {
  const a = el("a", "at", clock(t));
  a.href = momentHref(t); a.title = "go to this moment and play it";
  a.addEventListener("click", ev => { ev.preventDefault(); history.replaceState(null, "", a.href); gotoMoment(t, true); });
  return a;
}

// -- notes as people read them: summary, decisions, action items (owner, link to the moment),
// talk time. Machine fields (generator, fallback reason, version, usage, ...) stay in the JSON.
let lastNotes = null;
const asList = v => Array.isArray(v) ? v : v === null || v === undefined ? [] : [v];
const itemText = item => item && typeof item === "object" ? String(item.text ?? item.summary ?? "") : String(item ?? "");
// Names in notes are display names as they were when the notes were written; a later rename applies.
function noteName(notes, name) {
  const map = notes.speakers && typeof notes.speakers === "object" ? notes.speakers : {};
  const label = Object.keys(map).find(k => map[k] === name) ?? (name in speakers ? name : null);
  return label ? nameOf(label) : name;
}
function duration(sec) {
  const s = Math.round(sec);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}
function drawNotes(n) {
  lastNotes = n;
  const sec = $("notes");
  sec.hidden = false; sec.replaceChildren(el("h2", null, "Meeting notes"));
  const section = (key, title, items, none, draw) => {
    const box = el("section", "notes-part"); box.dataset.part = key;
    box.append(el("h3", null, title));
    const shown = items.filter(i => itemText(i).trim() || typeof i === "number");
    if (!shown.length) box.append(el("p", "none", none));
    else { const ul = el("ul"); shown.forEach(i => ul.append(draw(i))); box.append(ul); }
    sec.append(box);
  };
  const at = (li, item) => { if (item && typeof item.start === "number") li.append(" ", momentLink(item.start)); return li; };
  section("summary", "Summary", asList(n.summary), "Nothing to summarize.", s => el("li", null, itemText(s)));
  section("decisions", "Decisions", asList(n.decisions), "None found.", d => {
    const li = el("li", null, itemText(d));
    if (d && d.speaker) li.append(el("span", "by", ` — ${noteName(n, d.speaker)}`));
    return at(li, d);
  });
  section("action_items", "Action items", asList(n.action_items), "None found.", a => {
    const li = el("li");
    li.append(el("strong", "owner", a && a.owner ? noteName(n, a.owner) : "Unassigned"), " ", el("span", "text", itemText(a)));
    return at(li, a);
  });
  const talk = n.talk_time && typeof n.talk_time === "object" ? n.talk_time : {};
  const total = Object.values(talk).reduce((x, y) => x + (Number(y) || 0), 0) || 1;
  const rows = Object.entries(talk).map(([k, v]) => [noteName(n, k), Number(v) || 0]).sort((x, y) => y[1] - x[1]);
  section("talk_time", "Talk time", rows.map(([k, v]) => ({ text: k, seconds: v })), "Nobody spoke.", r => {
    const li = el("li", null, `${r.text}: ${duration(r.seconds)} (${Math.round(100 * r.seconds / total)}%)`);
    const bar = el("meter"); bar.min = 0; bar.max = 1; bar.value = r.seconds / total;
    li.append(" ", bar);
    return li;
  });
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
      namedByVoice = info.named_by_voice || {};
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
    followLive(() => { if (renamed) redrawAll(); else drawTranscript(); });
    if (renamed) refreshNamings();
  });
  // A name may have come from a voice (live, or at the end of the meeting): the owner's page asks.
  es.addEventListener("speakers", ev => { speakers = JSON.parse(ev.data); redrawAll(); refreshNamings(); });
  es.addEventListener("state", ev => {
    const d = JSON.parse(ev.data);
    showSession(d);
    if (isOver()) {
      setTimeout(() => es.close(), 1000);   // before the 2 s retry
      settleMoment();
    }
  });
  es.addEventListener("notes", ev => drawNotes(JSON.parse(ev.data)));
}

$("presenter").hidden = !setupMicrophone(sessionId);
start();
