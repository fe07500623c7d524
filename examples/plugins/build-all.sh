#!/usr/bin/env bash
# Builds the require-header example in C, Python and JavaScript (the Rust
# one is built with the other Rust plugins in plugins/). Installs what each
# language needs on first use and skips what is already built, so a second
# run takes seconds. Prints one line per language: LANG PATH.
#
#   examples/plugins/build-all.sh            # all three
#   examples/plugins/build-all.sh c js       # some
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
languages=("$@")
[ ${#languages[@]} -eq 0 ] && languages=(c python js)
for lang in "${languages[@]}"; do
    [ -x "$here/$lang/build.sh" ] || { echo "build-all: no language $lang" >&2; exit 1; }
    started=$(date +%s)
    wasm="$("$here/$lang/build.sh")"
    echo "[$lang] ready in $(( $(date +%s) - started )) s: $wasm" >&2
    echo "$lang $wasm"
done
