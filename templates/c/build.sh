#!/usr/bin/env bash
# Builds plugin.c into plugins.d/{{name}}.wasm:
#   1. C bindings from wit/ into build/gen,
#   2. clang to a wasm32-wasi core module (reactor: no main),
#   3. the core module wrapped into a component (with the WASI preview1
#      adapter, since snprintf pulls in wasi-libc's I/O).
# Steps 1 and 3 use tandem-witc ($TANDEM_WITC, or on PATH) if present, else
# wit-bindgen and wasm-tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
die() { echo "build: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

have clang && have wasm-ld ||
    die "clang and wasm-ld not found (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)"
witc="${TANDEM_WITC:-$(command -v tandem-witc || true)}"
mkdir -p build plugins.d
rm -rf build/gen
if [ -n "$witc" ]; then
    "$witc" bindings --wit wit --world plugin --out-dir build/gen
elif have wit-bindgen && have wasm-tools; then
    wit-bindgen c wit --world plugin --autodrop-borrows yes --out-dir build/gen >&2
else
    die "need tandem-witc (from a Tandem checkout: cargo install --locked --path tools/witc) or both wit-bindgen and wasm-tools (cargo install --locked wit-bindgen-cli wasm-tools)"
fi
cc=(clang --target=wasm32-wasi -O2)
"${cc[@]}" -c -Wall -Wextra -Ibuild/gen -o build/plugin_main.o plugin.c
"${cc[@]}" -c -o build/bindings.o build/gen/plugin.c
"${cc[@]}" -mexec-model=reactor -s -o build/core.wasm \
    build/plugin_main.o build/bindings.o build/gen/plugin_component_type.o
if [ -n "$witc" ]; then
    # Adds the WASI preview1 adapter by itself when the module needs it.
    "$witc" component build/core.wasm -o "plugins.d/{{name}}.wasm"
else
    adapter="${WASI_PREVIEW1_ADAPTER:?set WASI_PREVIEW1_ADAPTER to wasi_snapshot_preview1.reactor.wasm (crate wasi-preview1-component-adapter-provider)}"
    wasm-tools component new build/core.wasm --adapt "wasi_snapshot_preview1=$adapter" -o "plugins.d/{{name}}.wasm"
fi
echo "plugins.d/{{name}}.wasm"
