#!/usr/bin/env bash
# Copy the pinned front-end files out of their npm packages into static/vendor/.
# Run it to change a version (`make vendor`), then commit the result: the app
# never loads anything from a CDN.
set -euo pipefail
cd "$(dirname "$0")"

HTMX=2.0.11       # htmx.org, the 2.x line that django-htmx is built and tested against
UPLOT=1.6.32      # uplot
SWAGGER=5.35.0    # swagger-ui-dist, the API docs page (/api/v1/docs)

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
fetch swagger-ui-dist "$SWAGGER"

mkdir -p htmx uplot swagger-ui
cp "$work/htmx.org/dist/htmx.min.js" htmx/htmx.min.js
cp "$work/htmx.org/LICENSE" htmx/LICENSE
cp "$work/uplot/dist/uPlot.iife.min.js" uplot/uPlot.iife.min.js
cp "$work/uplot/dist/uPlot.min.css" uplot/uPlot.min.css
cp "$work/uplot/LICENSE" uplot/LICENSE
cp "$work/swagger-ui-dist/swagger-ui-bundle.js" swagger-ui/swagger-ui-bundle.js
cp "$work/swagger-ui-dist/swagger-ui.css" swagger-ui/swagger-ui.css
cp "$work/swagger-ui-dist/LICENSE" swagger-ui/LICENSE

cat > VERSIONS <<TXT
htmx.org $HTMX
uplot $UPLOT
swagger-ui-dist $SWAGGER
TXT
sha256sum htmx/htmx.min.js uplot/uPlot.iife.min.js uplot/uPlot.min.css \
  swagger-ui/swagger-ui-bundle.js swagger-ui/swagger-ui.css >> VERSIONS
echo "vendored: $(head -3 VERSIONS | tr '\n' ' ')"
