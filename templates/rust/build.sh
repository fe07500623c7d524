#!/usr/bin/env bash
# Builds the plugin into plugins.d/{{name}}.wasm. Needs Rust with the
# wasm32-wasip2 target (added here if rustup is present).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v cargo >/dev/null || { echo "build: cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2 >&2
fi
cargo build --release >&2
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p plugins.d
cp "$target_dir/wasm32-wasip2/release/{{crate}}.wasm" "plugins.d/{{name}}.wasm"
echo "plugins.d/{{name}}.wasm"
