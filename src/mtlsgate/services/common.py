"""Small helpers the services share: clock, ids, pagination."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from mtlsgate.errors import BadRequest

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def hex_id() -> str:
    return uuid.uuid4().hex


def uuid_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    per_page: int
    total_count: int

    @property
    def total_pages(self) -> int:
        return (self.total_count + self.per_page - 1) // self.per_page


def paginate(items: list[T], page: int, per_page: int, *, max_per_page: int = 1000) -> Page[T]:
    """Page-number pagination; a page past the end is empty, never an error (SDKs page until [])."""
    if page < 1:
        raise BadRequest("page must be 1 or more", pointer="page")
    if not 1 <= per_page <= max_per_page:
        raise BadRequest(f"per_page must be between 1 and {max_per_page}", pointer="per_page")
    start = (page - 1) * per_page
    return Page(items[start : start + per_page], page, per_page, len(items))
