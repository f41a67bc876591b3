"""veerkracht_bayes.programs: serialised JAX programs, written once and read back instead of traced."""

from __future__ import annotations

import numpy as np
import pytest

from veerkracht_bayes.programs import program_path, serialised_program
from veerkracht_bayes.runtime import configure


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VEERKRACHT_JAX_CACHE", str(tmp_path))
    return tmp_path


def _specs(n: int = 3):
    import jax

    return (jax.ShapeDtypeStruct((n,), np.float32), jax.ShapeDtypeStruct((), np.float32))


def test_a_second_build_reads_the_file_and_traces_nothing(cache, monkeypatch):
    import jax.export

    first = serialised_program("t-affine", "k1", lambda x, a: a * x + 1.0, _specs())
    path = program_path("t-affine", "k1", _specs())
    assert path is not None and path.exists() and path.parent == cache / "exported"
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(first(x, np.float32(2.0))), [1.0, 3.0, 5.0])

    def must_not_trace(*args, **kwargs):
        raise AssertionError("traced again")

    monkeypatch.setattr(jax.export, "export", must_not_trace)
    # another function object under the same name and key: the file is what runs
    second = serialised_program("t-affine", "k1", lambda x, a: x, _specs())
    np.testing.assert_allclose(np.asarray(second(x, np.float32(2.0))), [1.0, 3.0, 5.0])


def test_other_shapes_and_keys_get_their_own_files(cache):
    serialised_program("t-sq", "k1", lambda x, a: a * x * x, _specs(3))
    serialised_program("t-sq", "k1", lambda x, a: a * x * x, _specs(4))
    serialised_program("t-sq", "k2", lambda x, a: a * x * x, _specs(3))
    assert len(list((cache / "exported").glob("t-sq-*.jaxexport"))) == 3


def test_a_damaged_file_is_built_again(cache):
    path = program_path("t-neg", "k1", _specs())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a flatbuffer")
    f = serialised_program("t-neg", "k1", lambda x, a: -x * a, _specs())
    np.testing.assert_allclose(np.asarray(f(np.ones(3, np.float32), np.float32(3.0))), [-3.0] * 3)
    assert path.read_bytes() != b"not a flatbuffer"


def test_nothing_is_written_without_a_key_or_with_the_cache_off(cache):
    f = serialised_program("t-plain", None, lambda x, a: x + a, _specs())
    np.testing.assert_allclose(np.asarray(f(np.zeros(3, np.float32), np.float32(1.0))), [1.0] * 3)
    configure(compilation_cache=False)
    try:
        assert program_path("t-off", "k1", _specs()) is None
        g = serialised_program("t-off", "k1", lambda x, a: x - a, _specs())
        np.testing.assert_allclose(np.asarray(g(np.zeros(3, np.float32), np.float32(1.0))), [-1.0] * 3)
    finally:
        configure(compilation_cache=True)
    assert not (cache / "exported").exists()
