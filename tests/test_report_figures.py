"""The report's figures as a paper needs them: formats, the sweep legend beside the data, reference rows told
apart, titles naming dataset, model and seed, the anchor of the differences."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sims.report as report_module
from sims.cli import main
from tests.test_report import fake_results, write_run

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


def with_references(results: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    for name, level in (("oracle", 0.83), ("group-oracle", 0.8), ("global-fresh", 0.66)):
        pu = {u: float(np.clip(rng.normal(level, 0.05), 0, 1)) for u in results["methods"]["coda"]["per_user"]}
        results["methods"][name] = {"auc": float(np.mean(list(pu.values()))), "users": len(pu), "per_user": pu,
                                    "reference": True}
    return results


def sweep_with_references(folder):
    rows = []
    for i, kf in enumerate((0.1, 0.5, 0.9)):
        vid = f"variant-{i:012x}"
        write_run(folder / vid, with_references(fake_results(seed=4, shift=0.02 * i, classifier__keep_fraction=kf), i))
        rows.append({"variant": i, "id": vid, "overrides": [f"classifier.keep_fraction={kf}"]})
    (folder / "sweep.json").write_text(json.dumps(rows))
    return folder


@pytest.fixture
def figures(monkeypatch):
    """The figures drawn, by file stem, instead of written."""
    drawn = {}

    def keep(fig, path, formats=("png",)):
        drawn[path.stem] = fig
        return [path]

    monkeypatch.setattr(report_module, "_save", keep)
    return drawn


def test_every_figure_in_every_format_asked_for(tmp_path, capsys):
    run = write_run(tmp_path / "run", with_references(fake_results(), 0))
    assert main(["report", str(run), "--out", str(tmp_path / "f"), "--format", "png,pdf,svg"]) == 0
    for stem in ("auc", "coda_differences", "per_user_scatter"):
        for fmt, magic in MAGIC.items():
            assert (tmp_path / "f" / f"{stem}.{fmt}").read_bytes().startswith(magic), (stem, fmt)
    assert main(["report", str(run), "--out", str(tmp_path / "g"), "--format", "png,tiff"]) == 2
    assert "--format: unknown format 'tiff'" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()                               # refused before anything was written


def test_sweep_legend_beside_the_data_references_in_distinct_styles(tmp_path, figures):
    sweep = sweep_with_references(tmp_path / "sweep")
    report_module.report([sweep], tmp_path / "out")
    fig = figures["sweep_classifier.keep_fraction"]
    ax = fig.axes[0]
    fig.canvas.draw()
    legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= box.x1                                         # entirely right of the axes
    styles = {}
    for handle, label in zip(*ax.get_legend_handles_labels()):
        line = handle.lines[0] if hasattr(handle, "lines") else handle
        styles[label] = (str(line.get_linestyle()), line.get_marker(), line.get_color())
    refs = {k: v for k, v in styles.items() if k.endswith("(reference)")}
    assert len(refs) == 3 and len(set(refs.values())) == 3
    assert len({s[:2] for s in refs.values()}) == 3                    # apart in line style and marker too
    assert all(styles["coda"][:2] != s[:2] for s in refs.values())
    assert "(synthetic, din, seed 4, test rows)" in ax.get_title()


def test_titles_name_dataset_model_seed_and_the_anchor(tmp_path, figures):
    results = fake_results(seed=7)
    results["config"]["eval"]["anchor"] = "local"
    results["data"] = {"source": "DataFrame"}
    report_module.report([write_run(tmp_path / "run", results)], tmp_path / "out")
    auc = figures["auc"].axes[0].get_title()
    assert "(DataFrame, din, seed 7, test rows)" in auc
    diff = figures["coda_differences"].axes[0]
    assert diff.get_title().startswith("local against every other method")
    assert all(t.get_text().startswith("local − ") for t in diff.get_yticklabels())
    assert report_module._title([fake_results(seed=s) for s in (0, 1, 2)], "x") == "x\n(synthetic, din, seeds 0-2, test rows)"
