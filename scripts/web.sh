#!/usr/bin/env bash
# Builds the browser page (web/: the library compiled to wasm32, with
# wasm-bindgen's JavaScript glue in web/dist/) and serves it on localhost.
#
#   ./scripts/web.sh               build, then serve on http://127.0.0.1:8000/
#   ./scripts/web.sh --port 9000   another port
#   ./scripts/web.sh --build-only  build only (the tests serve it themselves)
#
# wasm-bindgen-cli must be the version of the wasm-bindgen crate in
# Cargo.lock; it is installed with `cargo install` when missing or another
# version (a few minutes, once).
set -euo pipefail
cd "$(dirname "$0")/.."

port=8000
build_only=
while [ $# -gt 0 ]; do
    case "$1" in
        --port)
            if [ $# -lt 2 ]; then echo "error: --port needs a number" >&2; exit 2; fi
            port="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        *) echo "usage: $0 [--port N] [--build-only]" >&2; exit 2 ;;
    esac
done

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ -z "$version" ]; then
    echo "error: no wasm-bindgen in Cargo.lock" >&2
    exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"
for tool in cargo rustup python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is missing; ./scripts/setup.sh installs Rust (rustup), and python3 serves the page" >&2
        exit 1
    fi
done
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }')" != "$version" ]; then
    echo "Installing wasm-bindgen-cli $version (once)..." >&2
    # Not --locked: its lockfile can name versions a registry mirror does
    # not serve yet; the CLI's own version is pinned all the same.
    cargo install wasm-bindgen-cli --version "$version"
fi
rustup target add wasm32-unknown-unknown

cargo build --locked --profile web -p gpu-c2f-web --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir web/dist target/wasm32-unknown-unknown/web/gpu_c2f_web.wasm
echo "Built web/dist/ ($(du -h web/dist/gpu_c2f_web_bg.wasm | cut -f1) of WebAssembly)." >&2

if [ -n "$build_only" ]; then
    exit 0
fi
echo "Serving the gpu-c2f page at http://127.0.0.1:$port/ (Ctrl-C stops)." >&2
exec python3 -m http.server --bind 127.0.0.1 --directory web "$port"
