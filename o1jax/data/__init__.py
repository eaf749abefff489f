"""Code problems for the o1-Coder loop: loaders for HumanEval, MBPP, CodeI/O, TACO and APPS into one Problem
record, TFDS (array_record) storage, prompting (vanilla and pseudocode reasoning), code extraction and the bridge
from (problem, code) to execution-service jobs."""
from o1jax.data.extraction import choose_entry_point, code_blocks, extract_code
from o1jax.data.jobs import build_program, make_job, reference_job
from o1jax.data.prepare import SOURCES, Prepared, load_source, prepare, summary, verify_references
from o1jax.data.problem import Problem, Rejected, assign_split, check_tests, hash_split
from o1jax.data.prompting import (PATH_END, STEP_BEGIN, STEP_END, clean_step, format_path, format_question,
                                  is_terminal_step, parse_path, partial_solution, pseudocode_messages,
                                  pseudocode_prompt, split_steps, step_prefix, vanilla_messages, vanilla_prompt)


def data_source(source: str, split: str, data_dir: str | None = None):
    """Prepared problems of source/split (random access; see tfds_builder.data_source). Lazy: TFDS loads on use."""
    from o1jax.data.tfds_builder import data_source as _ds
    return _ds(source, split, data_dir)


def load_problems(source: str, split: str, data_dir: str | None = None) -> list[Problem]:
    from o1jax.data.tfds_builder import load_problems as _lp
    return _lp(source, split, data_dir)
