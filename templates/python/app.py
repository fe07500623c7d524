"""{{name}}: a Tandem plugin in Python. Adds `x-hello: {{name}}` to every
request, logs its path, and counts exchanges by status. Change it to taste.

componentize-py builds this module against wit/tandem.wit (world `plugin`);
`wit_world` is the package it generates from that WIT. Every function of the
`hooks` interface must be present, even those that `init` does not name.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.hooks import HookSet
from wit_world.imports import log, metrics, types

REQUESTS = "{{metric}}_requests_total"


class Hooks(exports.Hooks):
    def init(self, config: str) -> HookSet:
        """Phase init: once per instance, with [config] as JSON. Parse it
        here (json.loads) and raise Err("config key `x`: ...") if it is wrong."""
        try:
            metrics.describe(REQUESTS, metrics.Kind.COUNTER, "Exchanges seen by {{name}}.", ["status"], [])
        except Err as error:
            raise Err(f"cannot describe {REQUESTS}: {error.value}")
        return HookSet.ON_REQUEST | HookSet.ON_RESPONSE | HookSet.ON_LOG

    def on_request(self, req: types.Request) -> types.Action:
        """Phase on-request: before the upstream; may change the request or
        answer the client (types.Action_Respond(types.Reply(...)))."""
        log.write(log.Level.INFO, "hello", [("path", req.path())])
        try:
            req.set_header("x-hello", "{{name}}")
        except Err as error:
            raise Err(f"cannot set x-hello: {error.value}")
        return types.Action_Continue()

    def on_response(self, req: types.Request, resp: types.Response) -> types.Action:
        """Phase on-response: with the response head; may change it or
        replace the response."""
        return types.Action_Continue()

    def on_log(self, req: types.Request, resp: types.Response, info: types.Exchange) -> None:
        """Phase on-log: after the response was sent; observe only."""
        try:
            metrics.counter_add(REQUESTS, [("status", str(info.status))], 1)
        except Err:
            pass

    def on_app_log(self, entry):
        """Phase on-app-log is not in this plugin's hook set, so the host
        never calls it; the export must still exist. Passes the record on."""
        return entry
