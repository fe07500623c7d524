// require-header for Tandem, in JavaScript.
//
// Rejects requests that lack a required header with a 400 and a JSON error
// body, and counts them; marks the others. It behaves exactly like the Rust
// version in plugins/require-header and the C and Python versions beside this
// folder: the integration tests hold all four to the same assertions.
//
// componentize-js (SpiderMonkey) turns this module into a component of the
// `plugin` world in wit/tandem.wit. The export `hooks` is the WIT interface
// `hooks`; imports are named by their WIT interface.

import { write as logWrite } from 'tandem:plugin/log@0.1.0';
import { describe, counterAdd } from 'tandem:plugin/metrics@0.1.0';

// Rejections by missing header.
const REJECTIONS = 'validator_rejections_total';
// Requests seen in on-log, by outcome.
const REQUESTS = 'validator_requests_total';
// Carries the outcome from on-request to the later phases.
const OUTCOME = 'validator.outcome';
// A header name (an RFC 9110 token).
const TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

// Set by init. An instance handles one call at a time and the host reuses
// instances, so module state lives as long as the instance.
let settings = null;

// A `result` error for the host: the thrown value becomes the `err` string.
function fail(message) {
  const error = new Error(message);
  error.payload = message;
  return error;
}

// The settings from the [config] table, or an error naming the key at fault.
function parseConfig(text) {
  let config;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw fail(`config: ${error.message}`);
  }
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw fail('config: expected a table');
  }
  for (const key of Object.keys(config)) {
    if (key !== 'headers' && key !== 'path_prefix') {
      throw fail(`config key \`${key}\`: unknown field \`${key}\`, expected \`headers\` or \`path_prefix\``);
    }
  }
  if (!('headers' in config)) {
    throw fail('config: missing field `headers`');
  }
  let headers = config.headers;
  if (!Array.isArray(headers) || !headers.every((h) => typeof h === 'string')) {
    throw fail('config key `headers`: expected a list of strings');
  }
  if (headers.length === 0) {
    throw fail('config key `headers`: list at least one header name');
  }
  headers = headers.map((h) => h.replace(/[A-Z]+/g, (s) => s.toLowerCase()));
  for (const name of headers) {
    if (!TOKEN.test(name)) {
      throw fail(`config key \`headers\`: \`${name}\` is not a valid header name`);
    }
  }
  const prefix = 'path_prefix' in config ? config.path_prefix : '/';
  if (typeof prefix !== 'string') {
    throw fail('config key `path_prefix`: expected a string');
  }
  if (!prefix.startsWith('/')) {
    throw fail(`config key \`path_prefix\`: \`${prefix}\` does not start with \`/\``);
  }
  return { headers, pathPrefix: prefix, validated: headers.join(',') };
}

function warn(message, fields) {
  logWrite('warn', message, fields);
}

// Makes a change to the request or response; a refused one fails the hook.
function edit(what, change) {
  try {
    change();
  } catch (error) {
    throw fail(`cannot set ${what}: ${error.payload ?? error}`);
  }
}

// Counting is best effort: a refused metric must not change a decision.
function count(metric, label) {
  try {
    counterAdd(metric, [label], 1n);
  } catch (error) {
    warn('cannot count', [['metric', metric], ['error', String(error.payload ?? error)]]);
  }
}

export const hooks = {
  init(config) {
    settings = parseConfig(config);
    for (const [name, help, label] of [
      [REJECTIONS, 'Requests rejected by require-header, by the missing header.', 'header'],
      [REQUESTS, 'Requests seen by require-header, by outcome (passed, rejected, skipped).', 'outcome'],
    ]) {
      try {
        describe(name, 'counter', help, [label], new Float64Array());
      } catch (error) {
        warn('cannot describe metric', [['metric', name], ['error', String(error.payload ?? error)]]);
      }
    }
    return { onRequest: true, onResponse: true, onLog: true };
  },

  onRequest(req) {
    const path = req.path();
    if (!path.startsWith(settings.pathPrefix)) {
      return { tag: 'continue' };
    }
    for (const name of settings.headers) {
      if (!req.header(name)) {
        count(REJECTIONS, ['header', name]);
        warn('missing required header', [['header', name], ['path', path]]);
        edit(OUTCOME, () => req.setProperty(OUTCOME, 'rejected'));
        // Header names are tokens, which need no escaping in JSON.
        const body = `{"error":"missing_header","header":"${name}"}`;
        return {
          tag: 'respond',
          val: {
            status: 400,
            headers: [['content-type', 'application/json']],
            body: new TextEncoder().encode(body),
          },
        };
      }
    }
    edit('x-validated', () => req.setHeader('x-validated', settings.validated));
    edit(OUTCOME, () => req.setProperty(OUTCOME, 'passed'));
    return { tag: 'continue' };
  },

  onResponse(req, resp) {
    if (req.property(OUTCOME) === 'passed') {
      edit('x-validator', () => resp.setHeader('x-validator', 'passed'));
    }
    return { tag: 'continue' };
  },

  onLog(req, _resp, _info) {
    count(REQUESTS, ['outcome', req.property(OUTCOME) ?? 'skipped']);
  },

  // Phase on-app-log is not in this plugin's hook set, so the host never
  // calls it; the export must still exist. Passes the record on.
  onAppLog(entry) {
    return entry;
  },
};
