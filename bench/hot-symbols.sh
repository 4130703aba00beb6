#!/usr/bin/env bash
# Writes src/hot.symbols: the functions `print --access` and `print --header` run on a fresh
# token, in the order the linker should put them side by side (see build.rs). Run it after a
# change to the hot path, or to the toolchain, when bench/run.sh says the hot path's page
# faults or peak RSS went over their targets. Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
command -v valgrind >/dev/null || { echo "bench/hot-symbols.sh: please install valgrind" >&2; exit 2; }

# The same build as the real one (same symbol names), with the symbols kept.
ATL_TOKEN_KEEP_SYMBOLS=1 cargo build --release --locked --quiet
bin=$repo/target/release/atl-token

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/.env" <<ENV
ATL_CLIENT_ID=hot
ATL_CLIENT_SECRET=hot
ATL_SCOPE="read:jira-work offline_access"
ENV
chmod 600 "$work/.env"
now=$(date +%s)
cat >"$work/token.json" <<JSON
{"access_token": "eyJhot", "refresh_token": "eyJr", "expires_in": 3600, "expires_at": $((now + 3600)),
 "obtained_at": $now, "token_url": "https://auth.atlassian.com/oauth/token"}
JSON
chmod 600 "$work/token.json"

cd "$work"
for args in "print --access" "print --header" "--env-file .env print" "print"; do
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.$RANDOM" "$bin" $args >/dev/null 2>&1
done
python3 - "$bin" "$work"/cg.* >"$repo/src/hot.symbols" <<'PY'
import re, sys
binary, outputs = sys.argv[1], sys.argv[2:]
names = []
for path in outputs:
    objects, functions, current = {}, {}, None
    lines = open(path).read().splitlines()
    for line in lines:
        if m := re.match(r"c?ob=\((\d+)\) (.*)", line):
            objects[m[1]] = m[2]
        if m := re.match(r"c?fn=\((\d+)\) (.*)", line):
            functions[m[1]] = m[2]
    for line in lines:
        if m := re.match(r"ob=\((\d+)\)", line):
            current = objects.get(m[1])
        elif (m := re.match(r"fn=\((\d+)\)", line)) and current == binary:
            name = functions[m[1]]
            if not name.startswith(("0x", "(")) and name not in names:
                names.append(name)
print("\n".join(names))
PY
cd "$repo"
# And the stripped binary again.
cargo build --release --locked --quiet
echo "wrote src/hot.symbols ($(wc -l <src/hot.symbols) functions)" >&2
