"""The third notebook, "What the model knows about genes", runs top to bottom on the shipped model.

The assertions read the numbers the notebook computes (its last line, ``VERDICTS {json}``), not its prose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install nbformat nbclient ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install nbclient ipykernel)")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "what_the_model_knows_about_genes.ipynb"


def run_notebook(path: Path, env: dict[str, str], monkeypatch) -> str:
    """Execute ``path`` from the repository root with ``env`` set (and the default model); returns its printed
    text (the same runner as tests/test_notebook.py)."""
    for k, v in {**env, "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MDLM_DNA_MODEL", raising=False)
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_genes_notebook_runs_and_its_numbers_hold(tmp_path, monkeypatch):
    text = run_notebook(NOTEBOOK, {"NB_OUT_DIR": str(tmp_path)}, monkeypatch)
    line = next(x for x in text.splitlines() if x.startswith("VERDICTS "))
    v = json.loads(line.removeprefix("VERDICTS "))
    for name in ("track.png", "gene_variants.png", "start_logo_ism.png", "dependency_map.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    # every base of the gene changed to each of the 3 other bases, each change classed once
    assert v["variants"] == 3 * v["gene_length"] and sum(v["class_counts"].values()) == v["variants"]
    assert v["class_counts"]["start_lost"] + v["class_counts"].get("start_retained", 0) == 9
    assert 0 <= v["auroc_stop_vs_synonymous"] <= 1 and 0 <= v["auroc_missense_vs_synonymous"] <= 1
    # what the shipped model knows about this held-out gene (deterministic: no sampling anywhere)
    # (the claims the notebook's closing text makes, each of which can fail)
    assert v["mean_llr"]["stop_gained"] < v["mean_llr"]["synonymous"]
    assert v["auroc_stop_vs_synonymous"] > 0.55
    assert v["information_in_genes"] > v["information_outside_genes"]
    assert v["dependency_within_codon"] > v["dependency_across_codons"]
    assert set(v["information_by_codon_position"]) == {"1", "2", "3"}
