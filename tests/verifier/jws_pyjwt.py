"""Verifies a checkpoint's JWS with PyJWT against a workspace JWKS file (an independent peer).

Usage: jws_pyjwt.py <jwks.json> <checkpoint.json>; prints the verified body, exits 1 on failure.
"""
import json
import sys

import jwt

jwks = json.load(open(sys.argv[1]))
checkpoint = json.load(open(sys.argv[2]))
header = jwt.get_unverified_header(checkpoint["jws"])
key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
body = jwt.api_jws.decode(checkpoint["jws"], jwt.PyJWK(key).key, algorithms=["EdDSA"])
if body.decode() != checkpoint["body"]:
    sys.exit("payload differs from body")
print(body.decode(), end="")
