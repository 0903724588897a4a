// Start page: start_session through the API, then show where to publish and the page links.
"use strict";
document.getElementById("start").addEventListener("submit", async ev => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const token = new URLSearchParams(location.search).get("token");
  const r = await fetch("/api", {
    method: "POST",
    headers: Object.assign({ "content-type": "application/json" }, token ? { authorization: "Bearer " + token } : {}),
    body: JSON.stringify({ action: "start_session", meeting_id: f.get("meeting_id"), user_id: "local", topic: f.get("topic") }),
  });
  const d = await r.json();
  const out = document.getElementById("out"); out.hidden = false;
  if (!r.ok) { out.textContent = JSON.stringify(d, null, 2); return; }
  out.textContent = `Stream URL:  ${d.rtmp_server}\nStream key:  ${d.stream_key}\nPage:        ${d.page_url}`;
  const page = `/sessions/${d.session_id}` + (token ? "?token=" + encodeURIComponent(token) : "");
  const links = document.getElementById("links"); links.hidden = false;
  const a = (href, text) => Object.assign(document.createElement("a"), { href, textContent: text });
  // The key rides in the URL fragment, which browsers never send to a server.
  links.replaceChildren(a(page, "Open the live transcript"), " · ",
    a(page + "#key=" + encodeURIComponent(d.stream_key), "Presenter page (stream my microphone)"));
});
