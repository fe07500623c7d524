#!/usr/bin/env bash
# Builds require_header.c into target/require-header.wasm:
#   1. C bindings from wit/ (plugin.h, plugin.c, plugin_component_type.o),
#   2. clang to a wasm32-wasi core module (reactor: no main),
#   3. the core module wrapped into a component.
# Steps 1 and 3 use tools/witc (the wit-bindgen-c and wit-component
# libraries in one small binary, built once per machine and cached); set
# TANDEM_WITC to use another build of it. Installs clang, lld and wasi-libc
# from Debian if they are missing. Prints the path of the component.
LANG_NAME=c
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PACKAGES=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
if have dpkg-query; then
    apt_install "${PACKAGES[@]}"
elif ! have clang || ! have wasm-ld; then
    die "clang and wasm-ld not found: install clang, lld and wasi-libc (Debian: ${PACKAGES[*]})"
fi

# The path of tandem-witc, built from tools/witc unless this exact source
# was built before on this machine.
ensure_witc() {
    if [ -n "${TANDEM_WITC:-}" ]; then
        echo "$TANDEM_WITC"
        return
    fi
    have cargo || die "cargo not found: install Rust (https://rustup.rs) to build tools/witc"
    local src="$ROOT/tools/witc"
    local key
    key="$(digest "$src/Cargo.toml" "$src/Cargo.lock" "$src/src/main.rs" "$(cargo --version)")"
    local bin="$TOOL_CACHE/witc-$key/bin/tandem-witc"
    if [ ! -x "$bin" ]; then
        say "building tools/witc into $TOOL_CACHE (once per machine)"
        # Settings of an outer cargo (e.g. cargo test) are not for this build.
        env -u CARGO_TARGET_DIR -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_TARGET \
            cargo install --quiet --locked --path "$src" --root "$TOOL_CACHE/witc-$key" \
            --target-dir "$TOOL_CACHE/witc-target" >&2 || die "building tools/witc failed"
        # Older builds of the tool are of no further use.
        find "$TOOL_CACHE" -maxdepth 1 -name 'witc-*' ! -name "witc-$key" ! -name witc-target \
            -exec rm -rf {} + 2>/dev/null || true
    fi
    echo "$bin"
}

witc="$(ensure_witc)"
"$witc" --version >/dev/null 2>&1 || die "tandem-witc does not run: $witc"

out="$OUT/require-header.wasm"
# shellcheck disable=SC2046
stamp="$(digest "$HERE/require_header.c" $(wit_files) "$("$witc" --version)" "$(clang --version | head -1)" "${BASH_SOURCE[0]}")"
if ! up_to_date "$out" "$stamp"; then
    say "clang: require_header.c -> $out"
    gen="$OUT/gen"
    rm -rf "$gen"
    "$witc" bindings --wit "$WIT" --world plugin --out-dir "$gen" || die "generating the C bindings failed"
    # wasi-libc from Debian 12 knows the target as wasm32-wasi (not -wasip1).
    cc=(clang --target=wasm32-wasi -O2)
    "${cc[@]}" -c -Wall -Wextra -Werror -I"$gen" -o "$OUT/require_header.o" "$HERE/require_header.c" ||
        die "clang failed on require_header.c"
    "${cc[@]}" -c -o "$OUT/plugin.o" "$gen/plugin.c" || die "clang failed on the generated plugin.c"
    "${cc[@]}" -mexec-model=reactor -s -o "$OUT/core.wasm" \
        "$OUT/require_header.o" "$OUT/plugin.o" "$gen/plugin_component_type.o" || die "linking failed"
    "$witc" component "$OUT/core.wasm" -o "$out.tmp" || die "making the component failed"
    mv "$out.tmp" "$out"
    echo "$stamp" >"$out.stamp"
fi
# Which tool built it, for the tests (they build starters with it too).
echo "$witc" >"$OUT/toolchain"
echo "$out"
