from pathlib import Path

from workbench.images.certs import find_ca_bundle


def test_first_existing_file_wins(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    assert find_ca_bundle({"PIP_CERT": str(tmp_path / "missing"), "SSL_CERT_FILE": str(ca)}) == ca
    assert find_ca_bundle({"REQUESTS_CA_BUNDLE": str(ca)}) == ca
    assert find_ca_bundle({"PIP_CERT": str(tmp_path)}) is None  # a folder is not a bundle
    assert find_ca_bundle({}) is None
