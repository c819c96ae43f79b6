"""--out proven writable before any work, and a failed save that keeps the results in a fallback file
(coda_jax.results_io.save_json): rc 2, one ``coda-sim: error: cannot write PATH: REASON`` line naming the
fallback, the earlier results.json untouched, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from coda_jax import results_io
from coda_jax.results_io import SaveError, check_out_dir, check_out_file, save_json
from sims.cli import main as cli_main
from test_outputs import SIMULATE, _results, no_simulation  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]


def _fail_writes_to(monkeypatch, folder: Path, errno: int = 28, text: str = "No space left on device"):
    """Every write_text_atomic into ``folder`` fails as a full disk would (others go through)."""
    real = results_io.write_text_atomic

    def write(path, data):
        if Path(path).parent == folder:
            raise OSError(errno, text)
        return real(path, data)

    monkeypatch.setattr(results_io, "write_text_atomic", write)


def test_out_is_created_and_proven_writable_by_a_probe_file(tmp_path, monkeypatch):
    out = tmp_path / "a" / "b"
    assert check_out_dir(out) == out and out.is_dir()
    assert list(out.iterdir()) == []                              # the probe is removed again
    check_out_file(tmp_path / "c" / "combined.json")
    assert (tmp_path / "c").is_dir() and list((tmp_path / "c").iterdir()) == []

    def no_room(*args, **kwargs):                                 # os.access says yes (root), the write says no
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_io.tempfile, "mkstemp", no_room)
    with pytest.raises(results_io.ConfigError, match=f"--out {out}: cannot write into this folder: No space left"):
        check_out_dir(out)


def test_out_that_cannot_be_created_stops_before_any_work(tmp_path, capsys, monkeypatch, no_simulation):
    def refuse(self, *args, **kwargs):                           # as /proc/... for root: os.access allows it
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(results_io.Path, "mkdir", refuse)
    assert cli_main(["run", "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: --out {tmp_path / 'x'}: cannot create this folder: "
                                       "No such file or directory\n")


def test_save_json_falls_back_beside_the_target_then_to_the_temporary_directory(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text('{"old": 1}\n')
    real = results_io.write_text_atomic
    monkeypatch.setattr(results_io, "write_text_atomic",
                        lambda p, t: (_ for _ in ()).throw(OSError(27, "File too large")) if Path(p) == target
                        else real(p, t))
    with pytest.raises(SaveError) as exc:
        save_json(target, {"a": [1, 2]})
    fallback = exc.value.fallback
    assert fallback.parent == tmp_path and fallback.name.startswith("results.unsaved-")
    assert str(exc.value) == f"cannot write {target}: File too large; the results are in {fallback}"
    assert json.loads(fallback.read_text()) == {"a": [1, 2]} and target.read_text() == '{"old": 1}\n'

    _fail_writes_to(monkeypatch, tmp_path)                       # the target's folder is full: temp directory
    with pytest.raises(SaveError) as exc:
        save_json(target, {"b": 1})
    assert exc.value.fallback.parent == Path(tempfile.gettempdir())
    assert json.loads(exc.value.fallback.read_text()) == {"b": 1}
    exc.value.fallback.unlink()


def test_run_whose_save_fails_keeps_the_results_and_exits_2(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}\n')
    monkeypatch.setattr(SIMULATE, "simulate", lambda cfg, show_progress=True: _results(0.7))
    _fail_writes_to(monkeypatch, out)                             # results.json and the fallback beside it fail
    assert cli_main(["run", "--quiet", "--out", str(out), "--overwrite"]) == 2
    captured = capsys.readouterr()
    assert "coda" in captured.out                                 # the table was printed first
    (line,) = [x for x in captured.err.splitlines() if x.startswith("coda-sim: error")]
    assert "Traceback" not in captured.err
    prefix = f"coda-sim: error: cannot write {out / 'results.json'}: No space left on device; the results are in "
    assert line.startswith(prefix)
    fallback = Path(line[len(prefix):])
    assert fallback.parent == Path(tempfile.gettempdir())
    assert json.loads(fallback.read_text())["methods"]["coda"]["auc"] == 0.7
    assert (out / "results.json").read_text() == '{"earlier": true}\n'
    fallback.unlink()


@pytest.mark.slow
def test_a_file_size_limit_in_a_subprocess_ends_with_the_fallback_path(tmp_path):
    """``ulimit -f`` (RLIMIT_FSIZE, SIGXFSZ ignored): results.json cannot be written; its compact fallback,
    smaller, can; the CLI ends with rc 2 and the fallback's path, no traceback, the earlier file intact."""
    from conftest import tiny_config
    import yaml
    from coda_jax.config import to_dict

    cfg = tmp_path / "tiny.yaml"
    d = to_dict(tiny_config())
    d["methods"] = ["local", "coda"]
    d["eval"]["bootstrap"] = 20
    cfg.write_text(yaml.safe_dump(d))
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}\n')
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from coda_jax.results import Results
        real = Results.save
        def save(self, out_dir):       # the limit between the compact and the indented size of these results
            from coda_jax.results_io import dumps_strict
            small, big = len(dumps_strict(self.to_json(), None)) + 1, len(dumps_strict(self.to_json(), 1)) + 1
            assert small < big, (small, big)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, ((small + big) // 2, resource.RLIM_INFINITY))
            return real(self, out_dir)
        Results.save = save
        from sims.cli import main
        sys.exit(main(["run", "--quiet", "--no-compile-cache", "--config", {str(cfg)!r}, "--out", {str(out)!r},
                       "--overwrite"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    prefix = f"coda-sim: error: cannot write {out / 'results.json'}: File too large; the results are in "
    assert last.startswith(prefix), proc.stderr
    fallback = Path(last[len(prefix):])
    methods = set(json.loads(fallback.read_text())["methods"])
    assert fallback.parent == out and methods == {"local", "coda", "coarse-subset"}     # coda adds its control
    assert (out / "results.json").read_text() == '{"earlier": true}\n'
