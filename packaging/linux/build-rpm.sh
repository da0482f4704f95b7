#!/usr/bin/env bash
# Builds target/packages/confab-<version>-1.<arch>.rpm from the release binaries (cargo build
# --release --workspace --bins first) with rpmbuild (Debian's rpm package; scripts/setup.sh
# --test installs it): the same files as the .deb (stage.sh). Library dependencies are found by
# rpm from the binaries (sonames), so they hold on Fedora and openSUSE alike.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
packaging/linux/stage.sh "$top/staged"
rpmbuild -bb --quiet \
  --define "_topdir $top" \
  --define "_rpmdir $top/out" \
  --define "staged $top/staged" \
  --define "version $version" \
  packaging/linux/confab.spec >&2
rpm=$(find "$top/out" -name '*.rpm' | head -n1)
mkdir -p target/packages
out="target/packages/$(basename "$rpm")"
mv "$rpm" "$out"
echo "$out"
