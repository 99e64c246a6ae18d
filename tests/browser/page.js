// A browser peer as the unibus web client is one: core NATS over a websocket to publish
// (no JetStream, no request path), and the HTTP shim to read the room's backlog after a
// reload. Settings come in the URL fragment: ws, shim, room, subject, seed[, prefix].
// It connects as its identity with clients/js/unibus.js (nkey, and the inbox prefix bound
// to it): under the trust boundary that decides which room subjects the server lets it
// publish to.
import { connectRetrying } from "./connecting.js";

const params = new URLSearchParams(location.hash.slice(1));
const config = {
  ws: params.get("ws"),
  shim: params.get("shim"),
  room: params.get("room"),
  subject: params.get("subject"),
  seed: params.get("seed"),
  prefix: params.get("prefix") ?? "$UNIBUS.CTL",
};
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let session;

async function fetchHistory({ signed = true, query = "limit=100" } = {}) {
  const subject = `${config.prefix}.rooms.${config.room}.history`;
  // The signature covers the NATS subject the shim will request on and the exact
  // query-string bytes it relays as the body.
  const headers = signed ? await session.signedHeaders(subject, query) : {};
  try {
    const response = await fetch(`${config.shim}/rooms/${config.room}/history?${query}`, { headers });
    return { status: response.status, body: await response.json() };
  } catch (err) {
    return { error: String(err) };
  }
}

function decodeFrame(b64) {
  return decoder.decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
}

async function showHistory() {
  const result = await fetchHistory();
  document.getElementById("history-status").textContent = result.error ?? String(result.status);
  const list = document.getElementById("frames");
  list.replaceChildren();
  for (const frame of result.body?.messages ?? []) {
    const item = document.createElement("li");
    item.textContent = decodeFrame(frame);
    list.append(item);
  }
}

async function main() {
  document.getElementById("room").textContent = config.room;
  window.unibus = { fetchHistory };
  session = await connectRetrying({ servers: config.ws, seed: config.seed, prefix: config.prefix });
  const nc = session.nc;
  // What the server refused this page (e.g. a publish to a room it is not in).
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "error") {
        const item = document.createElement("li");
        item.textContent = String(status.error ?? status.data);
        document.getElementById("refusals").append(item);
      }
    }
  })();
  let sent = 0;
  document.getElementById("compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    nc.publish(config.subject, encoder.encode(input.value));
    await nc.flush();
    input.value = "";
    document.getElementById("sent").textContent = String(++sent);
  });
  document.getElementById("send").disabled = false;
  await showHistory();
  document.body.dataset.state = "ready";
}

main().catch((err) => {
  document.body.dataset.state = "failed";
  document.body.dataset.error = String(err);
});
