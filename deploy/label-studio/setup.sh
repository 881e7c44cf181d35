#!/usr/bin/env bash
# Install Label Studio into its own virtualenv (it is a separate server with its own pinned
# dependencies; it must not share driftmon's). Used by the relabel-sink integration test and by
# anyone who wants a local Label Studio to try driftmon's Label Studio sink.
#
#   bash deploy/label-studio/setup.sh            # -> .venv-labelstudio/bin/label-studio
#   LS_VENV=/opt/ls bash deploy/label-studio/setup.sh
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
touch "$stamp"
echo "label-studio $LS_VERSION installed in $LS_VENV" >&2
