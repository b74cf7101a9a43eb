"""The seed tables of benchmarks/paper_claims.py and benchmarks/genomic_benchmarks_table.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import genomic_benchmarks_table as gb  # noqa: E402
import paper_claims  # noqa: E402
from seed_stats import interval  # noqa: E402


def test_interval_is_the_student_t_interval():
    mean, sd, half = interval([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0)
    assert half == pytest.approx(4.303 / math.sqrt(3))
    assert math.isnan(interval([5.0])[2])


def rows(overrides: str, values: list[float]) -> list[dict]:
    return [{"genome": "g", "objective": "mdlm", "seed": s, "bpb": v, "overrides": overrides}
            for s, v in enumerate(values)]


def test_a_cumulative_ablation_is_paired_with_the_variant_it_extends():
    base = rows("", [1.0, 1.1, 1.2])
    t1000 = rows("objective.num_steps=1000", [1.01, 1.12, 1.23])  # +0.01, +0.02, +0.03 over the default
    both = rows("objective.num_steps=1000 objective.carry_over=false", [1.02, 1.14, 1.26])  # +0.01 .. +0.03 more
    table = paper_claims.ablation_table(base, t1000 + both).splitlines()
    line = next(x for x in table if "| objective.num_steps=1000 objective.carry_over=false |" in x)
    cells = [c.strip() for c in line.split("|")]
    assert cells[7].startswith("+0.0400")  # minus the default: mean of 0.02, 0.04, 0.06
    assert cells[9].startswith("+0.0200") and "(vs objective.num_steps=1000)" in cells[9]
    half = 4.303 * 0.01 / math.sqrt(3)
    assert cells[10] == f"{0.02 - half:+.4f} .. {0.02 + half:+.4f}"
    plain = next(x for x in table if "| objective.num_steps=1000 |" in x)
    assert [c.strip() for c in plain.split("|")][9] == "-"  # extends only the default


@pytest.mark.parametrize("task", sorted(gb.TABLE_FILES))
def test_carrier_labels_map_onto_the_task_classes(task):
    classes = OmegaConf.load(ROOT / "configs" / "task" / f"{task}.yaml").classes
    _, labels = gb.TABLE_FILES[task]
    assert sorted(labels.values()) == sorted(classes) and sorted(labels) == list(range(len(classes)))


def test_published_rows_name_known_tasks_and_are_accuracies():
    for source, accs in gb.PUBLISHED.items():
        assert set(accs) <= set(gb.GB_TASKS), source
        assert all(0.5 < a < 1 for a in accs.values()), source


def test_gue_table_reads_the_task_folders_and_prints_cost_per_run(tmp_path):
    import gue_table

    with pytest.raises(SystemExit, match="missing .*prom_core_tata/train.csv.gz"):
        gue_table.task_overrides(tmp_path, "prom_core_tata")
    (tmp_path / "prom_core_tata").mkdir()
    for split in ("train", "dev", "test"):
        (tmp_path / "prom_core_tata" / f"{split}.csv.gz").write_bytes(b"")
    over = gue_table.task_overrides(tmp_path, "prom_core_tata")
    assert "task=csv" in over and any(o.startswith("task.val_path=") and o.endswith("dev.csv.gz") for o in over)
    runs = [{"task": "prom_core_tata", "row": "cnn", "accuracy": a, "mcc": m, "train": 10, "test": 5,
             "majority": 0.5, "cpu_s": c} for a, m, c in ((0.7, 0.4, 10.0), (0.8, 0.6, 14.0))]
    text = gb.table(runs, published={})
    assert "CPU s per run" in text and "| 0.750 ± 0.071 |" in text and "| 12 |" in text
    assert gue_table.GUE_FIELDS[-2:] == ["cpu_s", "overrides"]


def test_gue_table_keeps_override_variants_apart_and_names_them():
    import gue_table

    base = {"task": "prom_core_tata", "row": "dit", "accuracy": 0.8, "train": 10, "test": 5, "cpu_s": 10.0}
    runs = [{**base, "mcc": 0.6, "overrides": ""}, {**base, "mcc": 0.7, "overrides": ""},
            {**base, "mcc": 0.2, "overrides": "data.batch_size=64"}]
    text = gue_table.gue_table(runs, published={})
    plain, variant = [line for line in text.splitlines() if line.startswith("| prom_core_tata")]
    assert "| 2 | 0.650 ± 0.071 |" in plain and "batch_size" not in plain
    assert "`data.batch_size=64`" in variant and "| 1 | 0.200 |" in variant
