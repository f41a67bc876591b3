"""The package's import rules (ARCHITECTURE.md), read from the source with :mod:`ast`.

- Layers, top to bottom: foundation (errors, yaml_io, resources, runtime, programs) -> graph -> priors ->
  survey -> datasets -> sem -> inference -> causal -> report -> workflow -> cli. A module imports
  only from its own layer or layers above it (lazy imports inside functions included; imports
  under ``if TYPE_CHECKING:`` are type hints, not imports, and are left out).
- graph/, priors/, survey/ and causal/ never import PyMC or PyTensor; sem/ never imports
  inference/; report/ never imports workflow/; no library module imports cli/.
- No import cycles between modules.
- Importing the package or any module changes no process-wide JAX/XLA setting.
- Tests use no private name of the package (``_x`` imported, read as ``module._x`` or patched).
- No module of the package uses a private name of another module; a private module (``p._m``)
  is private to its package ``p`` and may be imported by the modules inside ``p``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "veerkracht_bayes"
LAYERS = ["foundation", "graph", "priors", "survey", "sem", "datasets", "inference", "causal", "report",
          "workflow", "api", "cli"]
FOUNDATION = {"errors", "yaml_io", "resources", "runtime", "programs", "_lazy"}
NO_PYMC = {"graph", "priors", "survey", "causal"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "veerkracht_bayes":
        return None
    if len(parts) == 1:
        return "api"  # the package's own __init__ re-exports the public API
    sub = parts[1]
    if sub in FOUNDATION or sub.startswith("__"):
        return "foundation"  # includes package metadata such as __version__
    return sub if sub in LAYERS else "api"  # a public name of the package root


def _runtime_imports(tree: ast.AST) -> list[tuple[str, int]]:
    """(module, line) of every import not under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "veerkracht_bayes":  # `from veerkracht_bayes import x` is judged by x
                out.append((node.module, node.lineno))
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append(("<relative>", node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
IMPORTS = {m: _runtime_imports(ast.parse(p.read_text(encoding="utf-8"))) for m, p in MODULES.items()}


def test_layers_only_import_upwards() -> None:
    bad = []
    for mod, imps in IMPORTS.items():
        lm = _layer(mod)
        for target, line in imps:
            if target == "<relative>":
                bad.append(f"{MODULES[mod]}:{line}: relative import (use absolute imports)")
                continue
            lt = _layer(target)
            if lm is None or lt is None or lm == lt or lm == "api":
                continue
            if LAYERS.index(lt) > LAYERS.index(lm):
                bad.append(f"{MODULES[mod]}:{line}: {mod} ({lm}) imports {target} ({lt}), a lower layer")
    assert not bad, "\n".join(bad)


def test_named_rules() -> None:
    bad = []
    for mod, imps in IMPORTS.items():
        lm = _layer(mod)
        for target, line in imps:
            top = target.split(".")[0]
            lt = _layer(target)
            where = f"{MODULES[mod]}:{line}"
            if lm in NO_PYMC and top in ("pymc", "pytensor"):
                bad.append(f"{where}: {lm}/ must not import {top}")
            if lm == "sem" and lt == "inference":
                bad.append(f"{where}: sem/ must not import inference/")
            if lm == "report" and lt == "workflow":
                bad.append(f"{where}: report/ must not import workflow/")
            if lm != "cli" and lt == "cli":
                bad.append(f"{where}: library module imports cli/")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    g = nx.DiGraph()
    for mod, imps in IMPORTS.items():
        if mod == "veerkracht_bayes" or mod.endswith(".cli"):
            continue  # package __init__ files that only re-export
        for target, _ in imps:
            if target in MODULES and target != mod and not MODULES[target].name == "__init__.py":
                g.add_edge(mod, target)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


@pytest.mark.parametrize("target", ["veerkracht_bayes", "veerkracht_bayes.causal.do",
                                    "veerkracht_bayes.causal.dynamics", "veerkracht_bayes.inference.sampling",
                                    "veerkracht_bayes.workflow.pipeline", "veerkracht_bayes.cli"])
def test_import_changes_no_global_state(target: str) -> None:
    code = (
        "import os\n"
        "before = os.environ.get('XLA_FLAGS')\n"
        f"import {target}\n"
        "import jax\n"
        "assert os.environ.get('XLA_FLAGS') == before, os.environ.get('XLA_FLAGS')\n"
        "assert not jax.config.jax_enable_x64, 'x64 switched on at import'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_notebooks_use_public_namespaces() -> None:
    """Notebooks import ``veerkracht_bayes`` itself, subpackage namespaces or foundation modules:
    never a module deep inside a subpackage, never the CLI, never a private name."""
    root = PKG.parents[1] / "notebooks"
    bad = []
    for nb in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(nb.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("veerkracht_bayes"):
                parts = node.module.split(".")
                deep = len(parts) > 2 or (len(parts) == 2 and parts[1] not in LAYERS + sorted(FOUNDATION))
                private = [a.name for a in node.names if a.name.startswith("_")]
                if deep or parts[1:2] == ["cli"] or private:
                    bad.append(f"{nb.name}:{node.lineno}: from {node.module} import ...")
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    """``_x`` is private; dunders (``__file__``) and protocol names (``_repr_html_``) are not."""
    return name.startswith("_") and not name.endswith("_")


def _private_module_parts(module: str, importer: str | None) -> int:
    """How many private components of the dotted ``module`` are out of ``importer``'s reach: a
    private module ``p._m`` may be imported by the modules inside package ``p`` (``importer``
    None: by none, as for tests)."""
    parts = module.split(".")
    n = 0
    for i, p in enumerate(parts):
        package = ".".join(parts[:i])
        inside = importer is not None and (importer == package or importer.startswith(package + "."))
        n += _private(p) and not inside
    return n


def _private_uses(tree: ast.AST, importer: str | None = None) -> list[tuple[int, str]]:
    """(line, what) of every use of a private name of a ``veerkracht_bayes`` module: ``from
    veerkracht_bayes.m import _x``, ``import veerkracht_bayes._m``, ``alias._x`` where ``alias``
    is bound to a package module or name by an import, and ``setattr(alias, "_x", ...)``
    (``monkeypatch.setattr`` included). ``importer``: the dotted name of the module the tree is
    from, whose own package's private modules it may import (None for a test file)."""
    bound: set[str] = set()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "veerkracht_bayes":
            out += [(node.lineno, f"from {node.module} import {a.name}") for a in node.names if _private(a.name)]
            out += [(node.lineno, f"from {node.module} ...")] * _private_module_parts(node.module, importer)
            bound.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "veerkracht_bayes":
                    out += [(node.lineno, f"import {a.name}")] * _private_module_parts(a.name, importer)
                    bound.add(a.asname or "veerkracht_bayes")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute) and not _private(base.attr):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                out.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and len(node.args) >= 2
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("setattr", "delattr")
              and isinstance(node.args[0], ast.Name) and node.args[0].id in bound
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _private(node.args[1].value)):
            out.append((node.lineno, f"{ast.unparse(node.func)}({node.args[0].id}, {node.args[1].value!r}, ...)"))
    return out


def test_tests_use_no_private_name_of_the_package() -> None:
    """Tests reach the package through public names only (a helper worth testing gets a public
    name in its module); ``tests/_*.py`` helpers are the tests' own and may be imported."""
    root = PKG.parents[1] / "tests"
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, what in _private_uses(ast.parse(path.read_text(encoding="utf-8"))):
            bad.append(f"{path.relative_to(root.parent)}:{line}: {what}")
    assert not bad, "tests use private names of the package:\n" + "\n".join(bad)


def test_private_name_check_can_fail() -> None:
    """The check above finds each form of private use."""
    src = ("import veerkracht_bayes.workflow.pipeline as p\n"
           "from veerkracht_bayes.inference import jax_nuts\n"
           "from veerkracht_bayes.survey.reading import (\n    read_survey,\n    _helper,\n)\n"
           "p._steps\njax_nuts._cache.clear()\nmonkeypatch.setattr(jax_nuts, '_flag', 1)\n"
           "p.__file__\nread_survey._repr_html_\nother._private\n")
    found = sorted(w for _, w in _private_uses(ast.parse(src)))
    assert found == ["from veerkracht_bayes.survey.reading import _helper", "jax_nuts._cache",
                     "monkeypatch.setattr(jax_nuts, '_flag', ...)", "p._steps"], found


# Private names of other modules that the package itself still uses, each with its reason.
# Keys are (module, use) as the check prints them; keep this list empty where possible.
PRIVATE_USE_ALLOWED: dict[tuple[str, str], str] = {}


def test_modules_use_no_private_name_of_another_module() -> None:
    """A helper one module shares with another gets a public name (docstring, ``__all__``) in
    the module that owns it; no module imports, reads or patches another module's ``_x``."""
    bad, used = [], set()
    for mod, path in MODULES.items():
        for line, what in _private_uses(ast.parse(path.read_text(encoding="utf-8")), importer=mod):
            if (mod, what) in PRIVATE_USE_ALLOWED:
                used.add((mod, what))
                continue
            bad.append(f"{path.relative_to(PKG.parents[1])}:{line}: {what}")
    assert not bad, "modules use private names of other modules:\n" + "\n".join(bad)
    stale = sorted(set(PRIVATE_USE_ALLOWED) - used)
    assert not stale, f"allow-list entries no longer needed (remove them): {stale}"


def test_private_module_rule_can_fail() -> None:
    """Inside ``veerkracht_bayes`` a package-private module is fine; another module's ``_x`` is not,
    nor a subpackage's private module imported from outside that subpackage."""
    src = ("from veerkracht_bayes._lazy import attach\n"
           "from veerkracht_bayes.sem._kernels import solve\n"
           "from veerkracht_bayes.sem.lavaan_model import _helper, specify\n"
           "import veerkracht_bayes.causal.do as do\n"
           "do._private_helper\n")
    found = sorted(w for _, w in _private_uses(ast.parse(src), importer="veerkracht_bayes.graph.spec"))
    assert found == ["do._private_helper", "from veerkracht_bayes.sem._kernels ...",
                     "from veerkracht_bayes.sem.lavaan_model import _helper"], found
    inside = sorted(w for _, w in _private_uses(ast.parse(src), importer="veerkracht_bayes.sem.ordinal"))
    assert "from veerkracht_bayes.sem._kernels ..." not in inside


def test_the_fit_path_does_not_import_scipy_stats() -> None:
    """``scipy.stats`` costs 0.4-1 s of import, a fifth of the README's first result after the warmup.

    The modules a ``vb.fit`` of the shipped survey loads, the codebook's ``log`` transform and the
    reliability conversion of a binary item, and the NumPy log prior of the posterior, run without
    it (the frozen distributions of ``priors.spec`` and the ``rank_normal`` transform import it
    when they are used).
    """
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import veerkracht_bayes.api, veerkracht_bayes.inference.sampling, veerkracht_bayes.inference.jax_nuts\n"
        "import veerkracht_bayes.inference.polychoric_fit, veerkracht_bayes.survey.statistics\n"
        "from veerkracht_bayes.priors.spec import load_priors, marvel_priors_path\n"
        "from veerkracht_bayes.graph.causal_graph import load_graph\n"
        "from veerkracht_bayes.survey.codebook import apply_transform, observed_scale_reliability\n"
        "load_priors(marvel_priors_path(), load_graph('marvel'))\n"
        "apply_transform(np.array([1.0, 2.0]), 'log')\n"
        "observed_scale_reliability(0.8, [0.85, 0.15])\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats was imported'\n"
        "apply_transform(np.array([1.0, 2.0]), 'rank_normal')\n"
        "assert 'scipy.stats' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
