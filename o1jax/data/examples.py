"""The two worked examples of the pseudocode-reasoning prompt (paper Fig. 4): one function problem, one stdio problem,
each solved with Action 1, Action 2 and Action 3 steps. Step bodies follow "### Step n:" (see prompting.py)."""
from __future__ import annotations

_EX1_Q = """Write a function `longest_common_prefix(words)` that returns the longest common prefix of a list of
strings, or "" when there is none."""

_EX1_STEPS = (
    """ Define the algorithm structure (Action 1)
```pseudo
Function longest_common_prefix(words):
    Input: list of strings words
    Output: the longest string that starts every word
    If words is empty, return ""
    Shrink a candidate prefix until every word starts with it
    Return the candidate
```""",
    """ Refine the shrinking loop (Action 2)
```pseudo
Function longest_common_prefix(words):
    If words is empty: return ""
    prefix <- words[0]
    For each word in words[1:]:
        While word does not start with prefix:
            prefix <- prefix without its last character
            If prefix is empty: return ""
    Return prefix
```""",
    """ Generate Python code from the pseudocode (Action 3)
```python
def longest_common_prefix(words):
    if not words:
        return ""
    prefix = words[0]
    for word in words[1:]:
        while not word.startswith(prefix):
            prefix = prefix[:-1]
            if not prefix:
                return ""
    return prefix
```""",
)

_EX2_Q = """The first line holds n, the second n integers. Print the number of pairs (i < j) whose sum is even.
Read the input from standard input and print the answer to standard output."""

_EX2_STEPS = (
    """ Define the algorithm structure (Action 1)
```pseudo
Function main():
    Read n and the list a
    Count the even numbers and the odd numbers
    A sum is even when both numbers are even or both are odd
    Print the number of such pairs
```""",
    """ Refine the counting (Action 2)
```pseudo
Function count_pairs(a):
    even <- number of x in a with x mod 2 = 0
    odd <- length(a) - even
    Return even * (even - 1) / 2 + odd * (odd - 1) / 2
```""",
    """ Generate Python code from the pseudocode (Action 3)
```python
import sys


def main():
    data = sys.stdin.read().split()
    n = int(data[0])
    a = list(map(int, data[1:1 + n]))
    even = sum(1 for x in a if x % 2 == 0)
    odd = n - even
    print(even * (even - 1) // 2 + odd * (odd - 1) // 2)


main()
```""",
)

PSEUDOCODE_EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = ((_EX1_Q, _EX1_STEPS), (_EX2_Q, _EX2_STEPS))
