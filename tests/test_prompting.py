"""Vanilla and pseudocode prompts: Fig. 4 structure, step delimiters, chat messages, step parsing."""
import os

from o1jax.data import (STEP_END, clean_step, extract_code, is_terminal_step, partial_solution, pseudocode_messages,
                        pseudocode_prompt, split_steps, step_prefix, vanilla_messages, vanilla_prompt)
from o1jax.data.examples import PSEUDOCODE_EXAMPLES
from o1jax.data.humaneval import load_humaneval
from o1jax.data.taco_apps import load_taco_apps

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TACO = {p.id: p for p in load_taco_apps("taco", os.path.join(FIX, "taco"))[0]}
HE = load_humaneval(os.path.join(FIX, "humaneval_mini.jsonl"))[0][0]


def test_step_prefix_is_the_reference_suffix():
    assert step_prefix(3) == "<Step_Begin>\n### Step 3:"


def test_pseudocode_messages_have_fig4_parts_and_prefilled_assistant():
    msgs = pseudocode_messages(TACO["taco/train/0"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    for part in ("Action 1:", "Action 2:", "Action 3:", "Notes:", "<Step_End>"):
        assert part in system
    assert user.count("[Question]") == 3 and "Example 1:" in user and "Example 2:" in user
    assert user.rstrip().endswith("print the answer to standard output.")  # the question comes last
    assert msgs[2]["content"] == "<Step_Begin>\n### Step 1:"


def test_steps_so_far_are_prefilled_and_round_trip():
    steps = [" Define structure (Action 1)\n```pseudo\nF(x)\n```", " Refine (Action 2)\nmore"]
    msgs = pseudocode_messages(TACO["taco/train/1"], steps)
    text = msgs[2]["content"]
    assert text.endswith("<Step_End>\n<Step_Begin>\n### Step 3:") and text.count(STEP_END) == 2
    assert split_steps(text) == steps + [""]
    assert pseudocode_prompt(TACO["taco/train/1"], steps).endswith(partial_solution(steps))


def test_worked_examples_end_with_terminal_code_steps_that_extract():
    for question, steps in PSEUDOCODE_EXAMPLES:
        assert not any(is_terminal_step(s) for s in steps[:-1]) and is_terminal_step(steps[-1])
        code = extract_code(steps[-1])
        assert code is not None and compile(code, "example", "exec")


def test_clean_step_cuts_at_delimiters():
    assert clean_step(" plan\n```pseudo\nx\n```\n<Step_End>\nextra") == " plan\n```pseudo\nx\n```"
    assert clean_step(" a\n### Step 2: b") == " a"


def test_call_problem_names_function_and_starter():
    user = vanilla_messages(TACO["taco/train/1"])[1]["content"]
    assert "`count_vowels`" in user and "def count_vowels(s):" in user


def test_humaneval_vanilla_prompt_is_the_function_prompt():
    assert vanilla_prompt(HE) == HE.starter_code
    assert "```python\nfrom typing import List" in vanilla_messages(HE)[1]["content"]


def test_parse_path_reads_a_whole_generated_path_back_into_steps():
    from o1jax.data import format_path, parse_path
    steps = [" Define structure (Action 1)\n```pseudo\nF(x)\n```", " Refine (Action 2)\nmore",
             " Code (Action 3)\n```python\ndef f(x):\n    return x\n```"]
    generated = format_path(steps)[len(step_prefix(1)):]
    assert parse_path(generated) == (steps, True)
    # a python step ends the path: what follows it is not read
    assert parse_path(generated + "<Step_Begin>\n### Step 4: more") == (steps, True)
    # a model that skips the delimiters and opens the next step with its header
    assert parse_path(" a\n### Step 2: b\n```python\nx = 1\n```") == ([" a", " b\n```python\nx = 1\n```"], True)
    # no python block: every step, and no terminal one
    assert parse_path(" a\n<Step_End>\n<Step_Begin>\n### Step 2: b<Step_End>\n") == ([" a", " b"], False)
