// Index page: the caller's meetings (list_sessions), search across them (search), and starting
// a session (start_session), all through the one API.
"use strict";
const token = new URLSearchParams(location.search).get("token");
const MATCH = /\u0002(.*?)\u0003/g;  // stores.base.MATCH_START / MATCH_END around matched words

async function api(body) {
  const r = await fetch("/api", {
    method: "POST",
    headers: Object.assign({ "content-type": "application/json" }, token ? { authorization: "Bearer " + token } : {}),
    body: JSON.stringify(body),
  });
  return [r, await r.json()];
}
const el = (tag, props, ...kids) => { const e = Object.assign(document.createElement(tag), props || {}); e.append(...kids); return e; };
function pageUrl(sid, t) {
  const query = new URLSearchParams(token ? { token } : {});
  if (t !== undefined) query.set("t", t.toFixed(2));   // the page marks that passage and plays it
  return `/sessions/${encodeURIComponent(sid)}` + (query.size ? "?" + query : "");
}
function clock(s) {
  s = Math.floor(s);
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0"), ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${Math.floor(s / 60)}:${ss}`;
}
// The snippet as text nodes and <mark>s: nothing from the transcript is ever parsed as HTML.
function marked(snippet) {
  const out = []; let last = 0;
  for (const m of snippet.matchAll(MATCH)) {
    out.push(snippet.slice(last, m.index), el("mark", { textContent: m[1] }));
    last = m.index + m[0].length;
  }
  out.push(snippet.slice(last));
  return out;
}

async function loadMeetings() {
  const [r, d] = await api({ action: "list_sessions" });
  const body = document.querySelector("#meetings tbody");
  if (!r.ok) { body.replaceChildren(el("tr", {}, el("td", { colSpan: 5, textContent: d.message || "cannot list meetings" }))); return; }
  document.getElementById("nomeetings").hidden = d.sessions.length > 0;
  body.replaceChildren(...d.sessions.map(m => el("tr", { className: "meeting" },
    el("td", {}, el("a", { href: pageUrl(m.session_id), textContent: m.topic || m.meeting_id })),
    el("td", { textContent: new Date(m.created_at * 1000).toLocaleString() }),
    el("td", { className: "num", textContent: clock(m.duration) }),
    el("td", {}, el("span", { className: "badge " + m.state, textContent: m.state })),
    el("td", { textContent: m.speakers.join(", ") }))));
}

document.getElementById("search").addEventListener("submit", async ev => {
  ev.preventDefault();
  const query = new FormData(ev.target).get("query");
  const [r, d] = await api({ action: "search", query });
  const list = document.getElementById("hitlist");
  document.getElementById("hits").hidden = false;
  if (!r.ok) { list.replaceChildren(el("li", { textContent: d.message })); return; }
  if (!d.hits.length) { list.replaceChildren(el("li", { textContent: "Nothing found." })); return; }
  list.replaceChildren(...d.hits.map(h => el("li", { className: "hit" },
    el("a", { href: pageUrl(h.session_id, h.start) },
      el("span", { className: "t", textContent: `${h.topic || h.session_id} · ${clock(h.start)}` }),
      el("span", { className: "who", textContent: (h.speaker_name || h.speaker || "?") + ":" }),
      el("span", { className: "text" }, ...marked(h.snippet))))));
});

document.getElementById("start").addEventListener("submit", async ev => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const [r, d] = await api({ action: "start_session", meeting_id: f.get("meeting_id"), user_id: "local", topic: f.get("topic") });
  const out = document.getElementById("out"); out.hidden = false;
  if (!r.ok) { out.textContent = JSON.stringify(d, null, 2); return; }
  out.textContent = `Stream URL:  ${d.rtmp_server}\nStream key:  ${d.stream_key}\nPage:        ${d.page_url}`;
  const page = pageUrl(d.session_id);
  const links = document.getElementById("links"); links.hidden = false;
  const a = (href, text) => el("a", { href, textContent: text });
  // The key rides in the URL fragment, which browsers never send to a server.
  links.replaceChildren(a(page, "Open the live transcript"), " · ",
    a(page + "#key=" + encodeURIComponent(d.stream_key), "Presenter page (stream my microphone)"));
  loadMeetings();
});

loadMeetings();
