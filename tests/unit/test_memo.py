"""IdentityMemo: answers remembered per key and per identity of the objects they are read from."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dunwell.domain.memo import IdentityMemo

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Row:
    value: int


def test_an_answer_is_computed_once_per_key_and_kept_objects() -> None:
    memo: IdentityMemo[int | None] = IdentityMemo(8)
    calls: list[int] = []
    row = Row(3)

    def answer() -> int | None:
        calls.append(row.value)
        return None  # a remembered None is an answer, not a miss

    assert memo.get(("k", id(row)), (row,), answer) is None
    assert memo.get(("k", id(row)), (row,), answer) is None
    assert calls == [3]


def test_another_object_under_the_same_key_is_not_given_the_old_answer() -> None:
    memo: IdentityMemo[int] = IdentityMemo(8)
    first, other = Row(1), Row(2)
    assert memo.get("same key", (first,), lambda: first.value) == 1
    # A key that does not carry the ids (a caller's mistake) still cannot mix rows up.
    assert memo.get("same key", (other,), lambda: other.value) == 2
    assert memo.get("same key", (other,), lambda: -1) == 2


def test_the_memo_is_emptied_when_full() -> None:
    memo: IdentityMemo[int] = IdentityMemo(2)
    memo.get(1, (), lambda: 1)
    memo.get(2, (), lambda: 2)
    assert len(memo) == 2
    memo.get(3, (), lambda: 3)
    assert len(memo) == 1
    assert memo.get(1, (), lambda: 10) == 10  # forgotten, computed again
