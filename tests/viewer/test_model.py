"""The call-tree model all outputs share: merged sides, depth-first order, stacks, no recursion."""

from __future__ import annotations

import sys
from typing import Any, Dict

from codeguru_agent.viewer.model import CallTree
from support.documents import deep_document


def graph(**counts: int) -> Dict[str, Any]:
    """A call graph of ``main`` calling the named leaves with these self counts (root first)."""
    return {"children": {"app:main": {"children": {name: {"counts": {"WALL_TIME": n}} for name, n in counts.items()}}}}


def test_two_sides_share_one_tree_over_the_union_of_their_frames() -> None:
    tree = CallTree([graph(grow=5, steady=3, new=2), graph(grow=1, steady=3, gone=4)])

    rows = {tree.names[i]: (tree.totals[0][i], tree.totals[1][i]) for i in range(1, len(tree))}
    assert rows == {"app:main": (10, 8), "grow": (5, 1), "steady": (3, 3), "new": (2, 0), "gone": (0, 4)}
    assert tree.total == 10 and tree.totals[1][0] == 8


def test_children_follow_their_parent_heaviest_first_then_by_name() -> None:
    tree = CallTree([graph(b=2, a=2, c=9, empty=0)])

    assert tree.names == ["", "app:main", "c", "a", "b"], "frames without samples are left out"
    assert tree.parents == [-1, 0, 1, 1, 1]


def test_stacks_are_every_path_with_its_own_samples() -> None:
    nested = {"children": {"a": {"counts": {"WALL_TIME": 1}, "children": {"b": {"counts": {"WALL_TIME": 2}}}}, "c": {}}}
    tree = CallTree([nested])

    assert [([tree.names[i] for i in path], n) for path, n in tree.stacks()] == [(["a"], 1), (["a", "b"], 2)]


def test_lines_and_files_are_kept_and_widened_across_sides() -> None:
    first = {"children": {"a": {"file": "/srv/a.py", "line": [7], "counts": {"WALL_TIME": 1}}}}
    second = {"children": {"a": {"line": [3, 9], "counts": {"WALL_TIME": 1}}}}

    tree = CallTree([first, second])

    assert (tree.files[1], tree.line_min[1], tree.line_max[1]) == ("/srv/a.py", 3, 9)


def test_a_stack_deeper_than_the_recursion_limit_is_modelled_and_walked() -> None:
    depth = sys.getrecursionlimit() + 1000

    tree = CallTree([deep_document(depth)["callgraph"]])

    ((path, count),) = list(tree.stacks())
    assert len(path) == depth and count == 1 and tree.names[path[-1]] == f"deep.module:frame_{depth - 1}"
