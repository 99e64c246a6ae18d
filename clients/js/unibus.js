// unibus for browsers: a member's connection and a room follower, over nats-server's
// websocket, on the official NATS JavaScript client (docs/protocol.md is the contract).
//
//   import { connect } from "./unibus.js";
//   const session = await connect({ servers: "wss://nats.example:443", seed: "SU…" });
//   const kept = localStorage.getItem("cursor");
//   for await (const item of session.follow("lobby", { after: kept === null ? undefined : Number(kept) })) {
//     if (item.gap) console.warn("frames no longer stored", item.gap);
//     else show(item.frame);
//     localStorage.setItem("cursor", String(item.seq ?? item.gap.last));
//   }
//
// `connect` keeps the connection authorized for as long as the page lives; `follow` yields
// every stored frame of a room exactly once, in stream order, across cuts, NATS restarts,
// JWT expiries and reloads (from the cursor the page keeps). Frames are yielded as stored
// (msgpack bytes): verifying and decrypting them is docs/protocol.md, "Receiving".
//
// Peer dependencies: @nats-io/nats-core and @nats-io/nkeys (a bundler resolves them).
import { errors, headers as natsHeaders, nkeyAuthenticator, wsconnect } from "@nats-io/nats-core";
import { fromSeed } from "@nats-io/nkeys";

export const DEFAULT_PREFIX = "$UNIBUS.CTL";
// Where the control plane tells an identity that its rooms changed: below the inbox it may
// always subscribe to, so a notice arrives before the new room's permission does.
const NOTICE_SUFFIX = ".unibus.notice";
// A persisted room's stream republishes every frame it stores on `<room subject>.stored`,
// stamped with its stream sequence.
const STORED_SUFFIX = ".stored";
const HEADER_SEQUENCE = "Nats-Sequence";
const HEADER_ERROR_CODE = "Nats-Service-Error-Code";
const HEADER_ERROR = "Nats-Service-Error";
// On a reply whose signer's rooms changed (a `create`): this connection's grant predates
// the change, so it re-authorizes before the caller uses it.
const HEADER_RECONNECT = "Unibus-Reconnect";
const REQUEST_TIMEOUT_MS = 5000;
const RETRY_PAUSE_MS = 100;
// The backoff of a read resent while the control plane is away doubles up to this.
const MAX_RETRY_PAUSE_MS = 2000;
// How long history is read again for a live copy's sequence it did not reach. The server
// republishes a frame once its stream stored it, so history soon reaches a stamp that is
// the server's (a clustered stream's new leader may answer behind for a moment); one it
// never reaches is not the server's (docs/protocol.md, "Forged headers"), and is only ever
// dropped. A gap is only what history says.
const AHEAD_MS = 30000;
const MAX_AHEAD_PAUSE_MS = 1000;
// After a reconnect's catch-up, one more read this much later (see follow).
const SETTLE_MS = 1000;
// Live copies a follower holds while the page or a history read is busy, by count (the
// `liveCopies` option) and by bytes. Past either, copies are dropped and history is read
// for them instead: a room's flood costs a follower a read, never unbounded memory.
const LIVE_COPIES = 4096;
const LIVE_BYTES = 64 * 2 ** 20;
// An `after` no stream reaches: the reply is empty and says where the stream ends.
const END = "18446744073709551615";

const encoder = new TextEncoder();

/** An error reply of the control plane: an HTTP-like code and its message. */
export class ServiceError extends Error {
  constructor(subject, code, message) {
    super(`${subject}: ${code} ${message}`);
    this.name = "ServiceError";
    this.subject = subject;
    this.code = code;
  }
}

/**
 * Connects as the identity whose nkey seed is `seed`, the way every long-lived unibus peer
 * must: the identity's nkey; replies under `_INBOX.<its key>` (the trust boundary allows no
 * other inbox); reconnects for ever and quickly (the control plane cuts connections on
 * revocations); and `ignoreAuthErrorAbort`, because nats.js otherwise stops reconnecting
 * for good after two auth errors in a row, which a reconnect meets while no control plane
 * answers the auth callout (an outage, a restart of every instance). nats.js 3.4 also keeps
 * such a refusal as its last error after it is back, so without it the next expired JWT
 * would close the connection for good. An expired user JWT ("User Authentication
 * Expired") is then just a reconnect, which runs the auth callout again under the
 * identity's current rooms. The client's own errors go to `nc.status()`; it
 * logs nothing. `options` are passed to `wsconnect` and override these.
 */
export async function connect({ servers, seed, prefix = DEFAULT_PREFIX, ...options }) {
  const nc = await wsconnect({
    name: "unibus-browser-peer",
    servers,
    authenticator: nkeyAuthenticator(encoder.encode(seed)),
    inboxPrefix: `_INBOX.${fromSeed(encoder.encode(seed)).getPublicKey()}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    reconnectJitter: 100,
    ignoreAuthErrorAbort: true,
    ...options,
  });
  return new Session(nc, seed, prefix);
}

/** One identity's connection: signed control requests, re-authorization, followers. */
export class Session {
  #keys;
  #listeners = new Set();
  #reauthorizing = false;

  constructor(nc, seed, prefix = DEFAULT_PREFIX) {
    this.nc = nc;
    this.prefix = prefix;
    this.#keys = fromSeed(encoder.encode(seed));
    this.publicKey = this.#keys.getPublicKey();
    nc.subscribe(`_INBOX.${this.publicKey}${NOTICE_SUFFIX}`, {
      callback: (err, msg) => err || this.#onNotice(msg),
    });
    this.#watch();
  }

  async #watch() {
    for await (const status of this.nc.status()) {
      if (status.type === "reconnect") this.#reauthorizing = false;
      this.#emit(status);
    }
  }

  #emit(event) {
    for (const listener of this.#listeners) listener(event);
  }

  /** Calls `listener(event)` with each status event and each notice; returns the undo. */
  listen(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // Only the control plane may publish below an identity's inbox, but a notice is still a
  // hint: "granted" costs a reconnect, "revoked" a signed request before anything ends.
  #onNotice(msg) {
    let notice;
    try {
      notice = msg.json();
    } catch {
      return;
    }
    if (notice?.event === "granted") this.reauthorize();
    this.#emit({ type: "notice", event: notice?.event, room: notice?.room });
  }

  /**
   * Reconnects so that the connection comes back with the permissions of the identity's
   * current rooms (after a "granted" notice, or a `create` reply's `Unibus-Reconnect`).
   * Several calls while one re-authorization is under way cost one reconnect.
   */
  reauthorize() {
    if (this.#reauthorizing) return;
    this.#reauthorizing = true;
    this.nc.reconnect();
  }

  /** The four signed-request headers of docs/protocol.md for `subject` and `body`. */
  async signedHeaders(subject, body) {
    const timestamp = String(Date.now());
    const nonce = base64url(crypto.getRandomValues(new Uint8Array(16)));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(body)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    const input = ["unibus-request-v1", subject, timestamp, nonce, hex].join("\n");
    return {
      "Unibus-Signer": this.publicKey,
      "Unibus-Timestamp": timestamp,
      "Unibus-Nonce": nonce,
      "Unibus-Signature": base64url(this.#keys.sign(encoder.encode(input))),
    };
  }

  /**
   * One signed request to `<prefix>.rooms.<endpoint>`; the reply message, or a
   * ServiceError (NATS "no responders" counts as 503, as docs/protocol.md says). A reply
   * with `Unibus-Reconnect: true` (after `create`) comes back once the connection has
   * re-authorized, so the new room can be used at once.
   */
  async request(endpoint, body = "") {
    const subject = `${this.prefix}.rooms.${endpoint}`;
    const headers = natsHeaders();
    for (const [name, value] of Object.entries(await this.signedHeaders(subject, body))) {
      headers.set(name, value);
    }
    let reply;
    try {
      reply = await this.nc.request(subject, encoder.encode(body), { timeout: REQUEST_TIMEOUT_MS, headers });
    } catch (err) {
      if (err instanceof errors.NoRespondersError || err?.cause instanceof errors.NoRespondersError) {
        throw new ServiceError(subject, 503, "no control plane is answering");
      }
      throw err;
    }
    const code = reply.headers?.get(HEADER_ERROR_CODE);
    if (code) throw new ServiceError(subject, Number(code), reply.headers.get(HEADER_ERROR));
    if (reply.headers?.get(HEADER_RECONNECT) === "true") await this.#reauthorized();
    return reply;
  }

  // Until the connection is back after a re-authorization this asks for.
  #reauthorized() {
    const back = new Promise((resolve) => {
      const undo = this.listen((event) => {
        if (event.type === "reconnect") {
          undo();
          resolve();
        }
      });
    });
    this.reauthorize();
    return back;
  }

  /**
   * A read (`info`, `history`, …) sent again, freshly signed, until it is answered: a reply
   * lost to a cut, a NATS restart or an expired JWT, or a 503, is only a delay. A 4xx is
   * the answer and is thrown; so is a closed connection.
   */
  async read(endpoint, body = "") {
    for (let pause = RETRY_PAUSE_MS; ; pause = Math.min(2 * pause, MAX_RETRY_PAUSE_MS)) {
      let reply;
      try {
        reply = await this.request(endpoint, body);
      } catch (err) {
        if ((err instanceof ServiceError && err.code < 500) || this.nc.isClosed()) throw err;
        await sleep(pause);
        continue;
      }
      return reply.json();
    }
  }

  /**
   * Yields every stored frame of `room` after stream sequence `after` (undefined: from now
   * on; 0: the whole room), exactly once and in stream order, as `{ seq, frame }` (frame:
   * the stored bytes). Frames the stream no longer holds (its byte limit dropped them, or
   * an operator purged them) come out as `{ gap: { first, last } }`, never skipped in
   * silence. Keep the last item's `seq` (or `gap.last`) as the cursor to resume after.
   * This is docs/protocol.md, "Following a room": live copies from `<room subject>.stored`
   * while they come in order; history (`after=<cursor>`) whenever one is missing: at
   * start, after each reconnect, when a copy's sequence jumps, on a "revoked" notice and
   * when the server refuses the live subscription. A removal ends it by throwing the
   * control plane's 403. Stop it with `break` (or `return()` on the iterator).
   * `onStatus` hears, in words, what the follower did without yielding: live copies it
   * dropped (more than `liveCopies` held while busy; history supplies them) and a stamp
   * history never reached.
   */
  async *follow(room, { after, limit = 1000, liveCopies = LIVE_COPIES, onStatus = () => {} } = {}) {
    if (!Number.isSafeInteger(liveCopies) || liveCopies < 1) {
      throw new RangeError(`liveCopies must be a whole number of at least 1, not ${liveCopies}`);
    }
    const info = await this.read(`${room}.info`);
    if (info.stream == null) throw new Error(`room ${room} is ephemeral: it stores nothing to follow`);
    const subject = info.subject + STORED_SUFFIX;
    const events = new Mailbox();
    const held = { copies: 0, bytes: 0, dropped: 0 };
    const onLive = (msg) => {
      if (held.copies >= liveCopies || held.bytes + msg.data.length > LIVE_BYTES) {
        if (!held.dropped) events.push({ overflowed: true }); // once: read after what is held
        held.dropped++;
        return;
      }
      held.copies++;
      held.bytes += msg.data.length;
      events.push({ live: msg });
    };
    const subscribe = () =>
      this.nc.subscribe(subject, {
        callback: (err, msg) => (err ? events.push({ check: true }) : onLive(msg)),
      });
    const unlisten = this.listen((event) => {
      if (event.type === "reconnect") events.push({ reconnected: true });
      if (event.type === "notice" && event.event === "revoked" && event.room === room) {
        events.push({ check: true }); // removed (a 403), or a forged notice
      }
    });
    let subscription = subscribe();
    let settle = null;
    let cursor;
    const page = async (from) => {
      const query = new URLSearchParams({ after: String(from), limit: String(limit) }).toString();
      const reply = await this.read(`${room}.history`, query);
      const seqs = reply.seqs ?? [];
      if (reply.stream_last_seq == null || seqs.length !== reply.messages.length) {
        throw new Error(`room ${room}: the control plane is older than history \`after\`: it cannot be followed`);
      }
      return { ...reply, frames: reply.messages.map((frame, i) => ({ seq: seqs[i], frame: fromBase64(frame) })) };
    };
    // The sequences after the cursor up to `last` as a gap, and the cursor past them.
    const skip = function* (last) {
      yield { gap: { first: cursor + 1, last } };
      cursor = last;
    };
    const deliver = function* (seq, frame) {
      if (seq <= cursor) return;
      if (seq > cursor + 1) yield* skip(seq - 1);
      cursor = seq;
      yield { seq, frame };
    };
    // The highest sequence seen live that history had not reached when read, and the
    // timer that reads history again for it (never holding up what comes live).
    const ahead = { stamp: 0, since: 0, pause: RETRY_PAUSE_MS, timer: null };
    const reckonAhead = () => {
      if (!ahead.stamp) return;
      clearTimeout(ahead.timer);
      ahead.timer = null;
      if (cursor >= ahead.stamp) {
        ahead.stamp = 0; // reached
        return;
      }
      if (performance.now() - ahead.since >= AHEAD_MS) {
        onStatus(`dropped a live copy stamped ${ahead.stamp}, which history did not reach in ${AHEAD_MS / 1000} s`);
        ahead.stamp = 0; // not the server's stamp
        return;
      }
      ahead.timer = setTimeout(() => events.push({ check: true }), ahead.pause);
      ahead.pause = Math.min(2 * ahead.pause, MAX_AHEAD_PAUSE_MS);
    };
    // History after the cursor until the stream's end; what the stream no longer holds
    // comes out as a gap. Only history says what is gone, never a live copy.
    const catchUp = async function* () {
      for (;;) {
        const reply = await page(cursor);
        const end = reply.stream_last_seq;
        if (end < cursor) {
          throw new Error(
            `room ${room}'s stream ends at sequence ${end}, below this follower's cursor ${cursor}: ` +
              "it is not the stream the cursor was taken from (the room was deleted and made again, " +
              "or JetStream was restored)",
          );
        }
        for (const { seq, frame } of reply.frames) yield* deliver(seq, frame);
        const windowEnd = reply.last_seq ?? end;
        if (windowEnd > cursor) yield* skip(windowEnd); // the window's last sequences are gone
        if (cursor >= end) break;
      }
      reckonAhead();
    };
    try {
      // The server holds the subscription before the first read: whatever is stored after
      // that read arrives live.
      await this.nc.flush();
      cursor = after ?? (await page(END)).stream_last_seq;
      yield* catchUp();
      for (;;) {
        const event = await events.next();
        if (event.live) {
          held.copies--;
          held.bytes -= event.live.data.length;
          const seq = storedSequence(event.live);
          if (seq !== null && seq <= cursor) continue; // handed on already
          if (seq === cursor + 1) {
            yield* deliver(seq, event.live.data);
            continue;
          }
          // Frames missed before this one (or a sequence it cannot read): history has them,
          // this one included. The live copy is dropped either way: history is the
          // authority on what was stored, and what it does not hold yet is looked for again.
          yield* catchUp();
          if (seq !== null && seq > cursor && seq > ahead.stamp) {
            if (!ahead.stamp) Object.assign(ahead, { since: performance.now(), pause: RETRY_PAUSE_MS });
            ahead.stamp = seq;
            reckonAhead();
          }
        } else if (event.reconnected) {
          // Refused while the identity was not yet a member: subscribe again now that the
          // connection is re-authorized; history says whether it is one.
          if (subscription.isClosed()) subscription = subscribe();
          yield* catchUp();
          // In a cluster the renewed subscription may reach the stream's leader after that
          // read did: one more read a little later.
          clearTimeout(settle);
          settle = setTimeout(() => events.push({ check: true }), SETTLE_MS);
        } else if (event.overflowed) {
          onStatus(`${held.dropped} live copies dropped while busy: reading them from history`);
          held.dropped = 0;
          yield* catchUp();
        } else {
          yield* catchUp();
        }
      }
    } finally {
      clearTimeout(settle);
      clearTimeout(ahead.timer);
      unlisten();
      if (!subscription.isClosed()) subscription.unsubscribe();
    }
  }

  /** Drains and closes the connection. */
  async close() {
    await this.nc.close();
  }
}

/**
 * The stream sequence nats-server stamped on a republished copy, or null. The server
 * appends its headers after any the publisher sent, so a publisher that forged
 * Nats-Sequence on its own frame only adds an earlier value: the last one is the server's.
 */
export function storedSequence(msg) {
  const values = msg.headers?.values(HEADER_SEQUENCE) ?? [];
  const seq = Number(values.at(-1));
  return Number.isSafeInteger(seq) && seq > 0 ? seq : null;
}

// Events that callbacks push and one async loop takes, in order.
class Mailbox {
  #items = [];
  #wake = null;

  push(item) {
    this.#items.push(item);
    this.#wake?.();
    this.#wake = null;
  }

  async next() {
    while (this.#items.length === 0) {
      await new Promise((resolve) => {
        this.#wake = resolve;
      });
    }
    return this.#items.shift();
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}
