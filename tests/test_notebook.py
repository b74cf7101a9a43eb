"""The example notebook runs top to bottom (trains a tiny model itself when no checkpoint is given)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install nbformat nbclient ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "generate_synthetic_sequences.ipynb"


def test_notebook_runs(ecoli_prefix, tmp_path, monkeypatch):
    # a short config: a few training steps on 60 kb of E. coli, a handful of short samples
    for k, v in {"MDLM_DNA_GENOME": str(ecoli_prefix), "NB_TRAIN_STEPS": "4", "NB_NUM_SAMPLES": "4",
                 "NB_LENGTH": "64", "NB_STEPS": "16", "NB_REFERENCE_WINDOWS": "32", "NB_OUT_DIR": str(tmp_path),
                 "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MDLM_DNA_CKPT", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "cached == ancestral: True" in text
    assert (tmp_path / "samples.fa").exists() and (tmp_path / "gc.png").exists() and (tmp_path / "kmer6.png").exists()
    tables = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "execute_result"]
    assert any("uniform random" in o["data"].get("text/plain", "") for o in tables)
