"""NUTS on JAX (blackjax or numpyro) with the data as arguments of the compiled program.

PyMC's own JAX bridge (``pm.sample(nuts_sampler="numpyro")``) bakes every data container
into the compiled program as a constant, so every new data set — even one of the same
shape — costs a fresh XLA compilation (6-10 s of a 10 s fit here). This module compiles the
model's log-density once per *model shape*, with the model's ``pm.Data`` containers (the
sufficient statistics, see :data:`veerkracht_bayes.sem.model_builder.DATA_PREFIX`) as inputs:

* within a process the compiled sampler is reused for any data of the same shape
  (refits, sensitivity analyses, test fixtures);
* across processes JAX's persistent compilation cache
  (:func:`veerkracht_bayes.inference.sampling.enable_compilation_cache`) finds the same program,
  because the program no longer depends on the data values; and the programs themselves are kept
  serialised (:mod:`veerkracht_bayes.programs`), so a new process neither converts the model to
  JAX nor traces the sampler (the chains run in chunks of iterations, with the progress bar
  advanced between them, so no program holds a host callback).

The NUTS implementation is ``JaxNutsSettings.kernel``: numpyro's (the default,
:class:`NumpyroChains`) or blackjax's (:class:`BlackjaxChains`). Both adapt the step size by dual averaging and the mass matrix in
Stan's windows and sample the same posterior. Chains run in parallel on separate XLA devices
(one per CPU core, :func:`veerkracht_bayes.runtime.ensure_cpu_devices`; on a GPU use
``chain_method="vectorized"``). The result has the same layout as PyMC's: constrained free
variables and deterministics with the model's dims and coords, and
``sample_stats`` with ``diverging``, ``energy``, ``n_steps``, ``tree_depth``,
``acceptance_rate``, ``lp`` and ``step_size``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from veerkracht_bayes.errors import ModelError
from veerkracht_bayes.runtime import register_program_cache, release_compiled_programs_if_needed

__all__ = ["JaxNutsSettings", "KERNELS", "BlackjaxChains", "NumpyroChains", "sample_nuts", "data_inputs",
           "data_values", "CompiledModel", "model_fingerprint", "compiled_sampler", "value_initvals",
           "chunk_length"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JaxNutsSettings:
    """NUTS settings for :func:`sample_nuts`.

    Examples
    --------
    >>> s = JaxNutsSettings(draws=500, tune=500, chains=2)
    >>> s.chain_method, s.target_accept
    ('parallel', 0.9)
    """

    draws: int = 500
    tune: int = 500
    chains: int = 2
    target_accept: float = 0.9
    dense_mass: bool = False
    max_tree_depth: int = 10
    chain_method: str = "parallel"
    progressbar: bool = False
    #: reciprocal link pairs sampled in (l_s, l_f) coordinates
    #: (:func:`~veerkracht_bayes.sem.preconditioning.reciprocal_log_pairs`)
    log_pairs: tuple[tuple[str, int, int], ...] = ()
    #: scale each coordinate by 1 / sqrt of the log-density's curvature at the starting points
    precondition: bool = True
    #: value variables already in unit-scale coordinates (e.g. whitened latent scores): no
    #: curvature is measured for them and each chain keeps its own start for them
    unit_scale: tuple[str, ...] = ()
    #: value variables left out of the returned posterior (e.g. per-respondent latent coordinates)
    exclude: tuple[str, ...] = ()
    #: rows per call of the batched gradient (curvature scale, start check); lower it for
    #: models whose gradient holds large per-respondent intermediates
    grad_chunk: int = 32
    #: the NUTS implementation: ``"numpyro"`` (numpyro's NUTS and warm-up) or ``"blackjax"``
    #: (:class:`BlackjaxChains`); see :data:`KERNELS`
    kernel: str = "numpyro"


#: NUTS implementations the driver runs. Both adapt a diagonal (or dense) mass matrix in Stan's
#: windows and the step size by dual averaging and sample the same posterior. numpyro's is the
#: default: on MARVEL (N = 20,000, 2 cores) the chains took the same wall time with either, and
#: the README's first result does not move (docs/performance.md section 7, "The NUTS kernel",
#: which also gives the ESS per second of each)
KERNELS = ("numpyro", "blackjax")


def data_inputs(model: Any) -> list[Any]:
    """The model's data containers passed as arguments (named ``DATA_PREFIX...``), sorted by name.

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> from veerkracht_bayes.sem.model_builder import DATA_PREFIX
    >>> with pm.Model() as model:
    ...     y = pm.Data(DATA_PREFIX + "y", np.array([0.1, -0.2]))
    ...     mu = pm.Normal("mu", 0.0, 1.0)
    ...     _ = pm.Potential("lik", -0.5 * ((y - mu) ** 2).sum())
    >>> [v.name for v in data_inputs(model)]
    ['data_y']
    """
    from veerkracht_bayes.sem.model_builder import DATA_PREFIX

    return sorted((v for v in model.data_vars if v.name.startswith(DATA_PREFIX)), key=lambda v: v.name)


def data_values(model: Any) -> list[np.ndarray]:
    """Current values of :func:`data_inputs` (the arguments of the compiled program).

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> from veerkracht_bayes.sem.model_builder import DATA_PREFIX
    >>> with pm.Model() as model:
    ...     y = pm.Data(DATA_PREFIX + "y", np.array([0.1, -0.2]))
    ...     mu = pm.Normal("mu", 0.0, 1.0)
    ...     _ = pm.Potential("lik", -0.5 * ((y - mu) ** 2).sum())
    >>> data_values(model)
    [array([ 0.1, -0.2])]
    """
    return [np.asarray(v.get_value(borrow=True)) for v in data_inputs(model)]


#: rows per call of the batched gradient (curvature scale, start check)
_GRAD_CHUNK = 32
#: XLA options for programs that run once, briefly (curvature, outputs): compile time dominates
#: (2.0 -> 1.3 s for the curvature on MARVEL), the code is somewhat slower
_QUICK_COMPILE = {"xla_backend_optimization_level": 0}
#: one worker thread that compiles the outputs program while the chains run
_BACKGROUND = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="veerkracht-compile")


class CompiledModel:
    """The model's log-density and its constrained outputs as JAX functions of (values, data).

    ``params`` are in the sampler's coordinates: the model's value variables, except that a
    value variable ``v`` with a data container ``DATA_PREFIX + WHITEN_PREFIX + v`` holding a
    lower-triangular ``T`` is represented by ``z`` with ``v = T z``
    (:mod:`~veerkracht_bayes.sem.preconditioning`), and the positions ``(a, b)`` of a value variable
    listed in ``log_pairs`` hold ``(l_s, l_f)`` of a reciprocal pair. The log-density is the
    model's at the mapped point; the constant ``log|det T|`` is left out (the pair map has
    Jacobian determinant -1).

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     s = pm.HalfNormal("s", 1.0)
    >>> import jax.numpy as jnp
    >>> comp = CompiledModel(model)
    >>> comp.shapes
    {'s_log__': ()}
    >>> round(float(comp.logp({"s_log__": jnp.asarray(0.0)}, [])), 4)  # log HalfNormal(1) at s = 1
    -0.7258
    """

    def __init__(self, model: Any, log_pairs: Sequence[tuple[str, int, int]] = (),
                 exclude: Sequence[str] = (), grad_chunk: int = _GRAD_CHUNK, key: str | None = None,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        from pymc.util import get_default_varnames

        from veerkracht_bayes.sem.model_builder import DATA_PREFIX
        from veerkracht_bayes.sem.preconditioning import WHITEN_PREFIX

        self.value_vars = list(model.value_vars)
        self.value_names = [v.name for v in self.value_vars]
        shared = data_inputs(model)
        self.data_names = [v.name for v in shared]
        stem = DATA_PREFIX + WHITEN_PREFIX
        self.whiten = {n[len(stem):]: i for i, n in enumerate(self.data_names)
                       if n.startswith(stem) and n[len(stem):] in self.value_names}
        self._graph_idx = [i for i, n in enumerate(self.data_names) if not n.startswith(stem)]
        self.pairs: dict[str, list[tuple[int, int]]] = {}
        for name, a, b in log_pairs:
            if name not in self.value_names:
                raise ModelError(f"log pair on {name!r}, which is not a value variable of the model")
            self.pairs.setdefault(name, []).append((int(a), int(b)))
        #: the key of the serialised programs (:func:`model_fingerprint`; None: not serialised)
        self.key = key
        self._hess_exec = None
        self._out_programs: dict[Any, Any] = {}
        self.grad_chunk = max(1, int(grad_chunk))
        outs = [v for v in model.unobserved_value_vars]
        names = list(get_default_varnames([v.name for v in outs], include_transformed=False))
        self._out_vars = [v for v in outs if v.name in names and v.name not in set(exclude)]
        self.out_names = [v.name for v in self._out_vars]
        if shapes is None:  # the model's initial point (compiles a PyTensor function: 0.1-0.3 s)
            ip = model.initial_point()
            shapes = {v.name: ip[v.name].shape for v in self.value_vars}
        elif set(shapes) != set(self.value_names):
            raise ModelError(f"shapes given for {sorted(shapes)}, the model's value variables are {self.value_names}")
        #: the value variables' shapes
        self.shapes = {v.name: tuple(int(s) for s in shapes[v.name]) for v in self.value_vars}
        self.dims = {n: model.named_vars_to_dims.get(n) for n in self.out_names}
        self._model: Any = model
        self._jax: tuple[Any, Any] | None = None

    def _functions(self) -> tuple[Any, Any]:
        """The log-density and the outputs as JAX functions (PyTensor's conversion, done on first use).

        A fit whose programs are all read back serialised never needs them.
        """
        if self._jax is None:
            import jax
            import pytensor.tensor as pt
            from pytensor.graph.replace import clone_replace

            from veerkracht_bayes.sem.jax_conversion import jaxify

            model = self._model
            shared = data_inputs(model)
            graph_shared = [shared[i] for i in self._graph_idx]
            syms = [pt.tensor(dtype=str(v.dtype), shape=v.type.shape, name=v.name + "_in") for v in graph_shared]
            repl = dict(zip(graph_shared, syms))
            logp = clone_replace([model.logp()], replace=repl)
            # first used while a program is traced: the constants the conversion makes must be
            # concrete arrays, not tracers of that program
            with jax.ensure_compile_time_eval():
                # jitted, so the PyTensor-generated function is traced once (the chains' programs
                # and the curvature gradient each trace the log-density: 0.2-0.4 s each on MARVEL)
                f_logp = jax.jit(jaxify(inputs=self.value_vars + syms, outputs=logp))
                f_outs = jaxify(inputs=self.value_vars + syms,
                                outputs=clone_replace(self._out_vars, replace=repl))
            self._jax = (f_logp, f_outs)
            self._model = None
        return self._jax

    def _outputs_hash(self) -> str:
        import pytensor

        text = pytensor.printing.debugprint(self._out_vars, file="str", print_type=True)
        return hashlib.sha256(f"{self.out_names}|{text}".encode()).hexdigest()

    def _program(self, name: str, fn: Any, specs: Sequence, **kwargs: Any) -> Any:
        from veerkracht_bayes.programs import serialised_program

        return serialised_program(name, self.key, fn, specs, **kwargs)

    def to_value(self, params: dict, data: Sequence) -> dict:
        """Sampler coordinates -> the model's value variables (JAX)."""
        from veerkracht_bayes.sem.preconditioning import pair_to_value

        out = dict(params)
        for k, pairs in self.pairs.items():
            out[k] = pair_to_value(out[k], pairs)
        for k, i in self.whiten.items():
            out[k] = out[k] @ data[i].T
        return out

    def from_value(self, values: dict, data: Sequence) -> dict:
        """Value-space arrays (leading axes allowed) -> the sampler's coordinates (NumPy)."""
        from scipy.linalg import solve_triangular

        from veerkracht_bayes.sem.preconditioning import pair_from_value

        out = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        for k, i in self.whiten.items():
            v = out[k]
            out[k] = solve_triangular(np.asarray(data[i]), v.reshape(-1, v.shape[-1]).T, lower=True).T.reshape(v.shape)
        for k, pairs in self.pairs.items():
            out[k] = pair_from_value(out[k], pairs)
        return out

    def _args(self, params: dict, data: Sequence) -> list:
        vals = self.to_value(params, data)
        return [vals[k] for k in self.value_names] + [data[i] for i in self._graph_idx]

    def start_near(self, center: dict, fallback: dict, scale: dict, data: Sequence, seed: int,
                   spread: float = 2.0, keep: Sequence[str] = ()) -> dict:
        """Chain starts ``center + spread * scale * N(0, 1)`` (``center`` one point, leading axis 1).

        ``spread`` is in units of the curvature scale (about a conditional posterior sd); the
        variables in ``keep`` keep each chain's ``fallback`` value. A chain whose start has a
        non-finite gradient keeps its ``fallback`` start.
        """
        n_chain = int(np.shape(next(iter(fallback.values())))[0])
        rng = np.random.default_rng(seed)
        out = {k: np.array(v, dtype=float, copy=True) for k, v in fallback.items()}
        cand = {k: np.asarray(center[k])[0][None] + spread * np.asarray(scale[k])[None]
                * rng.standard_normal((n_chain,) + np.shape(scale[k])) for k in fallback}
        cand.update({k: np.asarray(fallback[k], dtype=float) for k in keep if k in fallback})
        flat = np.stack([_ravel({k: v[c] for k, v in cand.items()}) for c in range(n_chain)])
        g = self._grads(flat, data)
        for c in range(n_chain):
            if np.isfinite(g[c]).all():
                for k in out:
                    out[k][c] = cand[k][c]
            else:
                log.info("chain %d: no finite gradient near the scale point; it starts at its own start", c)
        return out

    def _grads(self, flat: np.ndarray, data: Sequence) -> np.ndarray:
        """Gradients at the rows of ``flat`` (flattened sampler coordinates), in fixed-size chunks.

        One compiled program for any number of rows (the curvature's and the start check's);
        within a chunk the rows are evaluated one after the other, so memory is that of one
        gradient.
        """
        import jax
        from jax.flatten_util import ravel_pytree

        rows = flat.shape[0]
        chunk = self.grad_chunk
        padded = np.resize(flat, (-(-rows // chunk) * chunk, flat.shape[1]))
        if self._hess_exec is None:  # compiled for speed of compilation: it runs ~0.5 s, once
            unravel = _unraveler(self.shapes)

            def grad_flat(f: Any, *d: Any) -> Any:
                return ravel_pytree(jax.grad(lambda q: self.logp(q, d))(unravel(f)))[0]

            # rows one after the other inside one program (lax.map), not vmapped: a batched
            # gradient cost 9x more per row here (batched small matrix products) and compiled slower
            specs = (jax.ShapeDtypeStruct((chunk, flat.shape[1]), np.float64),
                     *(jax.ShapeDtypeStruct(tuple(d.shape), d.dtype) for d in data))
            self._hess_exec = self._program(
                "gradients", lambda r, *d: jax.lax.map(lambda f: grad_flat(f, *d), r), specs,
                compiler_options=_QUICK_COMPILE)
        # NumPy rows go in as they are (jnp.asarray would compile a copy program per shape)
        out = [np.asarray(self._hess_exec(padded[i:i + chunk], *data))
               for i in range(0, padded.shape[0], chunk)]
        return np.concatenate(out)[:rows]

    def curvature_scale(self, points: dict, data: Sequence, unit: Sequence[str] = ()) -> tuple[dict, float]:
        """``1 / sqrt(-d2 logp / dx_i2)`` per sampler coordinate, averaged over ``points``.

        Central differences of the gradient (``2 x`` coordinates gradients per point, in
        batched calls). A coordinate with non-positive curvature at the points gets the
        median scale of its variable. Used as a fixed diagonal preconditioner: NUTS then starts
        its adaptation from about the right scales instead of from an identity mass matrix.
        Variables in ``unit`` get scale 1 without being measured. Returns the scales and the
        fraction of measured coordinates with a finite positive curvature.
        """
        # flattening and unflattening in NumPy outside the traced gradient: each eager jnp call
        # on a new shape is a program of its own to compile or to read from the cache
        unravel = _unraveler({k: np.shape(v)[1:] for k, v in points.items()})
        n_chain = int(np.shape(next(iter(points.values())))[0])
        flats = np.stack([_ravel({k: v[c] for k, v in points.items()}) for c in range(n_chain)])
        n = flats.shape[1]
        measured = np.concatenate([np.full(int(np.size(points[k][0])), k not in unit)
                                   for k in sorted(points)])  # ravel_pytree's order: sorted keys
        idx = np.flatnonzero(measured)
        h = 1e-4 * np.maximum(1.0, np.abs(flats))  # (chains, n)
        step = np.zeros((idx.size, n))
        step[np.arange(idx.size), idx] = 1.0
        pts = np.concatenate([np.concatenate([f[None] + step * hc, f[None] - step * hc]) for f, hc in zip(flats, h)])
        g = self._grads(pts, data).reshape(n_chain, 2, idx.size, n)
        rows = np.arange(idx.size)
        curv_m = -(g[:, 0, rows, idx] - g[:, 1, rows, idx]) / (2 * h[:, idx])
        curv = np.full(n, np.nan)
        curv[idx] = curv_m.mean(axis=0)
        ok = np.isfinite(curv) & (curv > 0)
        scale = np.ones(n)
        scale[ok] = 1.0 / np.sqrt(curv[ok])
        out = {k: np.array(v) for k, v in unravel(scale).items()}
        okd = {k: np.asarray(v) > 0.5 for k, v in unravel(ok.astype(float)).items()}
        fallback = float(np.median(scale[ok])) if ok.any() else 1.0
        for k, v in out.items():
            if k in unit:
                continue
            bad = ~okd[k]
            if bad.any():
                v[bad] = float(np.median(v[~bad])) if (~bad).any() else fallback
        return out, float(ok[idx].mean()) if idx.size else 1.0

    def outputs_program(self, n_draws: int, data: Sequence) -> Any:
        """A callable returning the compiled per-draw outputs program for ``n_draws`` draws.

        The program is lowered and compiled in a background thread (XLA compiles without the
        GIL), so its compilation overlaps the chains' own (about 1 s of a cold MARVEL fit);
        compiled programs are kept per number of draws.
        """
        import jax

        from veerkracht_bayes.programs import serialised_program

        key = (n_draws, tuple((tuple(d.shape), str(d.dtype)) for d in data))
        if key not in self._out_programs:
            spec = {k: jax.ShapeDtypeStruct((n_draws,) + tuple(shape), np.float64) for k, shape in self.shapes.items()}
            dspec = [jax.ShapeDtypeStruct(d.shape, d.dtype) for d in data]

            def per_draw(p: Any, *d: Any) -> Any:
                return jax.vmap(lambda q: self.outputs(q, d))(p)

            # the outputs (deterministics) are not all in the log-density's graph: theirs joins the key
            key_out = None if self.key is None else f"{self.key}|{self._outputs_hash()}"
            self._out_programs[key] = _BACKGROUND.submit(
                lambda: serialised_program("outputs", key_out, per_draw, (spec, *dspec),
                                           compiler_options=_QUICK_COMPILE))
        future: concurrent.futures.Future = self._out_programs[key]
        return future.result

    def logp(self, params: dict, data: Sequence) -> Any:
        return self._functions()[0](*self._args(params, data))[0]

    def outputs(self, params: dict, data: Sequence) -> list:
        return self._functions()[1](*self._args(params, data))


def _ravel(point: dict) -> np.ndarray:
    """Arrays by name -> one flat NumPy vector, names sorted (``ravel_pytree``'s order), no JAX."""
    return np.concatenate([np.ravel(np.asarray(point[k], dtype=float)) for k in sorted(point)] or [np.zeros(0)])


def _unraveler(shapes: dict) -> Any:
    """The inverse of :func:`_ravel` for these shapes, over the last axis (leading axes kept, e.g.
    chains and draws); works on NumPy arrays and JAX tracers."""
    keys = sorted(shapes)
    sizes = [int(np.prod(shapes[k], dtype=int)) for k in keys]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    def unravel(flat: Any) -> dict:
        return {k: flat[..., starts[i]:starts[i + 1]].reshape(tuple(flat.shape[:-1]) + tuple(shapes[k]))
                for i, k in enumerate(keys)}

    return unravel


def model_fingerprint(model: Any, settings: JaxNutsSettings) -> str:
    """A key that identifies the compiled program: the model graph (with constants) and settings.

    The data containers' *values* are excluded (they are arguments); their shapes are included.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     s = pm.HalfNormal("s", 1.0)
    >>> key = model_fingerprint(model, JaxNutsSettings(draws=10, tune=10, chains=1))
    >>> len(key), key == model_fingerprint(model, JaxNutsSettings(draws=20, tune=10, chains=1))
    (64, False)
    """
    import pytensor
    from pytensor.graph.traversal import ancestors

    from veerkracht_bayes.sem.model_builder import DATA_PREFIX

    h = hashlib.sha256()
    logp = model.logp()
    h.update(pytensor.printing.debugprint(logp, file="str", print_type=True).encode())
    for v in ancestors([logp]):
        data = getattr(v, "data", None)
        if data is not None:
            h.update(np.ascontiguousarray(np.asarray(data)).tobytes())
        if hasattr(v, "get_value"):
            val = np.asarray(v.get_value(borrow=True))
            if v.name and v.name.startswith(DATA_PREFIX):
                h.update(repr(val.shape).encode())
            else:
                h.update(np.ascontiguousarray(val).tobytes())
    # the reported variables and their dims (not all of them are in the log-density's graph)
    h.update(repr(sorted(model.named_vars)).encode())
    h.update(repr(sorted((k, tuple(v or ())) for k, v in model.named_vars_to_dims.items())).encode())
    h.update(repr(sorted(settings.__dict__.items())).encode())
    return h.hexdigest()


class _StartAt:
    """numpyro init strategy returning the values set before each run.

    numpyro checks a model's starting point by drawing its *init strategy's* values (by
    default uniform on (-2, 2) in the unconstrained space, 100 tries) before it uses the
    ``init_params`` passed to ``init``; with stability and standardisation barriers most such
    points have zero density and the check fails at random ("Cannot find valid initial
    parameters"). The check is made at our own valid starting point instead.

    The point reaches the strategy as an *argument* of the model (set while the model runs,
    read when numpyro asks for a site's value), so it is a traced input of the compiled program,
    not a constant: new starting points (another seed, other data) reuse the program.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, site: Any = None) -> Any:
        from numpyro.infer.initialization import init_to_value

        return init_to_value(site, values=self.values)


#: progress updates per run: the chains run in this many chunks of iterations
_PROGRESS_TICKS = 40


class _ProgressBar:
    """A ``tqdm.auto`` bar (terminal or Jupyter) over all chains' iterations (``None`` when off)."""

    def __init__(self, settings: JaxNutsSettings) -> None:
        self.settings = settings
        self.bar = None

    def __enter__(self) -> Any:
        if self.settings.progressbar:
            from tqdm.auto import tqdm

            s = self.settings
            self.bar = tqdm(total=s.chains * (s.tune + s.draws), unit="it", leave=False, dynamic_ncols=True,
                            desc=f"NUTS {s.chains} chain{'s' if s.chains > 1 else ''} x ({s.tune} warm-up + "
                                 f"{s.draws} draws)")
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def chunk_length(n_iter: int, ticks: int = _PROGRESS_TICKS) -> int:
    """Iterations per call of the chains' program: about ``n_iter / ticks``, a divisor of ``n_iter``
    where one is near (then no iteration of the last chunk is padding).

    Examples
    --------
    >>> chunk_length(2000), chunk_length(1500), chunk_length(1999), chunk_length(10)
    (50, 50, 50, 1)
    """
    base = max(1, -(-int(n_iter) // ticks))
    for length in range(base, 2 * base + 1):
        if n_iter % length == 0:
            return length
    return base


class _Chains:
    """NUTS chains run in chunks of iterations by two serialised programs, with data as inputs.

    ``init`` builds each chain's state from its start; ``chunk`` advances every chain by
    :func:`chunk_length` iterations and returns the draws and statistics of those iterations.
    Between chunks the host updates the progress bar, so the programs hold no host callback and
    can be serialised (:mod:`veerkracht_bayes.programs`): a new process deserialises
    them instead of converting the model to JAX and tracing the sampler. The data, the scale,
    the seed and the starts are arguments, so a new data set, seed or start of the same shape
    compiles nothing. Chains run on separate XLA devices (``"parallel"``, ``shard_map`` over a
    mesh of one device per chain), vectorised on one device (``"vectorized"``) or one after the
    other (``"sequential"``); the numbers are the same either way.

    Subclasses give one chain's ``_init_one(key, chain, x0, scale, start, data)`` and
    ``_chunk_one(state, key, chain, it0, scale, start, data)``; states are pytrees, passed between
    the programs as their list of leaves. Positions are the flat sampler coordinates divided by
    ``scale`` (the curvature scale of :meth:`CompiledModel.curvature_scale`).
    """

    #: per-iteration outputs of ``_chunk_one``, in this order
    fields = ("position", "diverging", "energy", "num_steps", "accept_prob", "potential_energy", "step_size")
    #: program names (part of the serialised programs' names)
    name = "chains"

    def __init__(self, comp: CompiledModel, settings: JaxNutsSettings, key: str | None = None) -> None:
        self.comp = comp
        self.settings = settings
        self.key = key
        self.unravel = _unraveler(comp.shapes)
        self.dim = int(sum(int(np.prod(s, dtype=int)) for s in comp.shapes.values()))
        self.n_iter = settings.tune + settings.draws
        self.length = chunk_length(self.n_iter)
        self.n_chunks = -(-self.n_iter // self.length)
        self._programs: dict[Any, tuple[Any, Any]] = {}

    # -- one chain (subclasses) -------------------------------------------------------------
    def _init_one(self, key: Any, chain: Any, x0: Any, scale: Any, start: Any, data: Sequence) -> Any:
        raise NotImplementedError

    def _chunk_one(self, state: Any, key: Any, chain: Any, it0: Any, scale: Any, start: Any,
                   data: Sequence) -> tuple[Any, tuple]:
        raise NotImplementedError

    def _logdensity(self, scale: Any, data: Sequence) -> Any:
        comp, unravel = self.comp, self.unravel
        return lambda x: comp.logp(unravel(x * scale), data)

    # -- all chains ---------------------------------------------------------------------------
    def _mesh(self) -> Any:
        import jax
        from jax.sharding import Mesh

        return Mesh(np.array(jax.devices()[:self.settings.chains]), ("chain",))

    def _over_chains(self, fn: Any, n_chain_args: int, n_shared: int) -> Any:
        """``fn(*per_chain, *shared)`` for one chain -> the same over a leading chain axis."""
        import jax

        def one_after_other(*args: Any) -> Any:
            per, shared = args[:n_chain_args], args[n_chain_args:]
            return jax.lax.map(lambda c: fn(*c, *shared), per)

        method = self.settings.chain_method
        if method == "vectorized":
            return jax.vmap(fn, in_axes=(0,) * n_chain_args + (None,) * n_shared)
        if method == "parallel":
            from jax.sharding import PartitionSpec

            # each device runs its own chain(s): no lockstep of the trees' while loops across chains
            # check_vma off: the kernels' conds mix per-chain values with constants they create
            return jax.shard_map(one_after_other, mesh=self._mesh(),
                                 in_specs=(PartitionSpec("chain"),) * n_chain_args + (PartitionSpec(),) * n_shared,
                                 out_specs=PartitionSpec("chain"), check_vma=False)
        return one_after_other

    def _specs(self, data: Sequence) -> tuple[list, list]:
        """Argument specs of ``init`` (per chain: chain, x0; shared: key, scale, start, data)."""
        import jax

        sd = jax.ShapeDtypeStruct
        c, d = self.settings.chains, self.dim
        per, shared = self._shardings()
        per_chain = [sd((c,), np.int32, sharding=per), sd((c, d), np.float64, sharding=per)]
        common = [sd((2,), np.uint32, sharding=shared), sd((d,), np.float64, sharding=shared),
                  sd((d,), np.float64, sharding=shared),
                  tuple(sd(tuple(x.shape), x.dtype, sharding=shared) for x in data)]
        return per_chain, common

    def _shardings(self) -> tuple[Any, Any]:
        if self.settings.chain_method != "parallel":
            return None, None
        from jax.sharding import NamedSharding, PartitionSpec

        mesh = self._mesh()
        return NamedSharding(mesh, PartitionSpec("chain")), NamedSharding(mesh, PartitionSpec())

    def _compiled(self, data: Sequence) -> tuple[Any, Any]:
        """The ``init`` and ``chunk`` programs for data like ``data`` (serialised, kept per shape)."""
        import jax

        from veerkracht_bayes.programs import serialised_program

        shape_key = tuple((tuple(x.shape), str(x.dtype)) for x in data)
        if shape_key in self._programs:
            return self._programs[shape_key]
        per_chain, common = self._specs(data)

        def init_fn(chain: Any, x0: Any, key: Any, scale: Any, start: Any, d: Sequence) -> list:
            def one(ch: Any, x: Any, k: Any, s: Any, st: Any, dd: Sequence) -> list:
                # strongly typed, as the chunk program's inputs are (state_specs)
                leaves = [jax.numpy.asarray(v) for v in jax.tree.leaves(self._init_one(k, ch, x, s, st, dd))]
                return [jax.lax.convert_element_type(v, v.dtype) for v in leaves]
            return self._over_chains(one, 2, 4)(chain, x0, key, scale, start, d)

        traced: list = []

        def state_specs() -> Any:
            # one chain's state, traced without running it (once): only when a program is traced
            if not traced:
                sd = jax.ShapeDtypeStruct
                plain = [sd(tuple(x.shape), x.dtype) for x in common[:3]] + [
                    tuple(sd(tuple(x.shape), x.dtype) for x in common[3])]
                traced.append(jax.eval_shape(self._init_one, plain[0], sd((), np.int32),
                                             sd((self.dim,), np.float64), plain[1], plain[2], plain[3]))
            return traced[0]

        def chunk_fn(leaves: list, chain: Any, it0: Any, key: Any, scale: Any, start: Any, d: Sequence) -> Any:
            treedef = jax.tree.structure(state_specs())

            def one(lv: list, ch: Any, i0: Any, k: Any, s: Any, st: Any, dd: Sequence) -> Any:
                state, outs = self._chunk_one(jax.tree.unflatten(treedef, lv), k, ch, i0, s, st, dd)
                return jax.tree.leaves(state), outs
            # it0 is per chain too (the same value), so every shared input is one of the four
            return self._over_chains(one, 3, 4)(leaves, chain, it0, key, scale, start, d)

        def chunk_specs() -> list:
            per, _ = self._shardings()
            c = self.settings.chains
            leaves = [jax.ShapeDtypeStruct((c,) + tuple(x.shape), x.dtype, sharding=per)
                      for x in jax.tree.leaves(state_specs())]
            return [leaves, per_chain[0], jax.ShapeDtypeStruct((c,), np.int32, sharding=per)] + common

        key = None if self.key is None else f"{self.key}|{self.settings.chain_method}|{self.length}"
        init = serialised_program(f"{self.name}-init", key, init_fn, per_chain + common)
        chunk = serialised_program(f"{self.name}-chunk", key, chunk_fn, chunk_specs,
                                   signature=str(per_chain + common))
        self._programs[shape_key] = (init, chunk)
        return init, chunk

    def run(self, seed: int, x0: np.ndarray, scale: np.ndarray, data: Sequence,
            bar: Any = None) -> tuple[np.ndarray, dict]:
        """Run the chains from the flat starts ``x0`` (chains, d) in coordinates ``x * scale``.

        Returns the draws (chains, draws, d) in the sampler's coordinates (scale applied) and
        the per-draw statistics by name (NumPy), with the warm-up's divergences and steps.
        ``bar`` (a tqdm-like object or None) advances after each chunk of iterations.
        """
        import jax

        jax.config.update("jax_enable_x64", True)  # as sample_nuts: the samplers run in 64 bits
        init, chunk = self._compiled(data)
        per, shared = self._shardings()
        c = self.settings.chains

        # committed placement (one device, or one per chain), as the chunks' own outputs are: the
        # chunk program then compiles once
        device = jax.devices()[0]

        def put(x: Any, sharding: Any) -> Any:
            return jax.device_put(x, sharding if sharding is not None else device)

        # the raw threefry key of the seed (what jax.random.PRNGKey gives), built in NumPy: an eager
        # JAX call here would compile a program of its own
        seed = int(seed)
        key = np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], dtype=np.uint32)
        scale = np.asarray(scale, dtype=float)
        start = np.asarray(x0, dtype=float) / scale
        chains = put(np.arange(c, dtype=np.int32), per)
        common = [put(key, shared), put(scale, shared), put(start[0], shared),
                  tuple(put(np.asarray(x), shared) for x in data)]
        leaves = init(chains, put(start, per), *common)
        pieces = []
        for k in range(self.n_chunks):
            it0 = put(np.full(c, k * self.length, dtype=np.int32), per)
            leaves, outs = chunk(leaves, chains, it0, *common)
            pieces.append([np.asarray(o) for o in outs])  # waits for the chunk
            if bar is not None:
                bar.update(c * (min(self.n_iter, (k + 1) * self.length) - k * self.length))
        out = {f: np.concatenate([p[i] for p in pieces], axis=1)[:, :self.n_iter]
               for i, f in enumerate(self.fields)}
        t = self.settings.tune
        return out["position"][:, t:] * scale, {
            "diverging": out["diverging"][:, t:], "energy": out["energy"][:, t:],
            "num_steps": out["num_steps"][:, t:], "accept_prob": out["accept_prob"][:, t:],
            "potential_energy": out["potential_energy"][:, t:], "step_size": out["step_size"][:, t:],
            "warmup_diverging": out["diverging"][:, :t], "warmup_num_steps": out["num_steps"][:, :t]}

    def _iterations(self, it0: Any, step: Any, state: Any) -> tuple[Any, tuple]:
        """``step(state, i)`` for the chunk's iterations ``it0 ... it0 + length - 1`` (a scan);
        iterations past the run's end (padding of the last chunk) leave the state as it is."""
        import jax

        idx = it0 + np.arange(self.length, dtype=np.int32)
        if self.n_iter % self.length == 0:
            return jax.lax.scan(step, state, idx)

        def guarded(st: Any, i: Any) -> Any:
            new, out = step(st, i)
            keep = i < self.n_iter
            return jax.tree.map(lambda a, b: jax.numpy.where(keep, a, b), new, st), out

        return jax.lax.scan(guarded, state, idx)


class BlackjaxChains(_Chains):
    """blackjax NUTS chains (window adaptation, then draws) with data as inputs (:class:`_Chains`).

    Each chain adapts the step size (dual averaging towards ``target_accept``, from 1.0) and a
    diagonal or dense mass matrix (Welford, from the identity) in Stan's windows for ``tune``
    iterations, then draws with blackjax's multinomial NUTS at the adapted settings. Because the
    position is in curvature-scaled coordinates, unit step size and mass matrix are about right
    from the start; like ``blackjax.window_adaptation`` there is no separate search for a first
    step size. Iteration ``i`` of chain ``c`` uses the ``i``-th of ``n_iter`` keys split from
    the seed's key folded with ``c``.

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     x = pm.Normal("x", 1.0, 2.0)
    >>> settings = JaxNutsSettings(draws=400, tune=300, chains=1, chain_method="sequential")
    >>> chains = BlackjaxChains(CompiledModel(model), settings)
    >>> draws, stats = chains.run(3, np.zeros((1, 1)), np.ones(1), [])
    >>> draws.shape, len(stats["diverging"][0]), len(stats["warmup_num_steps"][0])
    ((1, 400, 1), 400, 300)
    >>> bool(abs(draws.mean() - 1.0) < 0.5)
    True
    """

    name = "blackjax"

    def _parts(self) -> Any:
        from blackjax.adaptation.mass_matrix import mass_matrix_adaptation
        from blackjax.adaptation.step_size import dual_averaging_adaptation

        return mass_matrix_adaptation(not self.settings.dense_mass), dual_averaging_adaptation(self.settings.target_accept)

    def _init_one(self, key: Any, chain: Any, x0: Any, scale: Any, start: Any, data: Sequence) -> Any:
        import blackjax
        import jax.numpy as jnp

        (mm_init, _, _), (da_init, _, _) = self._parts()
        mm0 = mm_init(self.dim)
        ad0 = (da_init(1.0), mm0, jnp.asarray(1.0, dtype=x0.dtype), mm0.inverse_mass_matrix)
        return blackjax.nuts.init(x0, self._logdensity(scale, data)), ad0

    def _chunk_one(self, state: Any, key: Any, chain: Any, it0: Any, scale: Any, start: Any,
                   data: Sequence) -> tuple[Any, tuple]:
        """Iterations of one chain: while ``i < tune`` the adaptation (blackjax's dual averaging
        and Welford estimators on Stan's window schedule, ``build_schedule``) runs after each
        transition; from ``tune`` on the step size and mass matrix it ended with are held. The
        transition and the gradient appear once in the program."""
        import blackjax
        import jax
        import jax.numpy as jnp
        from blackjax.adaptation.window_adaptation import build_schedule

        s = self.settings
        (_, mm_update, mm_final), (da_init, da_update, da_final) = self._parts()
        nuts = blackjax.nuts.build_kernel()
        logdensity = self._logdensity(scale, data)
        # Stan's windows: stage 0 fast (step size only), 1 slow (mass matrix too); window ends
        # set the mass matrix and restart the step size's dual averaging; draws: stage -1
        with jax.ensure_compile_time_eval():  # a constant of the program (blackjax returns a jnp array)
            sched = (np.array(build_schedule(s.tune), dtype=np.int32).reshape(-1, 2) if s.tune
                     else np.zeros((0, 2), np.int32))
        pad = self.n_chunks * self.length - s.tune
        stage = jnp.asarray(np.concatenate([sched[:, 0], np.full(pad, -1, np.int32)]))
        window_end = jnp.asarray(np.concatenate([sched[:, 1], np.zeros(pad, np.int32)]).astype(bool))
        keys = jax.random.split(jax.random.fold_in(key, chain), self.n_iter)

        def adapt(carry: Any, x: Any, accept: Any, stg: Any, end: Any, last: Any) -> Any:
            da, mm, eps, imm = carry
            da = da_update(da, accept)
            mm = jax.lax.cond(stg == 1, lambda m: mm_update(m, x), lambda m: m, mm)
            eps = jnp.exp(da.log_step_size)

            def close_window(c: Any) -> Any:
                d, m, _, _ = c
                m = mm_final(m)
                d = da_init(da_final(d))
                return d, m, jnp.exp(d.log_step_size), m.inverse_mass_matrix

            da, mm, eps, imm = jax.lax.cond(end, close_window, lambda c: c, (da, mm, eps, imm))
            # after the last tuning iteration: the dual average of the step size (Stan's choice)
            eps = jnp.where(last, da_final(da), eps)
            return da, mm, eps, imm

        def step(carry: Any, i: Any) -> Any:
            st, ad = carry
            stg, end = stage[i], window_end[i]
            eps = ad[2]
            st, info = nuts(keys[jnp.minimum(i, self.n_iter - 1)], st, logdensity, eps, ad[3],
                            max_num_doublings=s.max_tree_depth)
            ad = jax.lax.cond(stg >= 0, lambda a: adapt(a, st.position, info.acceptance_rate, stg, end,
                                                        i == s.tune - 1), lambda a: a, ad)
            out = (st.position, info.is_divergent, info.energy, info.num_integration_steps,
                   info.acceptance_rate, -st.logdensity, eps)
            return (st, ad), out

        return self._iterations(it0, step, state)


class NumpyroChains(_Chains):
    """numpyro NUTS chains (its window adaptation, then draws) with data as inputs (:class:`_Chains`).

    numpyro's own ``NUTS`` kernel with its ``init`` and ``sample``, the loop that ``MCMC.run``
    would run written out, so that the chains are two serialisable programs: the same keys (the
    seed's key split over the chains), the same starts and the same transitions, so the draws
    equal ``MCMC.run``'s (``tests/inference/test_nuts_kernels.py``). The model numpyro sees has
    one improper flat site per value variable, scaled by the curvature scale, and the
    log-density as a factor.

    Examples
    --------
    >>> import numpy as np
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     x = pm.Normal("x", 1.0, 2.0)
    >>> settings = JaxNutsSettings(draws=400, tune=300, chains=1, chain_method="sequential")
    >>> draws, stats = NumpyroChains(CompiledModel(model), settings).run(3, np.zeros((1, 1)), np.ones(1), [])
    >>> draws.shape, bool(abs(draws.mean() - 1.0) < 0.5)
    ((1, 400, 1), True)
    """

    name = "numpyro"

    def _kernel(self) -> Any:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import NUTS

        shapes, comp, s = self.comp.shapes, self.comp, self.settings
        strategy = _StartAt()

        def numpyro_model(*args: Any) -> None:
            # the last arguments: the diagonal scale of each coordinate (an argument, not a
            # constant, so a new scale does not recompile), then the point numpyro checks
            # before it takes the chains' init_params (_StartAt)
            data, scale, start = args[:-2], args[-2], args[-1]
            strategy.values = start
            params = {k: numpyro.sample(k, dist.ImproperUniform(dist.constraints.real, (), shape)) * scale[k]
                      for k, shape in shapes.items()}
            numpyro.factor("logp", comp.logp(params, data))

        return NUTS(numpyro_model, target_accept_prob=s.target_accept, dense_mass=s.dense_mass,
                    max_tree_depth=s.max_tree_depth, init_strategy=strategy)

    def _key(self, key: Any, chain: Any) -> Any:
        import jax

        # MCMC.run: the seed's key itself for one chain, else split over the chains
        return jax.random.split(key, self.settings.chains)[chain] if self.settings.chains > 1 else key

    def _init_one(self, key: Any, chain: Any, x0: Any, scale: Any, start: Any, data: Sequence,
                  kernel: Any = None) -> Any:
        kernel = kernel or self._kernel()
        args = (*data, self.unravel(scale), self.unravel(start))
        state = kernel.init(self._key(key, chain), self.settings.tune, self.unravel(x0), model_args=args,
                            model_kwargs={})
        self._ready = kernel  # its transition is set up (for a chunk program traced next)
        return state

    def _chunk_one(self, state: Any, key: Any, chain: Any, it0: Any, scale: Any, start: Any,
                   data: Sequence) -> tuple[Any, tuple]:
        import jax.numpy as jnp

        # a kernel whose init has run sets up its transition (the adaptation schedule for `tune`
        # steps; the potential is rebuilt from the arguments of each `sample`): the one of the
        # init program or state specs traced before, else a fresh one initialised here (that
        # init's own result is not used, and XLA drops it from the program)
        kernel = getattr(self, "_ready", None)
        if kernel is None:
            kernel = self._kernel()
            self._init_one(key, chain, jnp.zeros(self.dim), scale, start, data, kernel=kernel)
        args = (*data, self.unravel(scale), self.unravel(start))
        keys = sorted(self.comp.shapes)

        def step(st: Any, i: Any) -> Any:
            st = kernel.sample(st, args, {})
            pos = jnp.concatenate([jnp.ravel(st.z[k]) for k in keys]) if keys else jnp.zeros(0)
            return st, (pos, st.diverging, st.energy, st.num_steps, st.accept_prob, st.potential_energy,
                        st.adapt_state.step_size)

        return self._iterations(it0, step, state)


_CACHE: dict[str, tuple[CompiledModel, Any]] = {}
register_program_cache(_CACHE.clear)


def compiled_sampler(model: Any, settings: JaxNutsSettings,
                     shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[CompiledModel, Any]:
    """The compiled log-density and the chains' runner for this model shape (cached).

    The runner is a :class:`NumpyroChains` (``settings.kernel == "numpyro"``) or a
    :class:`BlackjaxChains` (``"blackjax"``); its programs are serialised under the model's
    fingerprint (:mod:`veerkracht_bayes.programs`).

    A second model with the same :func:`model_fingerprint` (same graph and constants, data of the
    same shapes) gets the same objects back: nothing is compiled again. ``shapes`` (the value
    variables' shapes, e.g. from :func:`value_initvals`) spares :class:`CompiledModel` the model's
    initial point, a PyTensor function of its own.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     s = pm.HalfNormal("s", 1.0)
    >>> settings = JaxNutsSettings(draws=10, tune=10, chains=1, chain_method="sequential")
    >>> comp, chains = compiled_sampler(model, settings)
    >>> compiled_sampler(model, settings)[1] is chains
    True
    """
    if settings.kernel not in KERNELS:
        raise ModelError(f"unknown NUTS kernel {settings.kernel!r} (expected one of {', '.join(KERNELS)})")
    key = model_fingerprint(model, settings)
    if key in _CACHE:
        return _CACHE[key]
    release_compiled_programs_if_needed()
    comp = CompiledModel(model, settings.log_pairs, settings.exclude, settings.grad_chunk, key=key, shapes=shapes)
    runner = {"numpyro": NumpyroChains, "blackjax": BlackjaxChains}[settings.kernel](comp, settings, key)
    _keep(key, comp, runner)
    return comp, runner


def _keep(key: str, comp: CompiledModel, runner: Any) -> None:
    if len(_CACHE) > 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (comp, runner)


def value_initvals(model: Any, initvals: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Constrained starting values per chain -> value-space arrays stacked over chains.

    Examples
    --------
    >>> import pymc as pm
    >>> with pm.Model() as model:
    ...     s = pm.HalfNormal("s", 1.0)
    >>> value_initvals(model, [{"s": 1.0}, {"s": 2.0}])["s_log__"].round(4)
    array([0.    , 0.6931])
    """
    from pymc.initial_point import make_initial_point_fn

    points = []
    for iv in initvals:
        fn = make_initial_point_fn(model=model, overrides=dict(iv), jitter_rvs=set(), return_transformed=True)
        points.append(fn(0))
    return {k: np.stack([p[k] for p in points]) for k in points[0]}


def sample_nuts(model: Any, initvals: Sequence[dict[str, np.ndarray]], settings: JaxNutsSettings,
                random_seed: int, scale_points: Sequence[dict[str, np.ndarray]] = ()
                ) -> tuple[xr.Dataset, xr.Dataset, float]:
    """Sample a PyMC model with numpyro's NUTS, the data containers passed as arguments.

    Parameters
    ----------
    model
        A PyMC model whose data enter through ``pm.Data`` containers named with
        :data:`~veerkracht_bayes.sem.model_builder.DATA_PREFIX` (any others are compiled in as
        constants).
    initvals
        One dict of constrained starting values per chain (free random variables by name).
    settings
        NUTS settings.
    random_seed
        Seed of the chains' random keys.
    scale_points
        Candidate constrained points near the posterior at which to measure the curvature
        scale (``settings.precondition``); the first with a finite curvature in at least 90% of
        the coordinates is used, else the chains' starting points.

    Returns
    -------
    (posterior, sample_stats, sampling_seconds)
        Datasets with dims ``(chain, draw, ...)``; the time covers the curvature scale,
        warm-up and sampling (compilation included on the first call for a model shape).

    Examples
    --------
    Compiling and running the chains takes tens of seconds, so not run here:

    >>> import numpy as np
    >>> from veerkracht_bayes.graph.causal_graph import graph_from_lavaan
    >>> from veerkracht_bayes.inference.sampling import draw_prior, initial_values
    >>> from veerkracht_bayes.sem.model_builder import build_model
    >>> from veerkracht_bayes.survey.statistics import prepare_model_data
    >>> g = graph_from_lavaan("b ~ a")
    >>> md = prepare_model_data(np.random.default_rng(0).normal(size=(200, 4)), ["a1", "a2", "b1", "b2"],
    ...                         ["a", "a", "b", "b"])
    >>> model, layout = build_model(g, md)
    >>> prior = draw_prior(model, layout, g, 50, 1, md.x_cov)
    >>> post, stats, secs = sample_nuts(model, initial_values(model, layout, prior, 2, 1),
    ...                                 JaxNutsSettings(draws=40, tune=60, chains=2), 7)  # doctest: +SKIP
    >>> post["beta"].dims, "diverging" in stats  # doctest: +SKIP
    (('chain', 'draw', 'edge'), True)
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    if len(initvals) != settings.chains:
        raise ModelError(f"{len(initvals)} initial points for {settings.chains} chains")
    chain_method = settings.chain_method
    if chain_method == "parallel" and settings.chains > 1 and jax.local_device_count() < settings.chains:
        log.info("%d devices for %d chains: chains run one after the other", jax.local_device_count(),
                 settings.chains)
        chain_method = "sequential"
    if chain_method != settings.chain_method:
        settings = JaxNutsSettings(**{**settings.__dict__, "chain_method": chain_method})
    start = value_initvals(model, initvals)  # (chains, ...) per value variable
    comp, runner = compiled_sampler(model, settings, shapes={k: v.shape[1:] for k, v in start.items()})
    # device_put, not jnp.asarray: in this JAX, jnp.asarray of a NumPy array compiles a small copy
    # program per shape (about 25 of a MARVEL fit's 57 programs were such copies)
    data = tuple(jax.device_put(np.asarray(v)) for v in data_values(model))
    t0 = time.perf_counter()
    x0 = comp.from_value(start, data)
    if settings.precondition:
        scale = None
        for point in scale_points:
            xs = comp.from_value(value_initvals(model, [point]), data)
            scale, frac = comp.curvature_scale(xs, data, settings.unit_scale)
            if frac >= 0.9:
                break
            log.info("curvature scale: only %.0f%% of coordinates finite at a scale point", 100 * frac)
            scale = None
        if scale is None:
            scale, _ = comp.curvature_scale(x0, data, settings.unit_scale)
        else:
            x0 = comp.start_near(xs, x0, scale, data, int(random_seed), keep=settings.unit_scale)
    else:
        scale = {k: np.ones(v.shape[1:]) for k, v in x0.items()}
    outputs_fn = comp.outputs_program(settings.chains * settings.draws, data)  # compiles while the chains do
    # x0 holds one row per chain (value_initvals stacks them)
    flat0 = np.stack([_ravel({k: v[c] for k, v in x0.items()}) for c in range(settings.chains)])
    with _ProgressBar(settings) as bar:
        draws, extra = runner.run(int(random_seed), flat0, _ravel(scale), data, bar)
    samples = _unraveler(comp.shapes)(draws)
    # labels from this model: another model of the same fingerprint may name its nodes otherwise
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    return _assemble(comp, settings, samples, extra, outputs_fn, data, time.perf_counter() - t0, coords)


def _assemble(comp: CompiledModel, settings: JaxNutsSettings, samples: dict, extra: dict, outputs_fn: Any,
              data: Sequence, t_sample: float, labels: dict) -> tuple[xr.Dataset, xr.Dataset, float]:
    """Draws in the sampler's coordinates -> the model's variables and PyMC's sample_stats."""
    # constrained variables and deterministics, per draw
    # on the host: the chains' draws are spread over devices, the outputs program runs on one
    flat = {k: np.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
    outs = outputs_fn()(flat, *data)
    nc, nd = settings.chains, settings.draws
    data_vars = {}
    coords: dict[str, Any] = {"chain": np.arange(nc), "draw": np.arange(nd)}
    for name, arr in zip(comp.out_names, outs):
        arr = np.asarray(arr).reshape((nc, nd) + tuple(np.shape(arr)[1:]))
        dims = comp.dims.get(name) or tuple(f"{name}_dim_{i}" for i in range(arr.ndim - 2))
        dims = tuple(d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(dims))
        for d in dims:
            if d in labels:
                coords[d] = labels[d]
        data_vars[name] = (("chain", "draw") + dims, arr)
    post = xr.Dataset(data_vars, coords=coords)
    steps = np.asarray(extra["num_steps"])
    stats = xr.Dataset({
        "diverging": (("chain", "draw"), np.asarray(extra["diverging"], dtype=bool)),
        "energy": (("chain", "draw"), np.asarray(extra["energy"])),
        "n_steps": (("chain", "draw"), steps),
        "tree_depth": (("chain", "draw"), np.floor(np.log2(np.maximum(steps, 1))).astype(int) + 1),
        "acceptance_rate": (("chain", "draw"), np.asarray(extra["accept_prob"])),
        "lp": (("chain", "draw"), -np.asarray(extra["potential_energy"])),
        "step_size": (("chain", "draw"), np.asarray(extra["step_size"])),
    }, coords={"chain": np.arange(nc), "draw": np.arange(nd)})
    attrs: dict[str, Any] = {"sampling_time": t_sample, "tuning_steps": settings.tune,
                             "inference_library": settings.kernel}
    if "warmup_diverging" in extra:
        attrs["warmup_divergences"] = int(np.sum(extra["warmup_diverging"]))
        attrs["warmup_leapfrog_steps"] = int(np.sum(extra["warmup_num_steps"]))
    post.attrs.update(attrs)
    stats.attrs.update(attrs)
    return post, stats, t_sample
