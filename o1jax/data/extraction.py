"""Code extraction: from a policy completion (vanilla answer or the terminal step of a pseudocode path) to the code
that gets executed. Fenced blocks are preferred, the last python block that defines the entry point first; an
unterminated final block (generation cut at max tokens or at a stop string) still counts."""
from __future__ import annotations

import ast
import re

# ```lang\n ... ``` ; the closing fence may be missing at the end of the text.
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-.]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.S)
_PY_TAGS = ("python", "py", "python3", "py3")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """All fenced blocks as (language tag lower-cased, code), in order."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def top_level_functions(code: str) -> list[str]:
    """Names of top-level functions and classes, in order ([] when the code does not parse)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, re.M)
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def defines(code: str, name: str) -> bool:
    """Whether `code` defines `name` at top level or as a method (LeetCode's `class Solution`)."""
    return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", code, re.M) is not None


def extract_code(completion: str, entry_point: str | None = None, starter_code: str = "") -> str | None:
    """The code to run from a completion, or None when it holds none.

    - Fenced blocks: python-tagged ones (or untagged ones if none is tagged; other languages, e.g. ```pseudo, are
      ignored); of those, the last that defines `entry_point`, else the last that defines any function or class,
      else the last block. Completions often end with a usage-example block after the solution (the reference
      MCTS outputs do), which plain "last block" would pick.
    - No block: the completion itself when it is Python: either whole code, or a function body continuing
      `starter_code` (a base model completing a HumanEval prompt).
    """
    blocks = code_blocks(completion)
    cands = [c for tag, c in blocks if tag in _PY_TAGS] or [c for tag, c in blocks if tag == ""]
    if cands:
        for pred in ((lambda c: entry_point is not None and defines(c, entry_point)),
                     (lambda c: bool(top_level_functions(c))), (lambda c: bool(c.strip()))):
            picked = [c for c in cands if pred(c)]
            if picked:
                return picked[-1].strip("\n") + "\n"
        return None
    if blocks:  # only non-python blocks (pseudocode): no code yet
        return None
    text = completion.strip("\n")
    if not text.strip():
        return None
    if starter_code and not defines(text, entry_point or "\0") and _parses(starter_code + text):
        return text + "\n"
    if _parses(text) and (top_level_functions(text) or "print(" in text or "input(" in text):
        return text + "\n"
    return None


def choose_entry_point(code: str, wanted: str | None) -> str | None:
    """The function the tests should call: `wanted` when the code defines it, else (as the reference MCTS code does
    for call-based problems) a function taken from the generated code: the last top-level function, since helpers
    usually come first. None when the code defines no function."""
    if wanted and defines(code, wanted):
        return wanted
    names = [n for n in top_level_functions(code) if n not in ("main", "Solution")]
    return names[-1] if names else wanted
