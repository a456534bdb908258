"""Issues Herald tokens from a Python backend with PyJWT (Debian
python3-jwt, which uses python3-cryptography for ES256): a connection
token for a user and a channel token for one private channel, signed
ES256 with the backend's private key. Herald holds the public half
(token_public_key, or a JWKS with the same kid).
HERALD_SIGNING_KEY: path of the PEM private key."""
import json
import os
import time

import jwt  # PyJWT

key = open(os.environ["HERALD_SIGNING_KEY"]).read()
now = int(time.time())


def sign(claims, ttl):
    return jwt.encode(dict(claims, iat=now, exp=now + ttl), key,
                      algorithm="ES256", headers={"kid": "2026-12"})


# The user, what they may open without channel tokens, what others see.
connection = sign({"sub": "42", "channels": ["orders:acme"],
                   "info": {"name": "Ada"}}, 3600)
# One private channel for the same user, short-lived: the client renews
# it with sub_refresh before it expires.
channel = sign({"sub": "42", "channel": "orders:beta"}, 600)

print(json.dumps({"connection": connection, "channel": channel}))
