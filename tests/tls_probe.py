"""TLS handshakes against pgha's listeners, to check the one cipher policy (issue 18, item 6)."""

from __future__ import annotations

import socket
import ssl

from pgha.probe.tls import SSL_REQUEST

WEAK_CIPHERS = "ECDHE-ECDSA-AES128-SHA:AES128-SHA:@SECLEVEL=0"
"""TLS 1.2 CBC with SHA-1 MACs, with ECDHE (pgha's ECDSA keys) and without: what the policy refuses."""


def context(ca: str, cert: str | None = None, key: str | None = None, *, weak: bool = False) -> ssl.SSLContext:
    """A client context trusting the cluster CA (a client certificate if given); ``weak``: TLS 1.2 CBC-SHA1 only."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the address is checked elsewhere; here only the cipher matters
    if cert and key:
        ctx.load_cert_chain(cert, key)
    if weak:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(WEAK_CIPHERS)
    return ctx


def handshake(host: str, port: int, ctx: ssl.SSLContext, *, postgres: bool = False, timeout: float = 5) -> str:
    """The negotiated protocol and cipher (``TLSv1.3 TLS_AES_256_GCM_SHA384``), or ``refused: <why>``."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if postgres:
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer != b"S":
                return f"refused: PostgreSQL answered {answer!r} to SSLRequest"
        try:
            with ctx.wrap_socket(sock) as tls:
                cipher = tls.cipher()
                return f"{tls.version()} {cipher[0] if cipher else '?'}"
        except (ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc}"
