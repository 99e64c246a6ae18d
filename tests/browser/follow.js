// A page that follows one room with clients/js/unibus.js, as a browser app would: the
// cursor and what it showed live in localStorage, so a reload resumes where it stopped.
// Settings come in the URL fragment: ws, seed, room[, after, prefix, liveCopies, busyMs]
// (after: where a page without a kept cursor starts; absent: from now on; busyMs: how long
// the page is busy after its first item, as an app rendering would be). window.follower
// holds the state the test reads; the log in localStorage holds every item across reloads.
import { connectRetrying } from "./connecting.js";

const params = new URLSearchParams(location.hash.slice(1));
const room = params.get("room");
const state = { reconnects: 0, notices: [], statuses: [], error: null };
window.follower = state;

function load(key, fallback) {
  const kept = localStorage.getItem(key);
  return kept === null ? fallback : JSON.parse(kept);
}

function base64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

async function main() {
  const session = await connectRetrying({
    servers: params.get("ws"),
    seed: params.get("seed"),
    prefix: params.get("prefix") ?? undefined,
  });
  window.session = session;
  session.listen((event) => {
    if (event.type === "reconnect") state.reconnects++;
    if (event.type === "notice") state.notices.push({ event: event.event, room: event.room });
  });
  document.body.dataset.state = "following";
  const log = load("log", []);
  const start = params.has("after") ? Number(params.get("after")) : undefined;
  // The cursor and the log change in one step, so a reload can only resume where the log ends.
  const options = { after: load("cursor", start), onStatus: (text) => state.statuses.push(text) };
  if (params.has("liveCopies")) options.liveCopies = Number(params.get("liveCopies"));
  let busyMs = Number(params.get("busyMs") ?? 0);
  for await (const item of session.follow(room, options)) {
    log.push(item.gap ? { gap: item.gap } : { seq: item.seq, frame: base64(item.frame) });
    localStorage.setItem("log", JSON.stringify(log));
    localStorage.setItem("cursor", JSON.stringify(item.seq ?? item.gap.last));
    if (busyMs) await new Promise((resolve) => setTimeout(resolve, busyMs));
    busyMs = 0;
  }
}

main().catch((err) => {
  state.error = { code: err.code ?? null, message: String(err) };
  document.body.dataset.state = "ended";
});
