#!/usr/bin/env bash
# Builds app.py into target/require-header.wasm with componentize-py, which
# embeds CPython in the component. Installs componentize-py into a venv
# under the repository's target/ on first use (set COMPONENTIZE_PY to use
# another one). Prints the path of the component.
LANG_NAME=python
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

VERSION=0.25.1
VENV="$ROOT/target/polyglot/python-venv"

if [ -n "${COMPONENTIZE_PY:-}" ]; then
    tool="$COMPONENTIZE_PY"
else
    tool="$VENV/bin/componentize-py"
    if [ "$("$tool" --version 2>/dev/null)" != "componentize-py $VERSION" ]; then
        have python3 || apt_install python3 python3-venv
        if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
            apt_install python3-venv
            python3 -m venv --clear "$VENV" || die "cannot create a venv in $VENV"
        fi
        say "installing componentize-py $VERSION into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "componentize-py==$VERSION" >&2 ||
            die "pip install componentize-py==$VERSION failed"
    fi
fi
"$tool" --version >/dev/null 2>&1 || die "componentize-py does not run: $tool"

out="$OUT/require-header.wasm"
# shellcheck disable=SC2046
stamp="$(digest "$HERE/app.py" $(wit_files) "$VERSION" "${BASH_SOURCE[0]}")"
if ! up_to_date "$out" "$stamp"; then
    say "componentize-py: app.py -> $out"
    mkdir -p "$OUT"
    # -p: where app.py is; the WIT comes straight from the repository.
    "$tool" -d "$WIT" -w plugin componentize -p "$HERE" app -o "$out.tmp" >&2 ||
        die "componentize-py failed"
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
fi
# Which tool built it, for the tests (they build starters with it too).
echo "$tool" >"$OUT/toolchain"
echo "$out"
