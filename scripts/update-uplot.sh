#!/usr/bin/env bash
# Vendor a release of uPlot (MIT) into the dashboard: scripts/update-uplot.sh 1.6.32
# Fetches the package tarball with `npm pack`, checks it against the registry's integrity,
# copies the unchanged built files and the licence, and records the version. No build step.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:?usage: scripts/update-uplot.sh VERSION (e.g. 1.6.32)}"
target=src/iotcollector/dashboard/static/vendor/uplot
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

integrity="$(npm view "uplot@${version}" dist.integrity)"
tarball="$(cd "$work" && npm pack --silent "uplot@${version}")"
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
    echo "update-uplot: $tarball does not match the registry's integrity ($integrity)" >&2
    exit 1
fi
tar -xzf "$work/$tarball" -C "$work"
mkdir -p "$target"
cp "$work/package/dist/uPlot.esm.js" "$work/package/dist/uPlot.min.css" "$work/package/LICENSE" "$target/"
printf 'uplot %s\nfiles: dist/uPlot.esm.js, dist/uPlot.min.css, LICENSE (unchanged)\nnpm integrity: %s\nupdate: see docs/dashboard.md\n' \
    "$version" "$integrity" >"$target/VERSION"
echo "update-uplot: vendored uplot@${version} into $target; update docs/dashboard.md and run the browser test"
