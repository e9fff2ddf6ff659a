#!/usr/bin/env bash
# Serves the static site in www/ on http://127.0.0.1:8080 (PORT=... to change it).
# Build it first with scripts/build-web.sh. Needs Node 18 or newer, nothing from npm.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e www/pkg/duoclip.js ]; then
  echo "duoclip: www/pkg/ is missing; run scripts/build-web.sh first" >&2
  exit 1
fi
exec node scripts/serve.mjs www
