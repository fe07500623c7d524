#!/usr/bin/env bash
# Builds app.js into plugins.d/{{name}}.wasm with componentize-js (which
# embeds SpiderMonkey). Runs `npm install` on first use, or uses
# $COMPONENTIZE_JS if set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v node >/dev/null || { echo "build: node not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }
tool="${COMPONENTIZE_JS:-node_modules/.bin/componentize-js}"
if [ -z "${COMPONENTIZE_JS:-}" ] && [ ! -x "$tool" ]; then
    command -v npm >/dev/null || { echo "build: npm not found (Debian: apt-get install npm)" >&2; exit 1; }
    npm install --no-audit --no-fund --loglevel=error >&2
fi
mkdir -p plugins.d
# Tandem does not link wasi:http, so the engine's fetch support is left out.
"$tool" app.js --wit wit --world-name plugin -d http fetch-event -o "plugins.d/{{name}}.wasm" >&2
echo "plugins.d/{{name}}.wasm"
