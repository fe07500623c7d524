// require-header for Tandem, in C.
//
// Rejects requests that lack a required header with a 400 and a JSON error
// body, and counts them; marks the others. It behaves exactly like the Rust
// version in plugins/require-header and the Python and JavaScript versions
// beside this folder: the integration tests hold all four to the same
// assertions.
//
// plugin.h and plugin.c are generated from wit/tandem.wit (world `plugin`) at
// build time. Ownership, as wit-bindgen's C bindings define it:
// - arguments of an exported function belong to it: free them;
// - what an export returns is freed by the bindings after the call, so it
//   must be allocated with malloc (plugin_string_dup and friends);
// - what an import returns belongs to the caller: free it;
// - arguments passed to an import are only borrowed.
//
// No stdio: the component imports nothing from WASI.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef tandem_plugin_types_borrow_request_t request_t;
typedef tandem_plugin_types_borrow_response_t response_t;

// Rejections by missing header.
#define REJECTIONS "validator_rejections_total"
// Requests seen in on-log, by outcome.
#define REQUESTS "validator_requests_total"
// Carries the outcome from on-request to the later phases.
#define OUTCOME "validator.outcome"
// Most header names the config may list.
#define MAX_HEADERS 32

// ---------------------------------------------------------------- strings

// A string that points at a literal: for arguments to imports, which only
// borrow them.
static plugin_string_t lit(const char *s) {
  plugin_string_t out;
  plugin_string_set(&out, s);
  return out;
}

static bool str_eq(const plugin_string_t *a, const char *b) {
  size_t n = strlen(b);
  return a->len == n && memcmp(a->ptr, b, n) == 0;
}

static bool starts_with(const plugin_string_t *s, const plugin_string_t *prefix) {
  return s->len >= prefix->len && memcmp(s->ptr, prefix->ptr, prefix->len) == 0;
}

// A growing buffer of bytes, moved into a plugin_string_t when done.
typedef struct {
  uint8_t *ptr;
  size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + n) cap *= 2;
    b->ptr = realloc(b->ptr, cap);
    if (!b->ptr) abort();
    b->cap = cap;
  }
  memcpy(b->ptr + b->len, data, n);
  b->len += n;
}

static void buf_str(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_wit(buf_t *b, const plugin_string_t *s) { buf_add(b, s->ptr, s->len); }

static plugin_string_t buf_take(buf_t *b) {
  plugin_string_t out = {b->ptr, b->len};
  if (out.len == 0) {
    free(b->ptr);
    out.ptr = NULL;
  }
  *b = (buf_t){0};
  return out;
}

// Error messages of the form  A`S`B  or  A`S`B`S`C  (S, a config string).
static plugin_string_t message(const char *a, const plugin_string_t *s, const char *b) {
  buf_t buf = {0};
  buf_str(&buf, a);
  if (s) {
    buf_str(&buf, "`");
    buf_wit(&buf, s);
    buf_str(&buf, "`");
  }
  if (b) buf_str(&buf, b);
  return buf_take(&buf);
}

static const char *edit_error(tandem_plugin_types_edit_error_t e) {
  switch (e.tag) {
    case TANDEM_PLUGIN_TYPES_EDIT_ERROR_INVALID_NAME: return "invalid header name";
    case TANDEM_PLUGIN_TYPES_EDIT_ERROR_INVALID_VALUE: return "invalid value";
    default: return "host limit exceeded";
  }
}

// ---------------------------------------------------------------- log and metrics

static void warn(const char *text, plugin_tuple2_string_string_t *fields, size_t n) {
  plugin_string_t msg = lit(text);
  plugin_list_tuple2_string_string_t list = {fields, n};
  tandem_plugin_log_write(TANDEM_PLUGIN_LOG_LEVEL_WARN, &msg, &list);
}

// Logs an error returned by the host, and frees it.
static void warn_host_error(const char *text, const char *metric, plugin_string_t *error) {
  plugin_tuple2_string_string_t fields[] = {{lit("metric"), lit(metric)}, {lit("error"), *error}};
  warn(text, fields, 2);
  plugin_string_free(error);
}

// Counting is best effort: a refused metric must not change a decision.
static void count(const char *metric, const char *label, const plugin_string_t *value) {
  plugin_string_t name = lit(metric), error;
  plugin_tuple2_string_string_t pair = {lit(label), *value};
  tandem_plugin_metrics_labels_t labels = {&pair, 1};
  if (!tandem_plugin_metrics_counter_add(&name, &labels, 1, &error)) {
    warn_host_error("cannot count", metric, &error);
  }
}

static void describe(const char *metric, const char *help, const char *label) {
  plugin_string_t name = lit(metric), help_text = lit(help), label_name = lit(label), error;
  plugin_list_string_t labels = {&label_name, 1};
  plugin_list_f64_t buckets = {NULL, 0};
  if (!tandem_plugin_metrics_describe(&name, TANDEM_PLUGIN_METRICS_KIND_COUNTER, &help_text,
                                      &labels, &buckets, &error)) {
    warn_host_error("cannot describe metric", metric, &error);
  }
}

// ---------------------------------------------------------------- config

static struct {
  plugin_string_t headers[MAX_HEADERS];  // lower case
  size_t header_count;
  plugin_string_t path_prefix;
  plugin_string_t validated;  // the names joined with ","
} settings;

static void settings_free(void) {
  for (size_t i = 0; i < settings.header_count; i++) plugin_string_free(&settings.headers[i]);
  settings.header_count = 0;
  plugin_string_free(&settings.path_prefix);
  plugin_string_free(&settings.validated);
}

// A reader of the JSON the host makes from the [config] table: just enough
// for an object of strings and lists of strings.
typedef struct {
  const uint8_t *at, *end;
} json_t;

static void skip_ws(json_t *j) {
  while (j->at < j->end && (*j->at == ' ' || *j->at == '\t' || *j->at == '\n' || *j->at == '\r')) j->at++;
}

static bool peek(json_t *j, uint8_t c) {
  skip_ws(j);
  return j->at < j->end && *j->at == c;
}

static bool eat(json_t *j, uint8_t c) {
  if (!peek(j, c)) return false;
  j->at++;
  return true;
}

static int hex(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool read_u4(json_t *j, uint32_t *out) {
  if (j->end - j->at < 4) return false;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hex(j->at[i]);
    if (d < 0) return false;
    v = v * 16 + (uint32_t)d;
  }
  j->at += 4;
  *out = v;
  return true;
}

static void add_utf8(buf_t *b, uint32_t cp) {
  uint8_t out[4];
  size_t n;
  if (cp < 0x80) { out[0] = (uint8_t)cp; n = 1; }
  else if (cp < 0x800) { out[0] = 0xC0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3F); n = 2; }
  else if (cp < 0x10000) { out[0] = 0xE0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3F); out[2] = 0x80 | (cp & 0x3F); n = 3; }
  else { out[0] = 0xF0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3F); out[2] = 0x80 | ((cp >> 6) & 0x3F); out[3] = 0x80 | (cp & 0x3F); n = 4; }
  buf_add(b, out, n);
}

// Reads a string (the opening quote is next) into a new plugin_string_t.
static bool read_string(json_t *j, plugin_string_t *out) {
  if (!eat(j, '"')) return false;
  buf_t b = {0};
  while (j->at < j->end && *j->at != '"') {
    uint8_t c = *j->at++;
    if (c != '\\') {
      buf_add(&b, &c, 1);
      continue;
    }
    if (j->at >= j->end) break;
    uint8_t e = *j->at++;
    const char *simple = NULL;
    switch (e) {
      case '"': simple = "\""; break;
      case '\\': simple = "\\"; break;
      case '/': simple = "/"; break;
      case 'b': simple = "\b"; break;
      case 'f': simple = "\f"; break;
      case 'n': simple = "\n"; break;
      case 'r': simple = "\r"; break;
      case 't': simple = "\t"; break;
    }
    if (simple) {
      buf_str(&b, simple);
      continue;
    }
    uint32_t cp, low;
    if (e != 'u' || !read_u4(j, &cp)) goto bad;
    if (cp >= 0xD800 && cp < 0xDC00) {
      if (j->end - j->at < 2 || j->at[0] != '\\' || j->at[1] != 'u') goto bad;
      j->at += 2;
      if (!read_u4(j, &low) || low < 0xDC00 || low > 0xDFFF) goto bad;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    add_utf8(&b, cp);
  }
  if (j->at >= j->end) goto bad;
  j->at++;  // the closing quote
  *out = buf_take(&b);
  return true;
bad:
  free(b.ptr);
  return false;
}

static bool is_token_char(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_header_name(const plugin_string_t *s) {
  if (s->len == 0) return false;
  for (size_t i = 0; i < s->len; i++) {
    if (!is_token_char(s->ptr[i])) return false;
  }
  return true;
}

// Reads the "headers" value (next in j) into settings.
static bool read_headers(json_t *j, plugin_string_t *err) {
  const plugin_string_t expected = lit("config key `headers`: expected a list of strings");
  if (!eat(j, '[')) goto wrong_type;
  if (eat(j, ']')) return true;
  do {
    if (!peek(j, '"')) goto wrong_type;
    if (settings.header_count == MAX_HEADERS) {
      *err = message("config key `headers`: list at most 32 header names", NULL, NULL);
      return false;
    }
    plugin_string_t *name = &settings.headers[settings.header_count];
    if (!read_string(j, name)) goto wrong_type;
    settings.header_count++;
    for (size_t i = 0; i < name->len; i++) {
      if (name->ptr[i] >= 'A' && name->ptr[i] <= 'Z') name->ptr[i] += 'a' - 'A';
    }
  } while (eat(j, ','));
  if (eat(j, ']')) return true;
wrong_type:
  plugin_string_dup_n(err, (const char *)expected.ptr, expected.len);
  return false;
}

// Parses the [config] table into settings, or says which key is wrong.
static bool parse_config(const plugin_string_t *config, plugin_string_t *err) {
  json_t j = {config->ptr, config->ptr + config->len};
  bool have_headers = false;
  plugin_string_dup(&settings.path_prefix, "/");
  if (!eat(&j, '{')) {
    plugin_string_dup(err, "config: expected a table");
    return false;
  }
  if (!eat(&j, '}')) {
    do {
      plugin_string_t key;
      if (!read_string(&j, &key) || !eat(&j, ':')) {
        plugin_string_dup(err, "config: not valid JSON");
        return false;
      }
      bool ok = true;
      if (str_eq(&key, "headers")) {
        ok = read_headers(&j, err);
        have_headers = true;
      } else if (str_eq(&key, "path_prefix")) {
        plugin_string_free(&settings.path_prefix);
        if (!peek(&j, '"') || !read_string(&j, &settings.path_prefix)) {
          plugin_string_dup(err, "config key `path_prefix`: expected a string");
          ok = false;
        }
      } else {
        buf_t b = {0};
        buf_str(&b, "config key `");
        buf_wit(&b, &key);
        buf_str(&b, "`: unknown field `");
        buf_wit(&b, &key);
        buf_str(&b, "`, expected `headers` or `path_prefix`");
        *err = buf_take(&b);
        ok = false;
      }
      plugin_string_free(&key);
      if (!ok) return false;
    } while (eat(&j, ','));
    if (!eat(&j, '}')) {
      plugin_string_dup(err, "config: not valid JSON");
      return false;
    }
  }
  if (!have_headers) {
    plugin_string_dup(err, "config: missing field `headers`");
    return false;
  }
  if (settings.header_count == 0) {
    plugin_string_dup(err, "config key `headers`: list at least one header name");
    return false;
  }
  for (size_t i = 0; i < settings.header_count; i++) {
    if (!is_header_name(&settings.headers[i])) {
      *err = message("config key `headers`: ", &settings.headers[i], " is not a valid header name");
      return false;
    }
  }
  if (settings.path_prefix.len == 0 || settings.path_prefix.ptr[0] != '/') {
    *err = message("config key `path_prefix`: ", &settings.path_prefix, " does not start with `/`");
    return false;
  }
  buf_t joined = {0};
  for (size_t i = 0; i < settings.header_count; i++) {
    if (i > 0) buf_str(&joined, ",");
    buf_wit(&joined, &settings.headers[i]);
  }
  settings.validated = buf_take(&joined);
  return true;
}

// ---------------------------------------------------------------- hooks

bool exports_tandem_plugin_hooks_init(plugin_string_t *config,
                                      exports_tandem_plugin_hooks_hook_set_t *ret,
                                      plugin_string_t *err) {
  settings_free();
  bool ok = parse_config(config, err);
  plugin_string_free(config);
  if (!ok) return false;
  describe(REJECTIONS, "Requests rejected by require-header, by the missing header.", "header");
  describe(REQUESTS, "Requests seen by require-header, by outcome (passed, rejected, skipped).",
           "outcome");
  *ret = EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_REQUEST |
         EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_RESPONSE |
         EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_LOG;
  return true;
}

// Sets a property; a refused one fails the hook with a message in err.
static bool set_outcome(request_t req, const char *value, plugin_string_t *err) {
  plugin_string_t key = lit(OUTCOME), text = lit(value);
  tandem_plugin_types_edit_error_t e;
  if (tandem_plugin_types_method_request_set_property(req, &key, &text, &e)) return true;
  *err = message("cannot set " OUTCOME ": ", NULL, edit_error(e));
  return false;
}

// The 400 answer for a missing header; everything in it is malloc'ed, as
// the bindings free it after the call.
static void reject(const plugin_string_t *name, exports_tandem_plugin_hooks_action_t *ret) {
  tandem_plugin_types_header_t *headers = malloc(sizeof *headers);
  if (!headers) abort();
  plugin_string_dup(&headers[0].f0, "content-type");
  plugin_string_dup(&headers[0].f1, "application/json");
  // Header names are tokens, which need no escaping in JSON.
  buf_t body = {0};
  buf_str(&body, "{\"error\":\"missing_header\",\"header\":\"");
  buf_wit(&body, name);
  buf_str(&body, "\"}");
  plugin_string_t bytes = buf_take(&body);
  ret->tag = TANDEM_PLUGIN_TYPES_ACTION_RESPOND;
  ret->val.respond.status = 400;
  ret->val.respond.headers = (tandem_plugin_types_list_header_t){headers, 1};
  ret->val.respond.body = (plugin_list_u8_t){bytes.ptr, bytes.len};
}

bool exports_tandem_plugin_hooks_on_request(exports_tandem_plugin_hooks_borrow_request_t req,
                                            exports_tandem_plugin_hooks_action_t *ret,
                                            plugin_string_t *err) {
  ret->tag = TANDEM_PLUGIN_TYPES_ACTION_CONTINUE;
  plugin_string_t path;
  tandem_plugin_types_method_request_path(req, &path);
  bool ok = true;
  if (!starts_with(&path, &settings.path_prefix)) goto done;
  for (size_t i = 0; i < settings.header_count; i++) {
    plugin_string_t *name = &settings.headers[i], value;
    bool present = tandem_plugin_types_method_request_header(req, name, &value);
    if (present) {
      present = value.len > 0;
      plugin_string_free(&value);
    }
    if (present) continue;
    count(REJECTIONS, "header", name);
    plugin_tuple2_string_string_t fields[] = {{lit("header"), *name}, {lit("path"), path}};
    warn("missing required header", fields, 2);
    ok = set_outcome(req, "rejected", err);
    if (ok) reject(name, ret);
    goto done;
  }
  plugin_string_t header = lit("x-validated");
  tandem_plugin_types_edit_error_t e;
  if (!tandem_plugin_types_method_request_set_header(req, &header, &settings.validated, &e)) {
    *err = message("cannot set x-validated: ", NULL, edit_error(e));
    ok = false;
    goto done;
  }
  ok = set_outcome(req, "passed", err);
done:
  plugin_string_free(&path);
  return ok;
}

bool exports_tandem_plugin_hooks_on_response(exports_tandem_plugin_hooks_borrow_request_t req,
                                             exports_tandem_plugin_hooks_borrow_response_t resp,
                                             exports_tandem_plugin_hooks_action_t *ret,
                                             plugin_string_t *err) {
  ret->tag = TANDEM_PLUGIN_TYPES_ACTION_CONTINUE;
  plugin_string_t key = lit(OUTCOME), outcome;
  if (!tandem_plugin_types_method_request_property(req, &key, &outcome)) return true;
  bool passed = str_eq(&outcome, "passed");
  plugin_string_free(&outcome);
  if (!passed) return true;
  plugin_string_t name = lit("x-validator"), value = lit("passed");
  tandem_plugin_types_edit_error_t e;
  if (!tandem_plugin_types_method_response_set_header(resp, &name, &value, &e)) {
    *err = message("cannot set x-validator: ", NULL, edit_error(e));
    return false;
  }
  return true;
}

void exports_tandem_plugin_hooks_on_log(exports_tandem_plugin_hooks_borrow_request_t req,
                                        exports_tandem_plugin_hooks_borrow_response_t resp,
                                        exports_tandem_plugin_hooks_exchange_t *info) {
  (void)resp;
  plugin_string_t key = lit(OUTCOME), outcome;
  if (tandem_plugin_types_method_request_property(req, &key, &outcome)) {
    count(REQUESTS, "outcome", &outcome);
    plugin_string_free(&outcome);
  } else {
    plugin_string_t skipped = lit("skipped");
    count(REQUESTS, "outcome", &skipped);
  }
  exports_tandem_plugin_hooks_exchange_free(info);
}

// Phase on-app-log is not in this plugin's hook set, so the host never calls
// it; the export must still exist. Passes the record on unchanged (its
// ownership moves into the result).
bool exports_tandem_plugin_hooks_on_app_log(exports_tandem_plugin_hooks_app_log_t *entry,
                                            exports_tandem_plugin_hooks_option_app_log_t *ret,
                                            plugin_string_t *err) {
  (void)err;
  ret->is_some = true;
  ret->val = *entry;
  return true;
}
