"""The README's quick start runs as written."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Quick start (Python)"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README quick start", "exec"), {})
    out = capsys.readouterr().out
    acc = float(re.search(r"accuracy ([0-9.]+)", out).group(1))
    assert acc > 0.8
    assert (tmp_path / "fashion.slim").exists()


def test_transformer_snippet_runs():
    """The README's transformer example converts, compresses and runs at a sequence length it was not traced at."""
    import pytest

    pytest.importorskip("transformers")
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Transformer encoders"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(compile(code, "README transformer example", "exec"), scope)
    assert scope["out"][0].shape == (1, 7, 384)
    kernels = {k for _, _, k in scope["slimrt"].Session(scope["q8"]).kernels()}
    assert "gather_int8" in kernels
