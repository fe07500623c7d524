// {{name}}: a Tandem plugin in JavaScript. Adds `x-hello: {{name}}` to every
// request, logs its path, and counts exchanges by status. Change it to taste.
//
// componentize-js builds this module against wit/tandem.wit (world `plugin`).
// The export `hooks` is the WIT interface `hooks`; every function of it must
// be present, even those that `init` does not name. Imports are named by
// their WIT interface. A thrown error becomes the `err` of a `result`.

import { write as log } from 'tandem:plugin/log@0.1.0';
import { describe, counterAdd } from 'tandem:plugin/metrics@0.1.0';

const REQUESTS = '{{metric}}_requests_total';

export const hooks = {
  // Phase init: once per instance, with [config] as JSON. Parse it here
  // (JSON.parse) and throw an error that names the key at fault.
  init(_config) {
    describe(REQUESTS, 'counter', 'Exchanges seen by {{name}}.', ['status'], new Float64Array());
    return { onRequest: true, onResponse: true, onLog: true };
  },

  // Phase on-request: before the upstream; may change the request or answer
  // the client ({ tag: 'respond', val: { status, headers, body } }).
  onRequest(req) {
    log('info', 'hello', [['path', req.path()]]);
    req.setHeader('x-hello', '{{name}}');
    return { tag: 'continue' };
  },

  // Phase on-response: with the response head; may change it or replace the
  // response.
  onResponse(_req, _resp) {
    return { tag: 'continue' };
  },

  // Phase on-log: after the response was sent; observe only. u64 values are
  // BigInt.
  onLog(_req, _resp, info) {
    try {
      counterAdd(REQUESTS, [['status', String(info.status)]], 1n);
    } catch (_error) {
      // Counting is best effort.
    }
  },

  // Phase on-app-log is not in this plugin's hook set, so the host never
  // calls it; the export must still exist. Passes the record on.
  onAppLog(entry) {
    return entry;
  },
};
