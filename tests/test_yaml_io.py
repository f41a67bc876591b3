"""`yaml_io.load_yaml`: libyaml's safe loader where present, the same data, lines and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from veerkracht_bayes.errors import VeerkrachtError
from veerkracht_bayes.resources import shipped_root
from veerkracht_bayes.yaml_io import load_yaml

SHIPPED = [shipped_root("priors") / "marvel.yaml", shipped_root("data") / "synthetic" / "codebook_synthetic.yaml"]


def _pure_python_line(text: str, key: str) -> int:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for k, _ in node.value:
        if k.value == key:
            return k.start_mark.line + 1
    raise KeyError(key)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).name)
def test_shipped_files_load_as_safe_load_reads_them(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    doc = load_yaml(path)
    assert doc.data == yaml.safe_load(text)
    last = list(doc.data)[-1]
    assert doc.line_of([last]) == _pure_python_line(text, last)


def test_python_tags_are_refused_with_file_and_line() -> None:
    with pytest.raises(VeerkrachtError, match="no Python object tags") as err:
        load_yaml("evil.yaml", text="a: 1\nx: !!python/object/apply:os.system ['true']\n")
    assert "evil.yaml:2:" in str(err.value)


def test_malformed_yaml_reports_the_pure_python_message_and_line() -> None:
    text = "edges:\n  - source: a\n    target: b\n - source: c\n"
    with pytest.raises(yaml.YAMLError) as ref:
        yaml.safe_load(text)
    with pytest.raises(VeerkrachtError) as err:
        load_yaml("bad.yaml", text=text)
    msg = str(err.value)
    assert ref.value.problem in msg
    assert f"bad.yaml:{ref.value.problem_mark.line + 1}:" in msg
