#!/usr/bin/env bash
# Copy the pinned front-end files out of their npm packages into static/vendor/.
# Run it to change a version (`make vendor`), then commit the result: the app
# never loads anything from a CDN.
set -euo pipefail
cd "$(dirname "$0")"

HTMX=2.0.11       # htmx.org, the 2.x line that django-htmx is built and tested against
UPLOT=1.6.32      # uplot

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch <package> <version> -> unpacked into $work/<package>
  local pkg=$1 version=$2
  (cd "$work" && npm pack --silent "$pkg@$version" >/dev/null)
  mkdir -p "$work/$pkg"
  tar -xzf "$work"/"${pkg//\//-}"-"$version".tgz -C "$work/$pkg" --strip-components=1
}

fetch htmx.org "$HTMX"
fetch uplot "$UPLOT"

mkdir -p htmx uplot
cp "$work/htmx.org/dist/htmx.min.js" htmx/htmx.min.js
cp "$work/htmx.org/LICENSE" htmx/LICENSE
cp "$work/uplot/dist/uPlot.iife.min.js" uplot/uPlot.iife.min.js
cp "$work/uplot/dist/uPlot.min.css" uplot/uPlot.min.css
cp "$work/uplot/LICENSE" uplot/LICENSE

cat > VERSIONS <<TXT
htmx.org $HTMX
uplot $UPLOT
TXT
sha256sum htmx/htmx.min.js uplot/uPlot.iife.min.js uplot/uPlot.min.css >> VERSIONS
echo "vendored: $(head -2 VERSIONS | tr '\n' ' ')"
