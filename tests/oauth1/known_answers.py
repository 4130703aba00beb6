#!/usr/bin/env python3
"""Known answers for atl-token's OAuth 1.0a signatures, from oauthlib (an independent
implementation): the RFC 5849 section 3.4.1 base string, and for a few requests with a fixed
key (test_key.pem), nonce and timestamp, the base string and the RSA-SHA1 signature.

    python3 known_answers.py            # print the JSON
    python3 known_answers.py --check    # exit 1 unless known_answers.json says the same

src/oauth1.rs's unit tests read known_answers.json; CI runs --check so that the file stays
what oauthlib says, not what atl-token says.
"""
import json
import pathlib
import sys
from urllib.parse import unquote, urlencode, urlparse

from oauthlib.oauth1 import SIGNATURE_RSA, Client
from oauthlib.oauth1.rfc5849 import signature as sig
from oauthlib.oauth1.rfc5849 import utils

HERE = pathlib.Path(__file__).parent
KEY = (HERE / "test_key.pem").read_text()

REQUESTS = [
    # The request-token call, with a loopback callback.
    dict(method="POST", url="https://jira.example.com/plugins/servlet/oauth/request-token",
         form=[], consumer_key="atl-token", token=None,
         callback="http://localhost:8014/", verifier=None),
    # The access-token call: the request token and the verifier.
    dict(method="POST", url="https://jira.example.com/plugins/servlet/oauth/access-token",
         form=[], consumer_key="atl-token", token="reqTok3n", callback=None, verifier="v3r1f13r"),
    # A GET with a query string that needs encoding, below a context path and a port.
    dict(method="GET", url="https://jira.example.com:8443/jira/rest/api/2/search?jql=project%20%3D%20ABC%20ORDER%20BY%20key&maxResults=50&fields=summary,status",
         form=[], consumer_key="atl-token", token="acc3ss~token", callback=None, verifier=None),
    # A form-encoded POST: the body's parameters are signed too.
    dict(method="POST", url="http://127.0.0.1:8990/rest/api/1.0/things?b=2&a=1",
         form=[("name", "a b+c"), ("é", "ü/=&")], consumer_key="key with space",
         token="t", callback=None, verifier=None),
]
NONCE = "4572616e48616d6d65724c61686176"
TIMESTAMP = 1700000000


def answer(r):
    client = Client(r["consumer_key"], signature_method=SIGNATURE_RSA, rsa_key=KEY,
                    resource_owner_key=r["token"], callback_uri=r["callback"],
                    verifier=r["verifier"], nonce=NONCE, timestamp=str(TIMESTAMP))
    body = urlencode(r["form"]) if r["form"] else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    _, signed, _ = client.sign(r["url"], http_method=r["method"], body=body, headers=headers)
    auth = signed["Authorization"]
    oauth = dict(utils.parse_authorization_header(auth))
    params = sig.collect_parameters(uri_query=urlparse(r["url"]).query, body=r["form"],
                                    headers={"Authorization": auth})
    base = sig.signature_base_string(r["method"], sig.base_string_uri(r["url"]),
                                     sig.normalize_parameters(params))
    return dict(r, form=[list(p) for p in r["form"]], nonce=NONCE, timestamp=TIMESTAMP,
                base_string=base, signature=unquote(oauth["oauth_signature"]))


def rfc5849_base_string():
    url = "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b"
    auth = ('OAuth realm="Example", oauth_consumer_key="9djdj82h48djs9d2", '
            'oauth_token="kkk9d7dh3k39sjv7", oauth_signature_method="HMAC-SHA1", '
            'oauth_timestamp="137131201", oauth_nonce="7d8f3e4a", '
            'oauth_signature="bYT5CMsGcbgUdFHObYMEfcx6bsw%3D"')
    params = sig.collect_parameters(uri_query=urlparse(url).query, body="c2&a3=2+q",
                                    headers={"Authorization": auth})
    return sig.signature_base_string("POST", sig.base_string_uri(url), sig.normalize_parameters(params))


def main():
    result = dict(generator="oauthlib " + __import__("oauthlib").__version__,
                  rfc5849_base_string=rfc5849_base_string(),
                  requests=[answer(r) for r in REQUESTS])
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        committed = (HERE / "known_answers.json").read_text()
        if json.loads(committed) != result:
            sys.exit("known_answers.json differs from what oauthlib says now: run known_answers.py")
        print("known_answers.json agrees with oauthlib")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
