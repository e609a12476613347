#!/usr/bin/env bash
# Prints the path of the demo video, vtest.avi (PETS 2009 pedestrians), shipped by Debian's
# opencv-doc package. Uses the installed package if present; otherwise downloads the .deb
# once into the cache and extracts only that file (no install, ~96 MB download).
set -euo pipefail
cache="${CAMFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/camflow}/video"
installed=/usr/share/doc/opencv-doc/examples/data/vtest.avi
target="$cache/vtest.avi"
if [ -f "$installed" ]; then echo "$installed"; exit 0; fi
if [ -f "$target" ]; then echo "$target"; exit 0; fi
mkdir -p "$cache/deb"
cd "$cache/deb"
if ! ls opencv-doc_*.deb >/dev/null 2>&1; then
  apt-get download opencv-doc >&2 || { apt-get update -qq >&2 && apt-get download opencv-doc >&2; }
fi
dpkg-deb --fsys-tarfile opencv-doc_*.deb \
  | tar -x -O ./usr/share/doc/opencv-doc/examples/data/vtest.avi > "$target.part"
mv "$target.part" "$target"
rm -f opencv-doc_*.deb
echo "$target"
