// A browser peer as the unibus web client is one: core NATS over a websocket to publish
// (no JetStream, no request path), and the HTTP shim to read the room's backlog after a
// reload. Settings come in the URL fragment: ws, shim, room, subject, seed[, prefix].
// It connects as its identity (nkey, and the inbox prefix bound to it): under the trust
// boundary that decides which room subjects the server lets it publish to.
import { nkeyAuthenticator, wsconnect } from "@nats-io/nats-core";
import { fromSeed } from "@nats-io/nkeys";

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

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function sha256hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The four headers of docs/protocol.md: the signature covers the NATS subject the shim
// will request on and the exact query-string bytes it relays as the body.
async function signedHeaders(subject, body) {
  const keys = fromSeed(encoder.encode(config.seed));
  const timestamp = String(Date.now());
  const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const input = ["unibus-request-v1", subject, timestamp, nonce, await sha256hex(encoder.encode(body))];
  return {
    "Unibus-Signer": keys.getPublicKey(),
    "Unibus-Timestamp": timestamp,
    "Unibus-Nonce": nonce,
    "Unibus-Signature": base64url(keys.sign(encoder.encode(input.join("\n")))),
  };
}

async function fetchHistory({ signed = true, query = "limit=100" } = {}) {
  const subject = `${config.prefix}.rooms.${config.room}.history`;
  const headers = signed ? await signedHeaders(subject, query) : {};
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
  const keys = fromSeed(encoder.encode(config.seed));
  const nc = await wsconnect({
    servers: config.ws,
    authenticator: nkeyAuthenticator(encoder.encode(config.seed)),
    inboxPrefix: `_INBOX.${keys.getPublicKey()}`,
  });
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
