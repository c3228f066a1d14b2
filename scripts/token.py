#!/usr/bin/env python3
"""Mints an HS256 bearer token for local use (curl, the load script).

    python3 scripts/token.py --sub u-123 --role user [--secret S] [--ttl 3600]

The secret defaults to $SPIN_VARIABLE_JWT_SECRET. Standard library only.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(sub: str, role: str, secret: str, ttl: int) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "role": role, "exp": int(time.time()) + ttl}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub", required=True)
    parser.add_argument("--role", required=True, choices=["user", "service", "admin"])
    parser.add_argument("--secret", default=os.environ.get("SPIN_VARIABLE_JWT_SECRET"))
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp")
    args = parser.parse_args()
    if not args.secret:
        print("error: no secret: pass --secret or set SPIN_VARIABLE_JWT_SECRET", file=sys.stderr)
        return 2
    print(mint(args.sub, args.role, args.secret, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
