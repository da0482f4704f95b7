#!/usr/bin/env bash
# Builds target/packages/confab-<version>-linux-<arch>.tar.gz, the portable package: unpack
# anywhere and run bin/confab, or run ./install.sh to put it under ~/.local (or $PREFIX) with
# its menu entry and the confab:// link handler. Same files as the .deb (stage.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(uname -m)
name="confab-${version}-linux-${arch}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
packaging/linux/stage.sh "$work/staged"
mkdir -p "$work/$name"
cp -a "$work/staged/usr/." "$work/$name/"
install -m 0755 packaging/linux/install.sh "$work/$name/install.sh"
mkdir -p target/packages
out="target/packages/$name.tar.gz"
tar -C "$work" --owner=0 --group=0 -czf "$out" "$name"
echo "$out"
