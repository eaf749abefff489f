"""Prompts for the policy: vanilla (answer with code directly) and pseudocode reasoning (paper Fig. 4: instruction,
the three actions, notes, two worked examples, the question). Steps open with "### Step n:" after "<Step_Begin>" and
close with "<Step_End>"; a step holding a python block ends the path. Chat messages for instruct models (the caller
applies the tokenizer's chat template), plain text for base models."""
from __future__ import annotations

import re

from o1jax.data.examples import PSEUDOCODE_EXAMPLES
from o1jax.data.problem import Problem

STEP_BEGIN = "<Step_Begin>"
STEP_END = "<Step_End>"  # stop string of one reasoning step (one MCTS action)
# Stops for a whole path generated in one go: the end of its python block (Action 3), whatever came before.
PATH_END = (("```python", "\n```"), ("```py\n", "\n```"))
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

VANILLA_SYSTEM = "You are an expert Python programmer. Answer with one complete ```python code block."

PSEUDOCODE_INSTRUCTION = """\
You are an expert Python programmer. Solve the problem step by step: first outline the algorithm in pseudocode, \
refine the pseudocode where needed, and only then write the Python code. Each step takes exactly one of these \
actions:

Action 1: Define the algorithm structure in pseudocode. Outline the main functions with their inputs and outputs \
and the overall flow, without implementation details.
Action 2: Refine part of the pseudocode. Add detail to one function or one part of the flow (loops, conditions, \
data structures, edge cases). This action may be used several times.
Action 3: Generate Python code from the pseudocode. Translate the refined pseudocode into complete, runnable \
Python code in one ```python block. This ends the solution.

Notes:
- Start every step with "### Step n:" and the action it takes, and end it with "<Step_End>".
- Keep pseudocode in ```pseudo blocks; use a ```python block only in the final step (Action 3).
- The final code must be self-contained: imports, the required function name and signature, or, for problems that \
read standard input, a program that reads stdin and prints the answer.
- Do not write tests or example usage in the final code."""


def format_question(problem: Problem) -> str:
    """The problem as the policy sees it: statement, starter code, and how the answer is run."""
    q = problem.question.strip()
    kind = problem.io_format
    if problem.source == "humaneval":
        return f"Complete the following Python function:\n```python\n{problem.starter_code.rstrip()}\n```"
    if problem.starter_code.strip():
        q += f"\n\nUse this starter code:\n```python\n{problem.starter_code.rstrip()}\n```"
    if kind == "stdio":
        q += "\n\nRead the input from standard input and print the answer to standard output."
    elif kind == "call" and problem.entry_point and problem.source != "codeio":
        q += f"\n\nThe solution must define the function `{problem.entry_point}`."
    return q


def vanilla_messages(problem: Problem) -> list[Message]:
    """Vanilla prompting: ask for the code directly."""
    return [{"role": "system", "content": VANILLA_SYSTEM},
            {"role": "user", "content": format_question(problem)}]


def vanilla_prompt(problem: Problem) -> str:
    """Vanilla prompt for base models (no chat template). HumanEval: the function prompt itself, to be continued."""
    if problem.source == "humaneval":
        return problem.starter_code
    return f"{format_question(problem)}\n\n### Answer\n```python\n"


def step_prefix(n: int) -> str:
    """Text that opens reasoning step n (1-based); the generation prompt ends with it."""
    return f"{STEP_BEGIN}\n### Step {n}:"


def _examples_text() -> str:
    parts = []
    for i, (question, steps) in enumerate(PSEUDOCODE_EXAMPLES, 1):
        body = "".join(f"{step_prefix(j)}{s.rstrip()}\n{STEP_END}\n" for j, s in enumerate(steps, 1))
        parts.append(f"Example {i}:\n\n[Question]\n{question.strip()}\n\n[Solution]\n{body}")
    return "\n".join(parts)


def pseudocode_messages(problem: Problem, steps: list[str] | tuple[str, ...] = ()) -> list[Message]:
    """Chat messages for pseudocode reasoning. `steps` are the step bodies generated so far (text after
    "### Step n:" without the closing delimiter); the assistant message is prefilled with them and the next step's
    prefix, so apply the chat template WITHOUT a generation prompt and continue the final assistant message
    (transformers: `continue_final_message=True`). Stop generation at STEP_END."""
    user = f"{_examples_text()}\n\nNow solve this problem.\n\n[Question]\n{format_question(problem)}"
    return [{"role": "system", "content": PSEUDOCODE_INSTRUCTION},
            {"role": "user", "content": user},
            {"role": "assistant", "content": partial_solution(steps)}]


def format_path(steps: list[str] | tuple[str, ...]) -> str:
    """Step bodies -> the reasoning path as text, each step opened and closed by its delimiters."""
    return "".join(f"{step_prefix(j)}{s.rstrip()}\n{STEP_END}\n" for j, s in enumerate(steps, 1))


def partial_solution(steps: list[str] | tuple[str, ...] = ()) -> str:
    """The reasoning path so far plus the prefix of the next step."""
    return format_path(steps) + step_prefix(len(steps) + 1)


def pseudocode_prompt(problem: Problem, steps: list[str] | tuple[str, ...] = ()) -> str:
    """The same prompt as plain text for base models."""
    return (f"{PSEUDOCODE_INSTRUCTION}\n\n{_examples_text()}\n\nNow solve this problem.\n\n[Question]\n"
            f"{format_question(problem)}\n\n[Solution]\n{partial_solution(steps)}")


# Where a generated step ends: its closing delimiter, or the opener of a next step the model ran into.
_BOUNDARY = re.compile(f"{re.escape(STEP_END)}|{re.escape(STEP_BEGIN)}|\n(?=### Step )")


def clean_step(generated: str) -> str:
    """A generated step body: cut at STEP_END (or a next step opener the model ran into), trailing space removed."""
    return _BOUNDARY.split(generated, maxsplit=1)[0].rstrip()


def is_terminal_step(step: str) -> bool:
    """A step holding a python block ends the path (Action 3)."""
    return "```python" in step or "```py\n" in step


_HEAD = re.compile(r"\s*### Step \d*\s*:?")


def parse_path(generated: str) -> tuple[list[str], bool]:
    """A reasoning path generated in one go (the text after the first step's prefix "### Step 1:", stopped at
    PATH_END) -> (the step bodies up to and including the first step holding a python block, whether there was one).
    Steps end where `clean_step` ends one: at <Step_End>, <Step_Begin> or a line opening "### Step "; text between
    steps that opens no new step (blank lines, a stray delimiter) is not a step."""
    steps = []
    for i, chunk in enumerate(_BOUNDARY.split(generated)):
        head = _HEAD.match(chunk)
        if i and not head and not chunk.strip():
            continue
        body = chunk[head.end():] if i and head else chunk
        steps.append(body.rstrip())
        if is_terminal_step(body):
            return steps, True
    return steps, False


def split_steps(text: str) -> list[str]:
    """Inverse of `partial_solution` for a finished path: the step bodies."""
    out = []
    for chunk in text.split(STEP_BEGIN)[1:]:
        body = chunk.split(STEP_END)[0]
        head = body.lstrip("\n")
        if head.startswith("### Step "):
            head = head.split(":", 1)[1] if ":" in head.split("\n", 1)[0] else head
        out.append(head.rstrip())
    return out
