"""The workstation's CA bundle, honoured inside builds (corporate TLS interception)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CA_ENV_VARS = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
CA_ARCNAME = "certs/ca.pem"


def find_ca_bundle(environ: Mapping[str, str] | None = None) -> Path | None:
    """The first of PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE that names an existing file."""
    environ = os.environ if environ is None else environ
    for name in CA_ENV_VARS:
        value = environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return None
