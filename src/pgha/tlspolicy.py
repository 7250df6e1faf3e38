"""The one TLS policy of every listener (etcd client and peer, Patroni's REST API, PostgreSQL,
postgres_exporter, Prometheus, Alertmanager) and of HAProxy's checks: TLS 1.3, or TLS 1.2 with ECDHE key
exchange and an AEAD cipher (AES-GCM, ChaCha20).
No CBC, no SHA-1 MACs, no static RSA key exchange. TLS 1.3's suites are all AEAD and stay enabled.
"""

from __future__ import annotations

MIN_VERSION = "TLSv1.2"

_SUITES = (  # (OpenSSL name, Go name); pgha's keys are ECDSA, the RSA variants serve certificates brought in
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"),
)
OPENSSL_CIPHERS = ":".join(o for o, _ in _SUITES)
"""TLS 1.2 suites in OpenSSL's names: PostgreSQL's ssl_ciphers, Patroni's restapi.ciphers, HAProxy."""
GO_CIPHERS = ",".join(g for _, g in _SUITES)
"""The same suites in Go's names (etcd 3.4 to 3.6 accept these spellings): etcd's --cipher-suites."""
