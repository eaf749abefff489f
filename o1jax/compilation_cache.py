"""JAX's persistent compilation cache for the commands that compile (sample, eval, train, convert, export-hf).

On CPU a sampler decode program takes seconds to compile and an eval compiles a few dozen of them; with the cache a
second run (another eval, the same eval again, a resumed training run) loads them from disk instead. The directory is
`$O1JAX_COMPILATION_CACHE`, default `<o1jax cache>/jax-compilation` (o1jax.assets.cache_dir); set it to `off` to
disable. Entries are keyed by JAX on the program, the compiler flags and the JAX version, so a stale entry is never used.
"""
from __future__ import annotations

import os

MIN_COMPILE_S = 0.5  # only programs that took at least this long to compile are written
MAX_BYTES = 4 << 30


def directory() -> str | None:
    d = os.environ.get("O1JAX_COMPILATION_CACHE")
    if d is None:
        from o1jax.assets import cache_dir
        d = os.path.join(cache_dir(), "jax-compilation")
    return None if d.strip().lower() in ("", "0", "off", "none") else d


def enable() -> str | None:
    """Point JAX's persistent cache at directory(); returns it (None when disabled). Initialises no backend."""
    d = directory()
    if d is None:
        return None
    import jax
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    try:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    except AttributeError:  # older JAX: no size limit option
        pass
    return d
