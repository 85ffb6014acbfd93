"""Shared pieces of generated test data."""

from __future__ import annotations

from fhir_server.validation.ins import nir_key


def test_ins(n: int) -> str:
    """A distinct, well-formed INS-NIR (with its key) for every n < 10⁸."""
    nir = f"1{(n // 1_000_000) % 100:02d}{1 + (n // 100_000) % 12:02d}75{n % 1_000_000:06d}"
    return f"{nir}{nir_key(nir):02d}"
