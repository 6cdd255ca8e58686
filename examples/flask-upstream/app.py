"""A small Flask API behind Portcullis that trusts only Portcullis's identity token.

Portcullis authenticates the caller, enforces the route's policy, and adds a
short-lived JWT (`X-Identity-Token`, typ `identity+jwt`) signed with its own
key. This app verifies that token against Portcullis's JWKS on every request,
so a request that reaches it any other way (or carries forged `X-User-*`
headers) gets nothing.

Environment:
  PORT                  where to listen (127.0.0.1)
  GATEWAY_JWKS_URL   https://<gateway>/.well-known/jwks.json
  GATEWAY_ISSUER     the gateway's issuer (its `tokens.issuer`)
  IDENTITY_AUDIENCE     the audience the route sets (forward_identity.audience)
  GATEWAY_CA_FILE    optional: a CA file for the JWKS request (the gateway's
                        self-signed certificate in development)

Run (see README.md next to this file):
  python app.py
"""
import os
import ssl

import jwt
from flask import Flask, abort, jsonify, request

JWKS_URL = os.environ["GATEWAY_JWKS_URL"]
ISSUER = os.environ["GATEWAY_ISSUER"]
AUDIENCE = os.environ.get("IDENTITY_AUDIENCE", "records-api")
CA_FILE = os.environ.get("GATEWAY_CA_FILE")

ssl_context = ssl.create_default_context(cafile=CA_FILE) if CA_FILE else ssl.create_default_context()
jwks = jwt.PyJWKClient(JWKS_URL, cache_keys=True, lifespan=60, ssl_context=ssl_context)

RECORDS = {
    "alice": [{"id": 1, "title": "alice's first record"}],
    "bob": [{"id": 2, "title": "bob's record"}],
}

app = Flask(__name__)


def caller():
    """The verified caller, or 401."""
    token = request.headers.get("X-Identity-Token")
    if not token:
        abort(401)
    try:
        if jwt.get_unverified_header(token).get("typ") != "identity+jwt":
            abort(401)
        key = jwks.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA", "ES256", "RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        abort(401)


@app.get("/records/<owner>")
def records(owner):
    who = caller()
    # Defence in depth: the gateway already enforced this rule.
    if owner != who.get("username") and "admin" not in who.get("roles", []):
        abort(403)
    return jsonify(
        owner=owner,
        records=RECORDS.get(owner, []),
        verified_sub=who["sub"],
        verified_username=who.get("username"),
        x_user_id_seen=request.headers.get("X-User-Id"),
    )


@app.get("/health")
def health():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
