"""The public API: the names ``import veerkracht_bayes as vb`` gives, their docstring examples
(run as doctests), the front doors' refusals, and CLI habits (--version, simulate's refusal)."""

from __future__ import annotations

import doctest
import importlib
import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

import veerkracht_bayes as vb
from veerkracht_bayes.cli import app
from veerkracht_bayes.errors import ModelError

PUBLIC = ["load_graph", "load_priors", "read_survey", "load_policies", "fit", "do", "trajectories", "run",
          "brief", "draw", "Shift", "Set", "MechanismChange", "Intervention", "Outcome", "configure"]


def test_public_names() -> None:
    assert set(PUBLIC) <= set(vb.__all__)
    for name in PUBLIC:
        obj = getattr(vb, name)
        assert obj.__doc__, f"vb.{name} has no docstring"


SUBPACKAGES = ["graph", "priors", "survey", "sem", "datasets", "inference", "causal", "report", "workflow"]


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_namespace_lists_its_modules_all(package: str) -> None:
    """Each subpackage's lazy namespace holds exactly the names of its modules' ``__all__``, each
    resolving to that module's object (reference: every module parsed whole)."""
    import ast

    pkg = importlib.import_module(f"veerkracht_bayes.{package}")
    expected: dict[str, str] = {}
    for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
        if path.name.startswith("_"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                for name in ast.literal_eval(node.value):
                    expected.setdefault(name, path.stem)
    assert expected and dir(pkg) == sorted(expected)
    name, module = next(iter(expected.items()))
    assert getattr(pkg, name) is getattr(importlib.import_module(f"veerkracht_bayes.{package}.{module}"), name)


SRC = Path(vb.__file__).resolve().parent
MODULES = sorted(".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
                 for p in SRC.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    """Every docstring example of every module runs (doctest; ``# doctest: +SKIP`` only on
    examples that sample for more than a few seconds)."""
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} doctest(s) failed in {module}"


def _public_callables() -> dict[str, object]:
    """``module.name`` of every function and class in a module's ``__all__`` (judged where it is
    defined, so a re-export counts once), plus the ``vb`` API."""
    out: dict[str, object] = {f"veerkracht_bayes.{n}": getattr(vb, n) for n in PUBLIC}
    for module in MODULES:
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module:
                out[f"{module}.{name}"] = obj
    return out


def test_public_names_have_examples() -> None:
    """Every public function and class has a numpydoc ``Examples`` section (run by the test
    above). Names still without one are listed in ``tests/_docstring_backlog.py``; the list may
    only shrink: a listed name that gained examples must leave it."""
    from _docstring_backlog import WITHOUT_EXAMPLES

    public = _public_callables()
    lacking = {k for k, obj in public.items() if "Examples\n--------" not in (inspect.getdoc(obj) or "")}
    new = sorted(lacking - WITHOUT_EXAMPLES)
    assert not new, "public names without an Examples section:\n" + "\n".join(new)
    done = sorted((WITHOUT_EXAMPLES & set(public)) - lacking)
    assert not done, "these have examples now; remove them from tests/_docstring_backlog.py:\n" + "\n".join(done)


def test_fit_without_data_refuses() -> None:
    with pytest.raises(ModelError, match="prior_only=True"):
        vb.fit("marvel")


def test_prior_only_fit_and_do_label_nothing_data() -> None:
    f = vb.fit("marvel", prior_only=True, prior_draws=80, seed=3)
    eff = vb.do(f, vb.Shift(node="social_network", delta=0.5), outcomes=["wellbeing", "stress"])
    tab = eff.summary()
    assert {"mean", "lower", "upper", "p_meaningful", "p_positive", "p_stable", "evidence"} <= set(tab.columns)
    assert not (tab["evidence"] == "data").any()
    assert (tab["share_data"].fillna(0) == 0).all()
    s = f.summary()
    assert len(s) == len(f.graph.edges) and not (s["evidence"] == "data").any()


def test_cli_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("veerkracht-bayes ")


def test_simulate_refuses_non_empty_folder(tmp_path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["simulate", "--n", "50", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "truth.yaml").exists()


def test_fit_routes_ordinal_measurement_to_fit_ordinal(monkeypatch) -> None:
    """measurement="ordinal" hands the survey, the priors and one SamplerSettings to fit_ordinal and
    wraps its result in the same Fit as the continuous path."""
    import veerkracht_bayes.inference.ordinal_fit as ordinal_fit
    from veerkracht_bayes.inference.sampling import SamplerSettings

    seen = {}

    class Result:
        idata = None
        graph = None

    def fake(graph, survey, priors=None, *, settings=None, ordinal=None, **kw):
        seen.update(graph=graph, survey=survey, priors=priors, settings=settings, ordinal=ordinal)
        return Result()

    monkeypatch.setattr(ordinal_fit, "fit_ordinal", fake)
    survey = object()
    f = vb.fit("marvel", survey, measurement="ordinal", draws=30, tune=40, chains=3, seed=9,
               progress=False, reliability=0.7, prior_draws=20)
    assert isinstance(f, vb.api.Fit) and f.kind == "diagram" and f.survey is survey
    assert isinstance(f.result, Result) and seen["survey"] is survey
    assert seen["graph"].name == vb.load_graph("marvel").name and seen["priors"] is f.priors
    s = seen["settings"]
    assert isinstance(s, SamplerSettings)
    assert (s.draws, s.tune, s.chains, s.random_seed, s.prior_draws, s.progressbar) == (30, 40, 3, 9, 20, False)
    assert seen["ordinal"].reliability == 0.7


def test_fit_refuses_unknown_or_impossible_measurement() -> None:
    from veerkracht_bayes.errors import ConfigError

    with pytest.raises(ConfigError, match="measurement must be"):
        vb.fit("marvel", object(), measurement="likert")
    with pytest.raises(ConfigError, match="not 'vague'"):
        vb.fit("marvel", object(), measurement="ordinal", priors="vague")
