"""Process-wide JAX settings, changed only when asked: by an entry point that needs them or by
:func:`configure`. Importing any module of the package changes none of them.

- **CPU devices.** The JAX driver runs chains in parallel only on separate XLA devices. :func:`fit`
  calls :func:`ensure_cpu_devices`, which asks JAX for one CPU device per core (at most 8) when
  JAX's backend has not started yet and the user has not chosen; afterwards JAX keeps what it has
  (the chains then run one after the other, which is slower but gives the same numbers).
- **64-bit floats.** do-queries and trajectories run inside :func:`x64` (a context, not a global
  switch); the samplers turn on JAX's 64-bit mode when they start, as PyMC's JAX samplers do.
- **Compilation cache.** Compiled samplers are kept between processes in
  :func:`compilation_cache_dir`: ``$VEERKRACHT_JAX_CACHE`` if set, else
  ``~/.cache/veerkracht_bayes/jax``. ``configure(compilation_cache=False)`` turns it off, a path
  moves it. ``veerkracht-bayes warmup`` fills it (``scripts/bootstrap.sh`` runs it once per
  install) and leaves a :func:`warmup_stamp` there, so that ``warmup --if-missing`` knows the
  programs of this install and setting are in it.
- **Compiled programs in one process.** On the CPU each compiled XLA program keeps its machine
  code in a hundred or more memory mappings, and Linux caps a process's mappings
  (``vm.max_map_count``, usually 65,530). A long session that compiles several hundred programs
  (a notebook fitting many models, a test run) would then fail inside LLVM ("Cannot allocate
  memory", "Failed to materialize symbols") or abort. :func:`release_compiled_programs_if_needed`,
  which every sampler calls before it compiles, drops the package's cached programs and JAX's
  in-memory caches once the mappings pass half of the cap; a later fit of a dropped shape reads its
  program back from the persistent compilation cache.

Examples
--------
>>> import veerkracht_bayes as vb
>>> vb.configure(compilation_cache=False)
>>> from veerkracht_bayes.runtime import compilation_cache_dir
>>> compilation_cache_dir() is None
True
>>> vb.configure(compilation_cache=True)
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["compilation_cache_dir", "configure", "ensure_cpu_devices", "environment_hash", "mapped_regions",
           "register_program_cache", "release_compiled_programs", "release_compiled_programs_if_needed",
           "warmup_stamp", "x64"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_state: dict[str, Any] = {"cache": True, "cpu_devices": None}
#: functions that empty the package's own caches of compiled programs (see register_program_cache)
_PROGRAM_CACHES: list[Callable[[], None]] = []
#: share of ``vm.max_map_count`` above which cached programs are dropped
MAPPED_REGIONS_FRACTION = 0.5


def configure(*, cpu_devices: int | None = None, x64: bool | None = None,
              compilation_cache: bool | str | Path | None = None) -> None:
    """Set JAX's process-wide options explicitly.

    Parameters
    ----------
    cpu_devices
        Number of XLA CPU devices (one per parallel chain). Takes effect only before JAX's
        backend starts (before the first computation).
    x64
        Turn JAX's 64-bit mode on or off for the whole process.
    compilation_cache
        ``False`` turns the persistent compilation cache off, ``True`` restores the default
        location, a path moves it.

    Examples
    --------
    >>> configure(compilation_cache=False)
    >>> configure(compilation_cache=True)
    """
    if cpu_devices is not None:
        if isinstance(cpu_devices, bool) or int(cpu_devices) < 1:
            raise ValueError(f"cpu_devices must be a positive integer, not {cpu_devices!r}")
        _state["cpu_devices"] = int(cpu_devices)
        _set_cpu_devices(int(cpu_devices))
    if x64 is not None:
        import jax

        jax.config.update("jax_enable_x64", bool(x64))
    if compilation_cache is not None:
        _state["cache"] = compilation_cache if not isinstance(compilation_cache, str) else Path(compilation_cache)


def _set_cpu_devices(n: int) -> bool:
    import jax

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False  # the user's own flag wins
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except Exception:  # noqa: BLE001 - the backend has started; JAX keeps its devices
        log.debug("JAX backend already initialised; keeping %d CPU device(s)", jax.local_device_count())
        return False
    return True


def ensure_cpu_devices() -> None:
    """Give JAX one CPU device per core (at most 8) if nobody has chosen and it is not too late.

    Examples
    --------
    >>> ensure_cpu_devices()
    """
    if _state["cpu_devices"] is not None:
        return
    n = max(1, min(os.cpu_count() or 1, 8))
    _state["cpu_devices"] = n if _set_cpu_devices(n) else -1


def compilation_cache_dir() -> Path | None:
    """Where compiled samplers are cached between processes (``None`` when turned off).

    Examples
    --------
    >>> isinstance(compilation_cache_dir(), (Path, type(None)))
    True
    """
    c = _state["cache"]
    if c is False:
        return None
    if isinstance(c, Path):
        return c
    return Path(os.environ.get("VEERKRACHT_JAX_CACHE", Path.home() / ".cache" / "veerkracht_bayes" / "jax"))


def warmup_stamp(draws: int, tune: int | None, measurement: str = "continuous") -> Path | None:
    """The file ``veerkracht-bayes warmup`` leaves in the compilation cache after a fit of
    ``draws`` + ``tune`` iterations with ``vb.fit(..., measurement=measurement)`` (``None`` when
    the cache is off).

    Its name is a hash of what the compiled programs depend on besides the model's shape: the
    package's own source files, the versions of Python, JAX, jaxlib, blackjax, numpyro, PyMC and PyTensor,
    the number of CPU cores and the setting: draws, tuning steps (``None``: vb.fit's default for
    the route) and the measurement asked for (``"continuous"``, or ``"auto"``: the route the
    shipped codebook resolves to, the polychoric one). A new release, an edited checkout or
    another machine therefore gets another name, and ``warmup --if-missing`` fills the cache
    again; each setting has its own stamp.

    Examples
    --------
    >>> a, b = warmup_stamp(1000, 1000), warmup_stamp(500, 500)
    >>> a is None or (a.parent == compilation_cache_dir() and a != b)
    True
    >>> c = warmup_stamp(1000, None, "auto")
    >>> c is None or (c != warmup_stamp(1000, None, "continuous") and c != a)
    True
    """
    import hashlib

    folder = compilation_cache_dir()
    if folder is None:
        return None
    tuned = "default" if tune is None else str(int(tune))
    h = hashlib.sha256(f"{int(draws)}+{tuned}|{measurement}|{environment_hash()}".encode())
    return folder / f"veerkracht-warmup-{h.hexdigest()[:24]}.stamp"


@functools.cache
def environment_hash() -> str:
    """A hash of what compiled programs depend on besides a model: this install and this machine.

    The package's own source files, the versions of Python, JAX, jaxlib, blackjax, numpyro, PyMC
    and PyTensor, and the number of CPU cores. Computed once per process. :func:`warmup_stamp` and
    the serialised programs of :mod:`veerkracht_bayes.programs` put it in their names,
    so an edited checkout, a new release or another machine never reads another's.

    Examples
    --------
    >>> len(environment_hash()), environment_hash() == environment_hash()
    (64, True)
    """
    import hashlib
    import platform
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256(f"{os.cpu_count()}|{platform.python_version()}".encode())
    for dist in ("jax", "jaxlib", "blackjax", "numpyro", "pymc", "pytensor"):
        try:
            h.update(f"|{dist}={version(dist)}".encode())
        except PackageNotFoundError:
            h.update(f"|{dist}=none".encode())
    root = Path(__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def _x64_context() -> Iterator[None]:
    import jax

    with jax.enable_x64(True):
        yield


def x64(func: F) -> F:
    """Run ``func`` with JAX's 64-bit mode on, and leave the process setting as it was.

    Examples
    --------
    >>> @x64
    ... def f():
    ...     import jax.numpy as jnp
    ...     return str(jnp.ones(1).dtype)
    >>> f()
    'float64'
    """
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _x64_context():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def mapped_regions() -> tuple[int, int] | None:
    """The number of memory mappings of this process and the kernel's cap on them
    (``vm.max_map_count``), or ``None`` where the system does not say (not Linux).

    Examples
    --------
    >>> r = mapped_regions()
    >>> r is None or 0 < r[0] < r[1]
    True
    """
    try:
        with open("/proc/self/maps", "rb") as f:
            used = f.read().count(b"\n")
        with open("/proc/sys/vm/max_map_count", "rb") as f:
            cap = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return used, cap


def register_program_cache(clear: Callable[[], None]) -> Callable[[], None]:
    """Register a function that empties one of the package's caches of compiled programs, so
    that :func:`release_compiled_programs` can free them; returns ``clear`` (usable as a
    decorator).

    Examples
    --------
    >>> cache: dict = {}
    >>> _ = register_program_cache(cache.clear)
    >>> cache["shape"] = "program"
    >>> release_compiled_programs()
    >>> cache
    {}
    """
    _PROGRAM_CACHES.append(clear)
    return clear


def release_compiled_programs() -> None:
    """Drop every compiled program this process keeps for reuse: the package's registered caches
    and JAX's in-memory caches. Programs still held elsewhere (by a live fit object) stay; a later
    call of a dropped program compiles it again or reads it from the persistent cache.

    Examples
    --------
    >>> release_compiled_programs()
    """
    import gc

    for clear in _PROGRAM_CACHES:
        clear()
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()


def release_compiled_programs_if_needed(fraction: float | None = None) -> bool:
    """Call :func:`release_compiled_programs` when this process's memory mappings pass
    ``fraction`` (default :data:`MAPPED_REGIONS_FRACTION`) of the kernel's cap; returns whether
    it did. Each compiled CPU program holds a hundred or more mappings, and past the cap LLVM
    fails to load new programs.

    Examples
    --------
    >>> release_compiled_programs_if_needed()
    False
    >>> release_compiled_programs_if_needed(fraction=0.0)
    True
    """
    limit = MAPPED_REGIONS_FRACTION if fraction is None else float(fraction)
    regions = mapped_regions()
    if regions is None or regions[0] <= limit * regions[1]:
        return False
    release_compiled_programs()
    after = mapped_regions()
    log.info("%d of at most %d memory mappings in use: cached compiled programs dropped (%s left)",
             regions[0], regions[1], "?" if after is None else after[0])
    return True
