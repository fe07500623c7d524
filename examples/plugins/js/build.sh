#!/usr/bin/env bash
# Builds app.js into target/require-header.wasm with componentize-js, which
# embeds SpiderMonkey (StarlingMonkey) in the component. Installs the npm
# packages of package.json into node_modules/ on first use. Prints the path
# of the component.
LANG_NAME=js
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

if ! have node || ! have npm; then
    apt_install nodejs npm
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || die "node $node_major is too old: componentize-js needs node 18 or later"

tool="$HERE/node_modules/.bin/componentize-js"
VERSION="$(node -p "require('$HERE/package.json').dependencies['@bytecodealliance/componentize-js']")"
if [ "$("$tool" --version 2>/dev/null)" != "$VERSION" ]; then
    say "installing componentize-js $VERSION into $HERE/node_modules"
    (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error >&2) ||
        die "npm install failed"
fi

out="$OUT/require-header.wasm"
# shellcheck disable=SC2046
stamp="$(digest "$HERE/app.js" $(wit_files) "$VERSION" "${BASH_SOURCE[0]}")"
if ! up_to_date "$out" "$stamp"; then
    say "componentize-js: app.js -> $out"
    mkdir -p "$OUT"
    # The host does not link wasi:http, so the engine's fetch support is left
    # out (-d http fetch-event).
    "$tool" "$HERE/app.js" --wit "$WIT" --world-name plugin -d http fetch-event -o "$out.tmp" >&2 ||
        die "componentize-js failed"
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
fi
# Which tool built it, for the tests (they build starters with it too).
echo "$tool" >"$OUT/toolchain"
echo "$out"
