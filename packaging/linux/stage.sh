#!/usr/bin/env bash
# Lays out what every Linux package installs, under ROOT/usr: the app stripped of symbols and
# debug info (the release profile keeps them for backtraces and profiling; a download needs
# neither), confab-signal as a link to it (called by that name, the app is the signaling server:
# one copy of the code), the desktop file that registers the confab:// link handler, and the icon.
#
#   packaging/linux/stage.sh ROOT     (after cargo build --release --workspace --bins)
set -euo pipefail
root=${1:?usage: stage.sh ROOT}
cd "$(dirname "$0")/../.."
install -D -m 0755 target/release/confab "$root/usr/bin/confab"
ln -sf confab "$root/usr/bin/confab-signal"
strip --strip-all "$root/usr/bin/confab"
install -D -m 0644 packaging/linux/confab.desktop "$root/usr/share/applications/confab.desktop"
install -D -m 0644 assets/confab.png "$root/usr/share/icons/hicolor/256x256/apps/confab.png"
