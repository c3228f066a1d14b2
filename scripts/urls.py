#!/usr/bin/env python3
"""Derives the URLs the scripts hand to Spin from DATABASE_URL and REDIS_URL,
with a URL parser rather than shell pattern surgery.

  urls.py spin-db-url URL [DATABASE]  the Postgres URL for Spin: DATABASE as its
                                      path when given; `sslmode=disable` added for
                                      a loopback server that names no sslmode
  urls.py host-port URL               host:port, with the scheme's default port
  urls.py redis-db URL N              the Redis URL with database N

Spin's outbound Postgres uses TLS with a verified certificate for every
sslmode but `disable`; the Postgres of a developer's machine (Debian's
`ssl = on` with a self-signed certificate) fails that handshake, and loopback
traffic never leaves the machine. A remote server keeps the sslmode it has.
"""
import ipaddress
import sys
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "rediss": 6379}


def is_loopback(host):
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def spin_db_url(url, database=None):
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if is_loopback(parts.hostname or "") and not any(k == "sslmode" for k, _ in query):
        query.append(("sslmode", "disable"))
    path = "/" + database if database else parts.path
    # %20, not +: tokio-postgres (Spin's driver) decodes only %XX escapes.
    query = urlencode(query, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def host_port(url):
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port or DEFAULT_PORTS.get(parts.scheme, 0)}"


def redis_db(url, number):
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{int(number)}", parts.query, parts.fragment))


def main(argv):
    commands = {"spin-db-url": spin_db_url, "host-port": host_port, "redis-db": redis_db}
    if len(argv) < 3 or argv[1] not in commands:
        sys.exit(__doc__)
    print(commands[argv[1]](*argv[2:]))


if __name__ == "__main__":
    main(sys.argv)
