#!/bin/bash
# The baseline: a refresh done the way the seed's bash script does it (curl POST of a JSON
# body, jq to read the refresh token and to write the answer). Usage: curl_refresh.sh ENV_FILE
set -e
set -a
source "$1"
set +a
TOKEN_FILE_PATH="$(dirname "$1")/$TOKEN_FILE_NAME"
refresh_token=$(jq '.refresh_token' --raw-output <"$TOKEN_FILE_PATH")
data='{
  "grant_type": "refresh_token",
  "client_id": "'$JIRA_CLIENT_ID'",
  "client_secret": "'$JIRA_CLIENT_SECRET'",
  "refresh_token": "'$refresh_token'"
}'
response=$(curl --request POST "$TOKEN_URL" --header "Content-Type: application/json" --data "$data" --silent)
echo "$response" | jq >"$TOKEN_FILE_PATH"
