"""Canonical rows that every loader produces and the write path consumes.

Rows are plain dicts (TypedDicts) so a batch goes to ``UNWIND $rows`` unchanged.
Ids are strings (external ids); kinds and relation names are plain values stored as
properties, never turned into labels or relationship types.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypedDict

INTERACTION_KINDS = ("view", "click", "cart", "purchase", "rating", "listen", "checkin", "interact")
ENTITY_TYPES_HINT = ("category", "brand", "tag", "genre", "kg")


class UserRow(TypedDict, total=False):
    id: str
    props: dict


class ItemRow(TypedDict, total=False):
    id: str
    title: str
    description: str
    props: dict


class QueryRow(TypedDict):
    id: str
    text: str


class EntityRow(TypedDict):
    id: str
    type: str
    name: str


class InteractionRow(TypedDict, total=False):
    user: str
    item: str
    kind: str
    weight: float
    ts: int  # unix seconds; 0 when unknown
    split: str  # "" or train/valid/test when the source gives a split


class UserQueryRow(TypedDict):
    user: str
    query: str
    ts: int


class QueryItemRow(TypedDict):
    query: str
    item: str
    relevance: float


class ItemEntityRow(TypedDict):
    item: str
    entity: str
    relation: str


class UserEntityRow(TypedDict):
    user: str
    entity: str
    relation: str


class TripleRow(TypedDict):
    head: str
    relation: str
    tail: str


class FriendRow(TypedDict):
    user: str
    friend: str


@dataclass
class GraphRecords:
    """Everything one load brings, grouped by row kind (the write path's input)."""

    users: list[UserRow] = field(default_factory=list)
    items: list[ItemRow] = field(default_factory=list)
    queries: list[QueryRow] = field(default_factory=list)
    entities: list[EntityRow] = field(default_factory=list)
    interactions: list[InteractionRow] = field(default_factory=list)
    user_queries: list[UserQueryRow] = field(default_factory=list)
    query_items: list[QueryItemRow] = field(default_factory=list)
    item_entities: list[ItemEntityRow] = field(default_factory=list)
    user_entities: list[UserEntityRow] = field(default_factory=list)
    triples: list[TripleRow] = field(default_factory=list)
    friends: list[FriendRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of rows per kind."""
        return {f.name: len(getattr(self, f.name)) for f in fields(self)}

    def extend(self, other: "GraphRecords") -> None:
        """Append all rows of ``other``."""
        for f in fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))
