"""What a paper depending on coda-jax reads: the license, the citation file, the typed marker and the extras."""

import tomllib
from pathlib import Path

import yaml

import coda_jax

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_py_typed_ships_with_the_package():
    assert (Path(coda_jax.__file__).parent / "py.typed").is_file()
    assert "py.typed" in _project()["tool"]["setuptools"]["package-data"]["coda_jax"]


def test_license_is_apache_2_and_declared():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert _project()["project"]["license"] == {"text": "Apache-2.0"}


def test_citation_names_the_software_and_the_coda_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["version"] == _project()["project"]["version"] == coda_jax.__version__
    assert cff["license"] == "Apache-2.0"
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("On-Device Learning with Cloud-Coordinated Data Augmentation")
    assert any(i["value"] == "arXiv:2201.10382" for i in paper["identifiers"])
    assert paper["authors"][0] == {"family-names": "Gu", "given-names": "Renjie"}


def test_extras_cuda_and_test():
    extras = _project()["project"]["optional-dependencies"]
    assert any(r.startswith("jax[cuda12]") for r in extras["cuda"])
    assert any(r.startswith("pandas") for r in extras["test"])    # interactions_from_frame, Results.to_frame
