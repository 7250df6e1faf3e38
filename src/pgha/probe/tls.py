"""The certificate a listener presents to a new connection (a rotation's proof that it took effect)."""

from __future__ import annotations

import socket
import ssl
import struct

from cryptography import x509

from pgha.probe.bounded import PROBE_TIMEOUT

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
"""PostgreSQL's SSLRequest: TLS starts after the server answers 'S'."""


def presented(host: str, port: int, ctx: ssl.SSLContext, *, postgres: bool = False,
              timeout: float = PROBE_TIMEOUT) -> x509.Certificate:
    """The leaf certificate of a fresh TLS handshake with ``host:port``, verified by ``ctx`` (whose client
    certificate, if any, is presented: etcd's ports require one). Raises OSError/ssl.SSLError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if postgres:
            sock.sendall(SSL_REQUEST)
            if sock.recv(1) != b"S":
                raise ConnectionError(f"{host}:{port} refused TLS (no 'S' to SSLRequest)")
        with ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ConnectionError(f"{host}:{port} presented no certificate")
    return x509.load_der_x509_certificate(der)


def client_context(ca: str, cert: str = "", key: str = "") -> ssl.SSLContext:
    """A fresh (never cached) client context: a rotation changes the files between two probes. The
    address is not checked here (the probe asks for a serial, the chain is still verified)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
