"""Doctests of the package (``pytest --doctest-modules mdlm_dna``) run in a fresh folder each, so the examples
that write files (a FASTA, a VCF, a plot) leave nothing in the checkout."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _doctest_in_tmp_folder(request, tmp_path, monkeypatch):
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(tmp_path)
