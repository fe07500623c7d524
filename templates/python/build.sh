#!/usr/bin/env bash
# Builds app.py into plugins.d/{{name}}.wasm with componentize-py (which
# embeds CPython). Installs componentize-py into .venv/ on first use, or
# uses $COMPONENTIZE_PY if set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
version=0.25.1
tool="${COMPONENTIZE_PY:-.venv/bin/componentize-py}"
if [ -z "${COMPONENTIZE_PY:-}" ] && [ "$("$tool" --version 2>/dev/null)" != "componentize-py $version" ]; then
    command -v python3 >/dev/null || { echo "build: python3 not found (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
    python3 -m venv .venv || { echo "build: cannot create .venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
    .venv/bin/pip install -q "componentize-py==$version" >&2
fi
mkdir -p plugins.d
"$tool" -d wit -w plugin componentize app -o "plugins.d/{{name}}.wasm" >&2
echo "plugins.d/{{name}}.wasm"
