#!/usr/bin/env python3
"""Checks one OAuth 1.0a request the way a server would, with oauthlib (an independent
implementation): its SignatureOnlyEndpoint validates the `Authorization` header that
`atl-token print --header` printed, for the method and URL it was made for, against the
consumer's public key.

    python3 verify.py METHOD URL 'Authorization: OAuth ...' PUBLIC_KEY_PEM CONSUMER_KEY

Prints "valid" and exits 0, or prints why not and exits 1.
"""
import sys

from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint


class Validator(RequestValidator):
    def __init__(self, consumer_key, public_key):
        super().__init__()
        self.consumer_key, self.public_key = consumer_key, public_key

    enforce_ssl = False
    allowed_signature_methods = ["RSA-SHA1"]

    # atl-token's keys, nonces and tokens are longer or shorter than oauthlib's defaults.
    safe_characters = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~.")
    client_key_length = (3, 100)
    access_token_length = (3, 100)
    nonce_length = (16, 64)

    @property
    def dummy_client(self):
        return "dummy"

    def validate_client_key(self, client_key, request):
        return client_key == self.consumer_key

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request,
                                     request_token=None, access_token=None):
        return True

    def get_rsa_key(self, client_key, request):
        return self.public_key


def main():
    method, url, header, public_file, consumer_key = sys.argv[1:6]
    name, _, value = header.strip().partition(": ")
    assert name == "Authorization", header
    validator = Validator(consumer_key, open(public_file).read())
    valid, request = SignatureOnlyEndpoint(validator).validate_request(
        url, http_method=method, headers={"Authorization": value})
    if not valid:
        print("invalid:", validator_result(request))
        sys.exit(1)
    print("valid")


def validator_result(request):
    return getattr(request, "validator_log", {})


if __name__ == "__main__":
    main()
