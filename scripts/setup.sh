#!/usr/bin/env bash
# Installs what building and testing oklog needs, from Debian's packages only.
# Idempotent and quiet: when everything is present it prints nothing and touches nothing.
set -euo pipefail
pkgs=(cmake g++ make pkg-config libuv1-dev libmsgpack-cxx-dev liblz4-dev lz4 libspdlog-dev
      libgtest-dev libre2-dev libhttp-parser-dev libssl-dev curl ripgrep
      python3 python3-matplotlib nftables iproute2
      clang libclang-rt-14-dev llvm)
# clang + libclang-rt-14-dev (libFuzzer, ASan and UBSan runtimes for clang: only a Recommends of
# clang, so named here) + llvm (llvm-symbolizer for readable stacks): scripts/fuzz.sh.
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
