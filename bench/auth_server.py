#!/usr/bin/env python3
"""A token endpoint on loopback for the benchmarks: rotates refresh tokens like Atlassian.

POST /oauth/token with a JSON or form body. `grant_type=authorization_code` with
code=bench-code, or `grant_type=refresh_token` with a live refresh token (each works once),
returns a new pair whose sizes resemble Atlassian's. Writes its port to the file named by
--port-file, and serves until killed.

`grant_type=client_credentials` (a service account) returns an access token alone, living
CREDENTIALS_TTL seconds (POST /_ttl with a number sets it); GET /_stats counts these grants.

For the paging benchmark, with any bearer token: GET /oauth/token/accessible-resources lists
one site, and GET /ex/jira/bench-cloud-id/rest/api/3/search?startAt=N answers, after 50 ms
(a server's time to run a search), a page of 50 issues out of 2500, Jira's offset style.
For the paging memory benchmark, GET .../rest/api/3/big?pages=P&startAt=N answers at once
with a page of 50 issues of about 10 KB each (0.5 MB), out of P pages.
"""
import argparse
import http.server
import json
import secrets
import threading
import time
import urllib.parse

PAGE_SIZE = 50
TOTAL = 2500
PAGE_DELAY = 0.05
SEARCH = "/ex/jira/bench-cloud-id/rest/api/3/search"
BIG = "/ex/jira/bench-cloud-id/rest/api/3/big"
BIG_TEXT = "x" * 10_000

LIVE = set()
LOCK = threading.Lock()
STATS = {"credentials": 0}
CREDENTIALS_TTL = [3600]


def new_pair():
    access = "eyJ" + secrets.token_urlsafe(900)  # ~1.2 KB, like a 3LO access token (a JWT)
    refresh = "eyJ" + secrets.token_urlsafe(450)
    with LOCK:
        LIVE.add(refresh)
    return {"access_token": access, "refresh_token": refresh, "expires_in": 3600,
            "token_type": "Bearer", "scope": "read:jira-work offline_access"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes; with Nagle's algorithm the body would wait
    # for the client's delayed ACK (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_stats":
            with LOCK:
                self.reply(200, dict(STATS))
        elif not self.headers.get("Authorization", "").startswith("Bearer "):
            self.reply(401, {"code": 401, "message": "Unauthorized"})
        elif url.path == "/oauth/token/accessible-resources":
            self.reply(200, [{"id": "bench-cloud-id", "url": "https://bench.atlassian.net", "name": "bench",
                              "scopes": ["read:jira-work"]}])
        elif url.path == SEARCH:
            start = int(dict(urllib.parse.parse_qsl(url.query)).get("startAt", 0))
            time.sleep(PAGE_DELAY)
            issues = [{"id": str(10000 + i), "key": f"BENCH-{i}", "fields": {"summary": f"Issue number {i}"}}
                      for i in range(start, min(start + PAGE_SIZE, TOTAL))]
            self.reply(200, {"startAt": start, "maxResults": PAGE_SIZE, "total": TOTAL, "issues": issues})
        elif url.path == BIG:
            query = dict(urllib.parse.parse_qsl(url.query))
            start, total = int(query.get("startAt", 0)), int(query.get("pages", 100)) * PAGE_SIZE
            issues = [{"id": str(i), "key": f"BIG-{i}", "fields": {"description": BIG_TEXT}}
                      for i in range(start, min(start + PAGE_SIZE, total))]
            self.reply(200, {"startAt": start, "maxResults": PAGE_SIZE, "total": total, "issues": issues})
        else:
            self.reply(404, {"errorMessages": ["not found"]})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/_ttl":
            CREDENTIALS_TTL[0] = int(body)
            self.reply(200, {"ttl": CREDENTIALS_TTL[0]})
            return
        if self.headers.get("Content-Type", "").startswith("application/json"):
            params = json.loads(body or b"{}")
        else:
            params = dict(urllib.parse.parse_qsl(body.decode()))
        grant = params.get("grant_type")
        if grant == "authorization_code" and params.get("code") == "bench-code":
            self.reply(200, new_pair())
        elif grant == "client_credentials" and params.get("client_secret") == "bench-secret":
            with LOCK:
                STATS["credentials"] += 1
            self.reply(200, {"access_token": "eyJ" + secrets.token_urlsafe(900), "expires_in": CREDENTIALS_TTL[0],
                             "token_type": "Bearer", "scope": "read:jira-work"})
        elif grant == "refresh_token":
            with LOCK:
                ok = params.get("refresh_token") in LIVE
                LIVE.discard(params.get("refresh_token"))
            if ok:
                self.reply(200, new_pair())
            else:
                self.reply(403, {"error": "unauthorized_client", "error_description": "refresh_token is invalid"})
        else:
            self.reply(400, {"error": "invalid_request"})

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
