#!/usr/bin/env python3
"""Cuts the Material Symbols font down to the icons the window draws (theme.rs, `icon::ALL`).

The full filled font is 1.8 MB; the app draws a few dozen icons. Run this after adding an icon to
`icon::ALL` (the `bundled_icon_font_has_every_icon` test fails until you do); it needs fontTools
(`pip install fonttools`) and the egui_material_icons crate in ~/.cargo/registry (any `cargo fetch`).

    scripts/subset-icons.py
"""
import glob
import os
import re
import sys

from fontTools import subset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THEME = os.path.join(ROOT, "app/src/ui/theme.rs")
OUT = os.path.join(ROOT, "assets/icons/material-symbols-filled-subset.ttf")


def main():
    crates = sorted(glob.glob(os.path.expanduser(
        "~/.cargo/registry/src/*/egui_material_icons-0.9.*")))
    if not crates:
        sys.exit("egui_material_icons 0.9 is not in ~/.cargo/registry: run `cargo fetch` first")
    crate = crates[-1]
    table = dict(re.findall(r'pub const (ICON_\w+): crate::MaterialIcon = '
                            r'crate::MaterialIcon::new\("\\u\{([0-9a-f]+)\}"\)',
                            open(os.path.join(crate, "src/icons.rs")).read()))
    theme = open(THEME).read()
    block = re.search(r"pub const ALL: &\[(?:super::)?MaterialIcon\] = &\[(.*?)\];", theme, re.S)
    if not block:
        sys.exit(f"no `pub const ALL: &[MaterialIcon]` in {THEME}")
    names = re.findall(r"ICON_\w+", block.group(1))
    missing = [n for n in names if n not in table]
    if missing:
        sys.exit(f"not in {crate}: {', '.join(missing)}")
    unicodes = sorted({int(table[n], 16) for n in names})
    options = subset.Options()
    options.layout_features = []  # icons are reached by code point, not by ligature
    options.name_IDs = ["*"]  # keep the copyright and licence records
    options.notdef_outline = True
    font = subset.load_font(os.path.join(crate, "MaterialSymbolsRounded_Filled-Regular.ttf"), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    subset.save_font(font, OUT, options)
    print(f"{OUT}: {len(names)} icons, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
