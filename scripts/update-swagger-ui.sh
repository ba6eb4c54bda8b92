#!/usr/bin/env bash
# Vendor a release of Swagger UI (Apache-2.0) for the offline API docs at /docs:
# scripts/update-swagger-ui.sh 5.35.0
# Fetches swagger-ui-dist with `npm pack`, checks it against the registry's integrity, copies
# the built bundle, its stylesheet and the licence files, and records the version. The bundle's
# and stylesheet's sourceMappingURL comments are dropped: the maps are not shipped.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:?usage: scripts/update-swagger-ui.sh VERSION (e.g. 5.35.0)}"
target=src/iotcollector/dashboard/static/vendor/swagger-ui
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

integrity="$(npm view "swagger-ui-dist@${version}" dist.integrity)"
tarball="$(cd "$work" && npm pack --silent "swagger-ui-dist@${version}")"
actual="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$actual" != "$integrity" ]; then
    echo "update-swagger-ui: $tarball does not match the registry's integrity ($integrity)" >&2
    exit 1
fi
tar -xzf "$work/$tarball" -C "$work"
rm -rf "$target"
mkdir -p "$target"
p="$work/package"
cp "$p/swagger-ui-bundle.js" "$p/swagger-ui.css" "$p/LICENSE" "$p/NOTICE" \
    "$p/swagger-ui-bundle.js.LICENSE.txt" "$target/"
sed -i 's|^//# sourceMappingURL=.*$||' "$target/swagger-ui-bundle.js"
sed -i 's|/\*# sourceMappingURL=[^*]*\*/||' "$target/swagger-ui.css"
printf '%s\n' "swagger-ui-dist ${version} (npm)" \
    "files: swagger-ui-bundle.js, swagger-ui.css (sourceMappingURL comments removed: no maps)," \
    "LICENSE, NOTICE, swagger-ui-bundle.js.LICENSE.txt (unchanged)" \
    "npm integrity: ${integrity}" "update: see docs/dashboard.md" >"$target/VERSION"
echo "update-swagger-ui: vendored swagger-ui-dist@${version} into $target; run the browser test"
