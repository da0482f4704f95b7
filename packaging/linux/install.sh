#!/bin/sh
# Installs this unpacked Confab under $PREFIX (default ~/.local): the binaries, the menu entry
# (pointing at the installed binary) and the icon, and makes Confab the handler of confab://
# links for this user.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-$HOME/.local}
data=${XDG_DATA_HOME:-$HOME/.local/share}
install -D -m 0755 "$here/bin/confab" "$prefix/bin/confab"
ln -sf confab "$prefix/bin/confab-signal"
install -D -m 0644 "$here/share/icons/hicolor/256x256/apps/confab.png" \
  "$data/icons/hicolor/256x256/apps/confab.png"
mkdir -p "$data/applications"
sed "s|^Exec=confab |Exec=$prefix/bin/confab |" "$here/share/applications/confab.desktop" \
  > "$data/applications/confab.desktop"
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$data/applications" || true
fi
if command -v xdg-mime >/dev/null 2>&1; then
  xdg-mime default confab.desktop x-scheme-handler/confab
fi
echo "installed Confab in $prefix (run: $prefix/bin/confab)"
