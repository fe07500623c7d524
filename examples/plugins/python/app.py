"""require-header for Tandem, in Python.

Rejects requests that lack a required header with a 400 and a JSON error
body, and counts them; marks the others. It behaves exactly like the Rust
version in plugins/require-header and the C and JavaScript versions beside
this folder: the integration tests hold all four to the same assertions.

componentize-py turns this module into a component of the `plugin` world in
wit/tandem.wit; `wit_world` is the package it generates from that WIT.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.hooks import HookSet
from wit_world.imports import log, metrics, types

# Rejections by missing header.
REJECTIONS = "validator_rejections_total"
# Requests seen in on-log, by outcome.
REQUESTS = "validator_requests_total"
# Carries the outcome from on-request to the later phases.
OUTCOME = "validator.outcome"
# Characters allowed in a header name (an RFC 9110 token), besides letters
# and digits.
TOKEN_PUNCTUATION = "!#$%&'*+-.^_`|~"

# The plugin's settings, set by init. An instance handles one call at a time
# and the host reuses instances, so module globals live as long as the
# instance.
SETTINGS = {}


def is_header_name(name):
    return name != "" and all(
        (c.isascii() and c.isalnum()) or c in TOKEN_PUNCTUATION for c in name
    )


def ascii_lower(text):
    return "".join(c.lower() if c.isascii() else c for c in text)


def parse_config(text):
    """The settings from the [config] table, or Err naming the key at fault."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise Err(f"config: {error}")
    if not isinstance(config, dict):
        raise Err("config: expected a table")
    for key in config:
        if key not in ("headers", "path_prefix"):
            raise Err(
                f"config key `{key}`: unknown field `{key}`, "
                "expected `headers` or `path_prefix`"
            )
    if "headers" not in config:
        raise Err("config: missing field `headers`")
    headers = config["headers"]
    if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        raise Err("config key `headers`: expected a list of strings")
    if not headers:
        raise Err("config key `headers`: list at least one header name")
    headers = [ascii_lower(h) for h in headers]
    for name in headers:
        if not is_header_name(name):
            raise Err(f"config key `headers`: `{name}` is not a valid header name")
    prefix = config.get("path_prefix", "/")
    if not isinstance(prefix, str):
        raise Err("config key `path_prefix`: expected a string")
    if not prefix.startswith("/"):
        raise Err(f"config key `path_prefix`: `{prefix}` does not start with `/`")
    return {"headers": headers, "path_prefix": prefix, "validated": ",".join(headers)}


def warn(message, fields):
    log.write(log.Level.WARN, message, fields)


def edit(what, change, *args):
    """Makes a change to the request or response; a refused one fails the hook."""
    try:
        change(*args)
    except Err as error:
        raise Err(f"cannot set {what}: {error.value}")


def count(metric, label):
    """Counting is best effort: a refused metric must not change a decision."""
    try:
        metrics.counter_add(metric, [label], 1)
    except Err as error:
        warn("cannot count", [("metric", metric), ("error", str(error.value))])


class Hooks(exports.Hooks):
    def init(self, config: str) -> HookSet:
        SETTINGS.clear()
        SETTINGS.update(parse_config(config))
        for name, help_text, label in (
            (
                REJECTIONS,
                "Requests rejected by require-header, by the missing header.",
                "header",
            ),
            (
                REQUESTS,
                "Requests seen by require-header, by outcome (passed, rejected, skipped).",
                "outcome",
            ),
        ):
            try:
                metrics.describe(name, metrics.Kind.COUNTER, help_text, [label], [])
            except Err as error:
                warn("cannot describe metric", [("metric", name), ("error", str(error.value))])
        return HookSet.ON_REQUEST | HookSet.ON_RESPONSE | HookSet.ON_LOG

    def on_request(self, req: types.Request) -> types.Action:
        path = req.path()
        if not path.startswith(SETTINGS["path_prefix"]):
            return types.Action_Continue()
        for name in SETTINGS["headers"]:
            if not req.header(name):
                count(REJECTIONS, ("header", name))
                warn("missing required header", [("header", name), ("path", path)])
                edit(OUTCOME, req.set_property, OUTCOME, "rejected")
                # Header names are tokens, which need no escaping in JSON.
                body = f'{{"error":"missing_header","header":"{name}"}}'
                return types.Action_Respond(
                    types.Reply(
                        status=400,
                        headers=[("content-type", "application/json")],
                        body=body.encode(),
                    )
                )
        edit("x-validated", req.set_header, "x-validated", SETTINGS["validated"])
        edit(OUTCOME, req.set_property, OUTCOME, "passed")
        return types.Action_Continue()

    def on_response(self, req: types.Request, resp: types.Response) -> types.Action:
        if req.property(OUTCOME) == "passed":
            edit("x-validator", resp.set_header, "x-validator", "passed")
        return types.Action_Continue()

    def on_log(self, req: types.Request, resp: types.Response, info: types.Exchange) -> None:
        count(REQUESTS, ("outcome", req.property(OUTCOME) or "skipped"))

    def on_app_log(self, entry):
        """Phase on-app-log is not in this plugin's hook set, so the host
        never calls it; the export must still exist. Passes the record on."""
        return entry
