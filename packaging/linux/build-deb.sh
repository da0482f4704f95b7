#!/usr/bin/env bash
# Builds target/packages/confab_<version>_<arch>.deb from the release binaries
# (cargo build --release --workspace --bins first): confab and confab-signal, the desktop file
# and the icon (stage.sh). Runtime libraries come from Debian (ALSA, GL/EGL, X11/Wayland client
# libraries). Installing it registers confab:// links (update-desktop-database).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
packaging/linux/stage.sh "$root"
mkdir -p "$root/DEBIAN"
size=$(du -sk "$root/usr" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: confab
Version: $version
Architecture: $arch
Maintainer: Confab <confab@example.org>
Installed-Size: $size
Depends: libc6, libasound2, libgl1, libegl1, libxkbcommon-x11-0, libx11-xcb1
Recommends: libasound2-plugins, pulseaudio | pipewire-pulse, desktop-file-utils,
 libavcodec61 | libavcodec60 | libavcodec59 | libavcodec58
Section: net
Priority: optional
Homepage: https://github.com/confab-app/confab
Description: video calls straight from one computer to another
 Two people type the same room code and see and hear each other over WebRTC
 (H.264, Opus, echo cancellation, noise suppression), with chat, file transfer
 and screen sharing. Includes confab-signal, the signaling server.
CONTROL
# The link handler: the desktop database maps x-scheme-handler/confab to confab.desktop.
for script in postinst postrm; do
  cat > "$root/DEBIAN/$script" <<'SCRIPT'
#!/bin/sh
set -e
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q /usr/share/applications || true
fi
SCRIPT
  chmod 0755 "$root/DEBIAN/$script"
done
mkdir -p target/packages
out="target/packages/confab_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$root" "$out" >&2
echo "$out"
