#!/usr/bin/env bash
# Builds target/packages/Confab-<version>.dmg on macOS (GitHub Actions, release.yml) from the
# release binaries: Confab.app (Info.plist registers confab:// links, icon made from
# assets/confab.png) and a link to /Applications to drag it onto.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
app="$work/dmg/Confab.app/Contents"
mkdir -p "$app/MacOS" "$app/Resources"
install -m 0755 target/release/confab target/release/confab-signal "$app/MacOS/"
strip -x "$app/MacOS/confab" "$app/MacOS/confab-signal"
sed "s/VERSION/$version/g" packaging/macos/Info.plist > "$app/Info.plist"
iconset="$work/confab.iconset"
mkdir -p "$iconset"
for size in 16 32 128 256; do
  sips -z "$size" "$size" assets/confab.png --out "$iconset/icon_${size}x${size}.png" >/dev/null
done
iconutil -c icns "$iconset" -o "$app/Resources/confab.icns"
ln -s /Applications "$work/dmg/Applications"
mkdir -p target/packages
out="target/packages/Confab-$version.dmg"
hdiutil create -volname Confab -srcfolder "$work/dmg" -ov -format UDZO "$out" >&2
echo "$out"
