#!/usr/bin/env bash
# Builds target/packages/confab_<version>_<arch>.deb from the release binaries
# (cargo build --release --workspace --bins first): confab and confab-signal, the desktop file
# and the icon. Runtime libraries come from Debian (ALSA, GL/EGL, X11/Wayland client libraries).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 target/release/confab "$root/usr/bin/confab"
install -D -m 0755 target/release/confab-signal "$root/usr/bin/confab-signal"
# Debug info stays out of the package (the binaries are built with line tables).
strip --strip-debug "$root/usr/bin/confab" "$root/usr/bin/confab-signal"
install -D -m 0644 packaging/linux/confab.desktop "$root/usr/share/applications/confab.desktop"
install -D -m 0644 assets/confab.png "$root/usr/share/icons/hicolor/256x256/apps/confab.png"
mkdir -p "$root/DEBIAN"
size=$(du -sk "$root/usr" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: confab
Version: $version
Architecture: $arch
Maintainer: Confab <confab@example.org>
Installed-Size: $size
Depends: libc6, libasound2, libgl1, libegl1, libxkbcommon-x11-0, libx11-xcb1
Recommends: libasound2-plugins, pulseaudio | pipewire-pulse
Section: net
Priority: optional
Homepage: https://github.com/confab-app/confab
Description: video calls straight from one computer to another
 Two people type the same room code and see and hear each other over WebRTC
 (H.264, Opus, echo cancellation, noise suppression), with chat, file transfer
 and screen sharing. Includes confab-signal, the signaling server.
CONTROL
mkdir -p target/packages
out="target/packages/confab_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >&2
echo "$out"
