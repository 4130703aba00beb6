#!/usr/bin/env bash
# Measures atl-token against the ways people get a token into a script today.
# Usage: bench/run.sh [--save]   (--save writes the table to bench/RESULTS.md)
# Needs hyperfine, jq, curl, GNU time and perf; installs them with apt-get when run as root.
# Exits 1 when the hot path (`print --access` on a fresh token) misses one of its targets:
# at most 1.2x `cat`, at most 100 page faults, at most 3 MiB peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/time ] || missing+=(time)
command -v perf >/dev/null || missing+=(linux-perf)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bench/run.sh: please install: ${missing[*]}" >&2
    exit 2
  fi
fi

cargo build --release --locked --quiet
bin=$repo/target/release/atl-token

work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python3 bench/auth_server.py --port-file "$work/port" &
server_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
api_url="http://127.0.0.1:$(cat "$work/port")"
token_url="$api_url/oauth/token"

# One folder for atl-token, one for the curl + jq baseline, each with its own token chain.
mkdir -p "$work/atl" "$work/curl"
cat >"$work/atl/.env" <<ENV
ATL_CLIENT_ID=bench-client
ATL_CLIENT_SECRET=bench-secret
ATL_SCOPE="read:jira-work offline_access"
ATL_TOKEN_URL=$token_url
ATL_API_URL=$api_url
ENV
# As `atl-token init` writes it: an env file others can read costs a warning on every run.
chmod 600 "$work/atl/.env"
cat >"$work/curl/.env" <<ENV
JIRA_CLIENT_ID="bench-client"
JIRA_CLIENT_SECRET="bench-secret"
TOKEN_FILE_NAME="token.json"
TOKEN_URL="$token_url"
ENV
first_pair() {
  curl -s -X POST "$token_url" -H 'Content-Type: application/json' \
    -d '{"grant_type":"authorization_code","code":"bench-code","client_id":"bench-client","client_secret":"bench-secret"}'
}
first_pair | jq >"$work/curl/token.json"
# atl-token's own file format, written by a refresh (adds expires_at and friends).
first_pair | jq >"$work/atl/token.json"
"$bin" --env-file "$work/atl/.env" refresh -q

# A service account (ATL_GRANT=client_credentials): its first token fetched by a print.
mkdir -p "$work/svc"
cat >"$work/svc/.env" <<ENV
ATL_CLIENT_ID=bench-client
ATL_CLIENT_SECRET=bench-secret
ATL_GRANT=client_credentials
ATL_TOKEN_URL=$token_url
ATL_API_URL=$api_url
ENV
chmod 600 "$work/svc/.env"
svc="$bin --env-file $work/svc/.env"
$svc print --access >/dev/null

cd "$work/atl"
atl="$bin --env-file $work/atl/.env"
# The floor for a Rust program: read the file, print the token (bench/floor.rs).
rustc -C opt-level=s -C strip=symbols -o "$work/floor" "$repo/bench/floor.rs"

echo "== print: atl-token print --access vs the Rust floor vs jq vs cat" >&2
hyperfine -N --warmup 50 --runs 1000 --export-json "$work/print.json" \
  -n "atl-token print --access" "$atl print --access" \
  -n "client-credentials print --access" "$svc print --access" \
  -n "floor" "$work/floor" \
  -n "jq -r .access_token" "jq -r .access_token token.json" \
  -n "cat token.json" "cat token.json" >&2
faults() { # the mean page faults of 100 runs
  perf stat -r 100 -x, -e page-faults "$@" 2>&1 >/dev/null | awk -F, '/page-faults/ {printf "%d", $1}'
}
faults_print=$(faults $atl print --access)
faults_floor=$(faults "$work/floor")

echo "== client credentials: token requests for 100 concurrent prints on an expired token" >&2
credentials() { curl -s "$api_url/_stats" | jq .credentials; }
curl -s -X POST "$api_url/_ttl" -d 2 >/dev/null
$svc refresh -q
curl -s -X POST "$api_url/_ttl" -d 3600 >/dev/null
sleep 2.2
before=$(credentials)
pids=()
for _ in $(seq 100); do $svc print --access --min-valid 1s >/dev/null & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
fetches=$(( $(credentials) - before ))

echo "== refresh: atl-token refresh vs curl + jq" >&2
hyperfine -N --warmup 5 --runs 200 --export-json "$work/refresh.json" \
  -n "atl-token refresh" "$atl refresh -q" \
  -n "curl + jq (seed script)" "bash $repo/bench/curl_refresh.sh $work/curl/.env" >&2

# Both chains must still be alive: a broken chain would mean a benchmark of error paths.
"$bin" --env-file "$work/atl/.env" refresh -q
jq -e '.access_token' "$work/curl/token.json" >/dev/null

echo "== paging: atl-token api --paginate vs a curl + jq loop, 50 pages of 50 ms" >&2
search_url="$api_url/ex/jira/bench-cloud-id/rest/api/3/search"
access=$("$bin" --env-file "$work/atl/.env" print --access)
# Both must return the same 2500 issues, in order.
"$bin" --env-file "$work/atl/.env" api --paginate /rest/api/3/search | jq -c '[.[].key]' >"$work/atl.keys"
bash "$repo/bench/curl_paginate.sh" "$search_url" "$access" | jq -c '[.[].key]' >"$work/curl.keys"
cmp -s "$work/atl.keys" "$work/curl.keys" && [ "$(jq length "$work/atl.keys")" = 2500 ] \
  || { echo "the two listings differ" >&2; exit 1; }
hyperfine -N --warmup 1 --runs 10 --export-json "$work/paging.json" \
  -n "atl-token api --paginate" "$atl api --paginate /rest/api/3/search" \
  -n "curl + jq loop" "bash $repo/bench/curl_paginate.sh $search_url $access" >&2

echo "== paging memory: api --paginate --ndjson over 100 and 1000 pages of 0.5 MB" >&2
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1; }
mem_pages_100=$(rss $atl api --paginate --ndjson "/rest/api/3/big?pages=100")
mem_pages_1000=$(rss $atl api --paginate --ndjson "/rest/api/3/big?pages=1000")

peak() { # the largest max-RSS (KiB) of 30 runs
  for _ in $(seq 30); do /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1; done | sort -n | tail -n1
}
mem_print=$(peak $atl print --access)
mem_refresh=$(peak $atl refresh -q)
mem_cat=$(peak cat token.json)
mem_jq=$(peak jq -r .access_token token.json)
mem_floor=$(peak "$work/floor")
size=$(stat -c %s "$bin")

cd "$repo"
table=$(python3 - "$work/print.json" "$work/refresh.json" "$mem_print" "$mem_refresh" "$mem_cat" "$mem_jq" "$size" "$work/paging.json" "$mem_pages_100" "$mem_pages_1000" "$faults_print" "$faults_floor" "$mem_floor" "$work/verdict" "$fetches" <<'PY'
import json, sys
def medians(path):
    return {r["command"]: r["median"] for r in json.load(open(path))["results"]}
p, r, g = medians(sys.argv[1]), medians(sys.argv[2]), medians(sys.argv[8])
mem_print, mem_refresh, mem_cat, mem_jq, size = map(int, sys.argv[3:8])
pages_100, pages_1000, faults_print, faults_floor, mem_floor = map(int, sys.argv[9:14])
fetches = int(sys.argv[15])
hot_misses = []
ms = lambda s: f"{s * 1000:.2f} ms"
def check(ok): return "met" if ok else "NOT MET"
def hot(ok, what):
    if not ok:
        hot_misses.append(what)
    return check(ok)
pa, jq, cat, floor = p["atl-token print --access"], p["jq -r .access_token"], p["cat token.json"], p["floor"]
pc = p["client-credentials print --access"]
ra, rc = r["atl-token refresh"], r["curl + jq (seed script)"]
ga, gc = g["atl-token api --paginate"], g["curl + jq loop"]
rows = [
    ("`print --access` median", ms(pa), f"{pa / cat:.2f}x `cat`", "at most 1.2x `cat`", hot(pa <= 1.2 * cat, "time")),
    ("", "", f"{pa / jq:.3f}x `jq`", "at most 0.1x `jq`", check(pa <= 0.1 * jq)),
    ("the Rust floor (bench/floor.rs) median", ms(floor), f"{floor / cat:.2f}x `cat`", "", ""),
    ("client-credentials `print --access` median (fresh token)", ms(pc), f"{pc / cat:.2f}x `cat`", "at most 1.2x `cat`", hot(pc <= 1.2 * cat, "client-credentials time")),
    ("client credentials: token requests for 100 concurrent prints on an expired token", str(fetches), "", "exactly 1", check(fetches == 1)),
    ("`print --access` page faults, mean of 100", str(faults_print), f"floor {faults_floor}", "at most 100", hot(faults_print <= 100, "page faults")),
    ("`jq -r .access_token` median", ms(jq), "", "", ""),
    ("`cat token.json` median", ms(cat), "", "", ""),
    ("`refresh` median", ms(ra), f"{ra / rc:.3f}x curl + jq", "at most 0.25x", check(ra <= 0.25 * rc)),
    ("curl + jq refresh median", ms(rc), "", "", ""),
    ("`api --paginate`, 50 pages of 50 ms", ms(ga), f"{ga / gc:.3f}x curl + jq loop", "at most 0.5x", check(ga <= 0.5 * gc)),
    ("curl + jq paging loop", ms(gc), "", "", ""),
    ("`print --access` peak RSS", f"{mem_print / 1024:.2f} MiB", f"`cat` {mem_cat / 1024:.2f} MiB, floor {mem_floor / 1024:.2f} MiB, `jq` {mem_jq / 1024:.2f} MiB", "at most 3 MiB", hot(mem_print <= 3072, "peak RSS")),
    ("`refresh` peak RSS", f"{mem_refresh / 1024:.2f} MiB", "", "", ""),
    ("`api --paginate --ndjson` peak RSS, 100 / 1000 pages of 0.5 MB", f"{pages_100 / 1024:.1f} / {pages_1000 / 1024:.1f} MiB",
     f"{pages_1000 / pages_100:.2f}x", "flat: at most 1.2x", check(pages_1000 <= 1.2 * pages_100)),
    ("release binary", f"{size / 1e6:.2f} MB", "", "", ""),
]
print("| measure | value | ratio | target | |")
print("| --- | --- | --- | --- | --- |")
for row in rows:
    print("| " + " | ".join(row) + " |")
open(sys.argv[14], "w").write(", ".join(hot_misses))
PY
)

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r)"
echo
echo "$table"
if [ "${1:-}" = "--save" ]; then
  # Sections added by hand (before-and-after comparisons) stay.
  kept=$(sed -n '/^## /,$p' bench/RESULTS.md 2>/dev/null || true)
  {
    echo "# Benchmark results"
    echo
    echo "Made by \`bench/run.sh --save\` on $(date -u +%Y-%m-%d), atl-token $(git rev-parse --short HEAD)."
    echo "Machine: $machine."
    echo "Tools: $(hyperfine --version), $(jq --version), $(curl --version | head -n1 | cut -d' ' -f1-2)."
    echo
    echo "Medians of hyperfine runs (1000 for print, 200 for refresh, 10 for paging, no shell); page"
    echo "faults the mean of 100 runs of \`perf stat -e page-faults\`; peak RSS the largest of 30 runs"
    echo "of \`/usr/bin/time -f %M\`. The floor is bench/floor.rs, built by the bench with rustc."
    echo "The server is bench/auth_server.py on loopback, the same for both sides; its search pages"
    echo "take 50 ms each. \`api --paginate\`"
    echo "fetches 4 pages at once (the default \`--parallel\`) once the first page gives the total."
    echo "Paging memory is one run each of \`/usr/bin/time -f %M\` over 100 and 1000 pages of 0.5 MB."
    echo "The client-credentials rows use a service account's token file (ATL_GRANT=client_credentials);"
    echo "the token requests are counted by the server while 100 prints start at once on an expired token."
    echo
    echo "$table"
    if [ -n "$kept" ]; then
      echo
      echo "$kept"
    fi
  } >bench/RESULTS.md
  echo "wrote bench/RESULTS.md" >&2
fi
if [ -s "$work/verdict" ]; then
  echo "bench/run.sh: the hot path missed its targets: $(cat "$work/verdict"). If the hot path's code" \
    "changed, run bench/hot-symbols.sh and try again" >&2
  exit 1
fi
