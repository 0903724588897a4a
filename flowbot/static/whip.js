// "Stream my microphone": publish the browser's microphone to this session over WHIP.
// The stream key comes from the key field (prefilled from the URL fragment #key=..., which
// browsers never send to the server, so the key stays out of request lines and logs).
"use strict";

/** Wait until ICE gathering is complete (WHIP without trickle: one offer with all candidates). */
function iceGathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise(resolve => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);   // publish with what we have rather than hang
  });
}

/** Start publishing; resolves to {stop()} once the server answered. */
async function whipPublish(sessionId, key, onState) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false }, video: false });
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getAudioTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  pc.addEventListener("connectionstatechange", () => onState(pc.connectionState));
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc, 3000);
  const resp = await fetch(`/sessions/${encodeURIComponent(sessionId)}/whip`, {
    method: "POST",
    headers: { "content-type": "application/sdp", "authorization": "Bearer " + key },
    body: pc.localDescription.sdp,
  });
  if (resp.status !== 201) {
    stream.getTracks().forEach(t => t.stop()); pc.close();
    let msg = `HTTP ${resp.status}`;
    try { msg = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  const location = resp.headers.get("location");
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  return {
    async stop() {
      stream.getTracks().forEach(t => t.stop());
      pc.close();
      if (location) await fetch(location, { method: "DELETE", headers: { "authorization": "Bearer " + key } });
    },
  };
}

/** Draw the microphone controls into #mic-area when the page was opened with the key; true if drawn. */
function setupMicrophone(sessionId) {
  const area = document.getElementById("mic-area");
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (!area || !fragment.get("key")) return false;   // viewers never see the presenter's controls
  const field = Object.assign(document.createElement("input"), { type: "password", id: "streamkey", placeholder: "stream key", value: fragment.get("key"), autocomplete: "off" });
  const button = Object.assign(document.createElement("button"), { id: "mic", type: "button", textContent: "stream my microphone" });
  const status = Object.assign(document.createElement("span"), { id: "micstatus" });
  area.replaceChildren(field, button, status);
  let live = null;
  const setStatus = text => { status.textContent = text; area.dataset.state = text; };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (live) { await live.stop(); live = null; button.textContent = "stream my microphone"; setStatus("stopped"); }
      else {
        if (!field.value) throw new Error("enter the session's stream key");
        setStatus("connecting…");
        live = await whipPublish(sessionId, field.value, state => setStatus(state));
        button.textContent = "stop streaming";
      }
    } catch (err) { setStatus("error: " + err.message); }
    finally { button.disabled = false; }
  });
  if (new URLSearchParams(location.search).get("autostart") === "1") button.click();
  return true;
}
