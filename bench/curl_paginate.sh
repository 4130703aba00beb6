#!/bin/bash
# The baseline for `api --paginate`: a bash loop of curl + jq paging through a Jira search
# by startAt, as scripts do today. Usage: curl_paginate.sh SEARCH_URL ACCESS_TOKEN
# Prints one JSON array of the issues.
set -e
url=$1 token=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=0 total=1
while [ "$start" -lt "$total" ]; do
  page=$(curl -s -H "Authorization: Bearer $token" "$url?startAt=$start")
  total=$(jq '.total' <<<"$page")
  n=$(jq '.issues | length' <<<"$page")
  [ "$n" -gt 0 ] || break
  jq -c '.issues[]' <<<"$page" >>"$out"
  start=$((start + n))
done
jq -s -c . "$out"
