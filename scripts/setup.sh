#!/usr/bin/env bash
# Installs what Homeport needs to build and test on Debian 12: the C
# libraries it wraps (libmicrohttpd, OpenSSL's libcrypto, hiredis),
# pkg-config, etcd (/usr/bin/etcd, 3.4) and Redis (/usr/bin/redis-server,
# 7.0), which the etcd and Redis store tests start on loopback.
# Safe to run again: it installs only what is missing.
set -euo pipefail

packages=(pkg-config libmicrohttpd-dev libssl-dev libhiredis-dev etcd-server redis-server)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: the Swift toolchain (6.0 or newer) is not on PATH; install it from swift.org and run again" >&2
    exit 1
fi
