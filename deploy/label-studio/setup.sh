#!/usr/bin/env bash
# Install Label Studio into its own virtualenv (it is a separate server with its own pinned
# dependencies; it must not share driftmon's). Used by the relabel-sink integration test and by
# anyone who wants a local Label Studio to try driftmon's Label Studio sink.
#
#   bash deploy/label-studio/setup.sh            # -> .venv-labelstudio/bin/label-studio
#   LS_VENV=/opt/ls bash deploy/label-studio/setup.sh
#
# It also leaves $LS_VENV/template-data: an empty Label Studio data directory with every database
# migration applied. A first start on a fresh SQLite database spends a minute or more migrating;
# tests copy the template instead and are up in seconds.
#
# Idempotent: does nothing when the pinned version is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
LS_VERSION="${LS_VERSION:-1.23.2}"
LS_VENV="${LS_VENV:-.venv-labelstudio}"
PYTHON="${PYTHON:-python3}"
stamp="$LS_VENV/.installed-$LS_VERSION"
if [ -f "$stamp" ] && [ -x "$LS_VENV/bin/label-studio" ]; then
  exit 0
fi
"$PYTHON" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install --quiet --upgrade pip
"$LS_VENV/bin/python" -m pip install --quiet "label-studio==$LS_VERSION"
rm -rf "$LS_VENV/template-data"
# `label-studio version` applies the migrations to the data dir's database, then prints and exits
"$LS_VENV/bin/label-studio" version --data-dir "$LS_VENV/template-data" >/dev/null
touch "$stamp"
echo "label-studio $LS_VERSION installed in $LS_VENV" >&2
