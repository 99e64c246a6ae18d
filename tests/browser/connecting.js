// A page's first connect, tried again a few times, as a page would: under load the auth
// callout can answer a connect after nats-server stopped waiting for it (its 2 s
// authorization timeout), and that connect is refused. clients/js/unibus.js reports a
// first refusal at once, like the Python and Go peers; once connected it reconnects for ever.
import { connect } from "../../clients/js/unibus.js";

const ATTEMPTS = 5;
const PAUSE_MS = 1000;

export async function connectRetrying(options) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect(options);
    } catch (err) {
      if (attempt >= ATTEMPTS) throw err;
      await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
    }
  }
}
