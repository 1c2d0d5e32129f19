"""Finding directory objects by client id without scanning the tenant.

A sweep of 50,000 configs sends 2,500 filters of 15 client ids each, for applications and for
service principals; scanning 150,000 applications for each made the simulator the slowest part
of the benchmark. The world keeps those two lists as TrackedLists, which count their changes,
and an index by client id is rebuilt only when its list has changed. A client id never changes
once an object exists, so the count of changes is all an index needs to know.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Protocol, SupportsIndex, TypeVar


class _HasAppId(Protocol):
    app_id: str


T = TypeVar("T")
Obj = TypeVar("Obj", bound=_HasAppId)


class TrackedList(list[T]):
    """A list that counts the changes made through its methods."""

    version = 0

    def append(self, item: T) -> None:
        super().append(item)
        self.version += 1

    def extend(self, items: Iterable[T]) -> None:
        super().extend(items)
        self.version += 1

    def insert(self, index: SupportsIndex, item: T) -> None:
        super().insert(index, item)
        self.version += 1

    def remove(self, item: T) -> None:
        super().remove(item)
        self.version += 1

    def pop(self, index: SupportsIndex = -1) -> T:
        self.version += 1
        return super().pop(index)

    def clear(self) -> None:
        super().clear()
        self.version += 1

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self.version += 1

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self.version += 1

    def __iadd__(self, items: Iterable[T]) -> TrackedList[T]:  # type: ignore[override, misc]
        self.extend(items)
        return self


class ByAppId:
    """The objects of one TrackedList by client id."""

    def __init__(self) -> None:
        self._source: tuple[int, int] | None = None
        self._index: dict[str, list[Any]] = {}

    def find(self, items: list[Obj], app_ids: Iterable[str]) -> list[Obj] | None:
        """The objects with these client ids, in list order; None when `items` is no TrackedList
        (then the caller scans)."""
        if not isinstance(items, TrackedList):
            return None
        source = (id(items), items.version)
        if source != self._source:
            index: dict[str, list[Any]] = defaultdict(list)
            for position, item in enumerate(items):
                index[item.app_id].append((position, item))
            self._index, self._source = dict(index), source
        found = sorted(
            (entry for app_id in set(app_ids) for entry in self._index.get(app_id, ())), key=_first
        )
        return [item for _, item in found]


def _first(entry: tuple[int, Any]) -> int:
    return int(entry[0])
