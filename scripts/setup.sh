#!/usr/bin/env bash
# Installs what gpu-c2f needs on a fresh Debian/Ubuntu machine:
#   - the Vulkan loader (libvulkan1);
#   - Mesa's software Vulkan driver, lavapipe (mesa-vulkan-drivers), when no
#     Vulkan driver is installed at all, so there is always an adapter;
#   - Rust through rustup when cargo is missing (the crate needs Rust >= 1.87).
# Safe to run again: it installs only what is missing.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

packages=()
dpkg -s libvulkan1 >/dev/null 2>&1 || packages+=(libvulkan1)
have_driver=false
for icd in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    if [ -e "$icd" ]; then have_driver=true; fi
done
if [ "$have_driver" = false ]; then
    echo "setup: no Vulkan driver found; installing Mesa's lavapipe (software Vulkan)"
    packages+=(mesa-vulkan-drivers)
fi
if ! command -v cargo >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo" ]; then
    command -v curl >/dev/null 2>&1 || packages+=(curl ca-certificates)
    packages+=(build-essential)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup: installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
