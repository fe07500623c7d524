// {{name}}: a Tandem plugin in C. Adds `x-hello: {{name}}` to every request,
// logs its path, and counts exchanges by status. Change it to taste.
//
// build.sh generates plugin.h and plugin.c into build/gen from wit/tandem.wit
// (world `plugin`). Every function of the `hooks` interface must be defined,
// even those that init does not name. Ownership, as the bindings define it:
// arguments of an export belong to it (free them); what an export returns is
// freed by the bindings (allocate it with malloc or plugin_string_dup); what
// an import returns belongs to you (free it); arguments to imports are
// borrowed.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define REQUESTS "{{metric}}_requests_total"

static plugin_string_t lit(const char *s) {
  plugin_string_t out;
  plugin_string_set(&out, s);
  return out;
}

// Phase init: once per instance, with [config] as JSON. Parse it here and,
// if it is wrong, set *err (plugin_string_dup) and return false.
bool exports_tandem_plugin_hooks_init(plugin_string_t *config,
                                      exports_tandem_plugin_hooks_hook_set_t *ret,
                                      plugin_string_t *err) {
  plugin_string_free(config);
  plugin_string_t name = lit(REQUESTS), help = lit("Exchanges seen by {{name}}."), label = lit("status");
  plugin_list_string_t labels = {&label, 1};
  plugin_list_f64_t buckets = {NULL, 0};
  if (!tandem_plugin_metrics_describe(&name, TANDEM_PLUGIN_METRICS_KIND_COUNTER, &help, &labels,
                                      &buckets, err)) {
    return false;
  }
  *ret = EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_REQUEST |
         EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_RESPONSE |
         EXPORTS_TANDEM_PLUGIN_HOOKS_HOOK_SET_ON_LOG;
  return true;
}

// Phase on-request: before the upstream; may change the request or answer
// the client (ret->tag = TANDEM_PLUGIN_TYPES_ACTION_RESPOND).
bool exports_tandem_plugin_hooks_on_request(exports_tandem_plugin_hooks_borrow_request_t req,
                                            exports_tandem_plugin_hooks_action_t *ret,
                                            plugin_string_t *err) {
  plugin_string_t path;
  tandem_plugin_types_method_request_path(req, &path);
  plugin_string_t message = lit("hello");
  plugin_tuple2_string_string_t field = {lit("path"), path};
  plugin_list_tuple2_string_string_t fields = {&field, 1};
  tandem_plugin_log_write(TANDEM_PLUGIN_LOG_LEVEL_INFO, &message, &fields);
  plugin_string_free(&path);

  plugin_string_t header = lit("x-hello"), value = lit("{{name}}");
  tandem_plugin_types_edit_error_t edit_error;
  if (!tandem_plugin_types_method_request_set_header(req, &header, &value, &edit_error)) {
    plugin_string_dup(err, "cannot set x-hello");
    return false;
  }
  ret->tag = TANDEM_PLUGIN_TYPES_ACTION_CONTINUE;
  return true;
}

// Phase on-response: with the response head; may change it or replace the
// response.
bool exports_tandem_plugin_hooks_on_response(exports_tandem_plugin_hooks_borrow_request_t req,
                                             exports_tandem_plugin_hooks_borrow_response_t resp,
                                             exports_tandem_plugin_hooks_action_t *ret,
                                             plugin_string_t *err) {
  (void)req;
  (void)resp;
  (void)err;
  ret->tag = TANDEM_PLUGIN_TYPES_ACTION_CONTINUE;
  return true;
}

// Phase on-log: after the response was sent; observe only.
void exports_tandem_plugin_hooks_on_log(exports_tandem_plugin_hooks_borrow_request_t req,
                                        exports_tandem_plugin_hooks_borrow_response_t resp,
                                        exports_tandem_plugin_hooks_exchange_t *info) {
  (void)req;
  (void)resp;
  char status[8];
  snprintf(status, sizeof status, "%u", (unsigned)info->status);
  plugin_string_t name = lit(REQUESTS), error;
  plugin_tuple2_string_string_t label = {lit("status"), lit(status)};
  tandem_plugin_metrics_labels_t labels = {&label, 1};
  if (!tandem_plugin_metrics_counter_add(&name, &labels, 1, &error)) {
    plugin_string_free(&error);  // counting is best effort
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
