"""Verifies a Palisade access token with PyJWT against the server's JWKS (an independent peer).

Usage: verify_jwt.py <jwks_url> <token> <issuer>; prints the verified claims as JSON.
"""
import json
import sys

import jwt

jwks_url, token, issuer = sys.argv[1:4]
signing_key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, signing_key, algorithms=["EdDSA"], audience="palisade", issuer=issuer)
print(json.dumps(claims))
