"""Serialised programs: a fit's JAX programs kept, traced and lowered, between processes.

JAX's persistent compilation cache (:func:`veerkracht_bayes.inference.sampling.enable_compilation_cache`)
skips XLA's compilation in a new process, but not what comes before it: converting the PyMC
model to JAX, tracing the program and lowering it to StableHLO. On MARVEL that was 2-4 s of a
first fit after the install's warmup (docs/performance.md section 7). :func:`serialised_program`
keeps each program as a ``jax.export`` artifact next to the compilation cache, under a name
that hashes what it depends on (the caller's key, e.g. :func:`~veerkracht_bayes.inference.jax_nuts.model_fingerprint`;
the argument shapes, dtypes and shardings; :func:`veerkracht_bayes.runtime.environment_hash`),
so a later process deserialises it (milliseconds) and reads its compiled form from the cache.

The artifact is written by this package and read only from the cache folder; it is JAX's
flatbuffer format (no pickle). A file that cannot be read is ignored and written again.
Programs with host callbacks cannot be serialised; they, and any program when the cache is
off, are compiled as before.

Examples
--------
>>> import jax, numpy as np
>>> f = serialised_program("doctest-square", "v1", lambda x: x * x, (jax.ShapeDtypeStruct((2,), np.float32),))
>>> np.asarray(f(np.array([1.0, 2.0], np.float32))).tolist()
[1.0, 4.0]
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from veerkracht_bayes.runtime import compilation_cache_dir, environment_hash

__all__ = ["serialised_program", "program_path"]

log = logging.getLogger(__name__)

#: folder of the serialised programs inside the compilation cache
FOLDER = "exported"


def _signature(specs: Sequence[Any]) -> str:
    import jax

    leaves, tree = jax.tree.flatten(specs)
    parts = [str(tree)]
    for s in leaves:
        sharding = getattr(s, "sharding", None)
        spec = getattr(sharding, "spec", None)
        parts.append(f"{tuple(s.shape)}:{s.dtype}:{spec}")
    return "|".join(parts)


def program_path(name: str, key: str | None, specs: Sequence[Any] | str) -> Any:
    """Where :func:`serialised_program` keeps ``name`` for ``key`` and ``specs`` (None: the cache is
    off or there is no key). ``specs`` may be given as its signature string.

    Examples
    --------
    >>> import jax, numpy as np
    >>> p = program_path("doctest-square", "v1", (jax.ShapeDtypeStruct((2,), np.float32),))
    >>> p is None or (p.parent.name == "exported" and p.name.startswith("doctest-square-"))
    True
    """
    folder = compilation_cache_dir()
    if folder is None or key is None:
        return None
    sig = specs if isinstance(specs, str) else _signature(specs)
    h = hashlib.sha256(f"{name}|{key}|{sig}|{environment_hash()}".encode()).hexdigest()[:32]
    return folder / FOLDER / f"{name}-{h}.jaxexport"


def serialised_program(name: str, key: str | None, fn: Callable[..., Any],
                       specs: Sequence[Any] | Callable[[], Sequence[Any]], *, signature: str | None = None,
                       compiler_options: dict[str, Any] | None = None) -> Callable[..., Any]:
    """``fn`` compiled for arguments like ``specs``, through a ``jax.export`` artifact kept on disk.

    The first call for a ``(name, key, specs)`` traces and lowers ``fn``, serialises the result
    and writes it atomically; later calls, in any process of the same install, deserialise it
    instead of tracing. Either way the compiled program is that of the exported module, so the
    persistent compilation cache holds the same program for both.

    Parameters
    ----------
    name
        A readable name of the program (part of the file name).
    key
        Everything the program depends on besides the argument shapes and this install: the
        caller's model fingerprint and settings. Two programs with the same name and key must
        be the same function. ``None``: the program is compiled, not serialised.
    fn
        A JAX-traceable function of the arguments.
    specs
        ``jax.ShapeDtypeStruct`` per argument (pytrees allowed; with a ``sharding`` for programs
        over several devices), or a function returning them, called only when the program is
        traced (for arguments whose shapes take tracing to know); then ``signature`` names the
        rest of what the shapes depend on.
    signature
        Used instead of the specs in the file name (with a callable ``specs``).
    compiler_options
        XLA options for the compilation (as in ``jax.stages.Lowered.compile``).

    Returns
    -------
    The compiled program (``jax.stages.Compiled``, compiled here or read from the compilation
    cache), called with arrays like ``specs``. With ``specs`` a function: a ``jax.jit`` function,
    compiled on its first call (pass committed arrays, e.g. a program's own outputs, from the
    first call on: the call compiles again when committed inputs follow uncommitted ones).

    Examples
    --------
    >>> import jax, numpy as np
    >>> spec = (jax.ShapeDtypeStruct((3,), np.float32),)
    >>> g = serialised_program("doctest-cube", "v1", lambda x: x ** 3, spec)
    >>> np.asarray(g(np.arange(3, dtype=np.float32))).tolist()
    [0.0, 1.0, 8.0]
    """
    import jax
    from jax import export

    path = program_path(name, key, signature if signature is not None else specs)
    exp = None
    if path is not None and path.exists():
        try:
            exp = export.deserialize(bytearray(path.read_bytes()))
        except Exception as err:  # noqa: BLE001 - a damaged or foreign file is rebuilt, not fatal
            log.info("serialised program %s could not be read (%s); it is built again", path.name, err)
            exp = None
    if exp is None and path is not None:
        try:
            exp = export.export(jax.jit(fn))(*(specs() if callable(specs) else specs))
        except Exception as err:  # noqa: BLE001 - e.g. host callbacks, which cannot be serialised
            log.debug("program %s is not serialisable (%s); compiled directly", name, err)
        else:
            _write(path, exp)
            log.debug("program %s traced, lowered and kept (%s)", name, path.name)
    elif exp is not None:
        log.debug("program %s read (%s)", name, path.name)
    jitted = jax.jit(fn if exp is None else exp.call,
                     **({"compiler_options": compiler_options} if compiler_options else {}))
    # with the argument specs at hand: compiled now, one executable for any placement of the
    # arguments (a jitted call compiles again for committed after uncommitted inputs)
    return jitted if callable(specs) else jitted.lower(*specs).compile()


def _write(path: Any, exp: Any) -> None:
    """Write the artifact to a temporary file and rename it (readers never see half a file)."""
    try:
        blob = exp.serialize()
    except Exception as err:  # noqa: BLE001 - without flatbuffers or for an unsupported program
        log.debug("program %s is not serialisable (%s)", path.name, err)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
