"""Per-customer counters in one aggregate, laid out for the engine: packed words or plain counts.

**Packed (DuckDB).** Counters are packed eight to a 128-bit integer in fields of ``PACK_BITS`` bits and
summed as one aggregate per word: DuckDB's cost per row grows with the number of aggregates, not with
their width (docs/benchmarks.md). Eight fields hold the contract's eight channels or eight outcomes in
one word, counted with one ``CASE`` per row (a "switch" group). Each summed word is split into 64-bit
halves right after its aggregate, and the final join sums and unpacks those. A field holds one
customer's count in one window, so it overflows only past ``PACK_LIMIT`` (32,768) touches of one
customer in a window, or policies of one customer; the snapshot builder checks those bounds instead
of trusting them.

**Plain (Spark).** One ``COUNT(*) FILTER`` per counter: Spark has no 128-bit integer, and on Spark the
plain counts were 2-3 times faster than packed ``DECIMAL`` words (issue 21). Nothing can overflow.

Both layouts expose the same three steps (aggregate, store, read the fields back), so the snapshot
builder writes one query for both engines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACK_BITS = 15
PACK_WORD = "HUGEINT"
PACK_LIMIT = 2 ** PACK_BITS


@dataclass(frozen=True)
class Group:
    """Counters declared together: ``column`` set = a switch (name -> code, counted where ``guard`` holds),
    else flags (name -> SQL condition)."""

    counters: dict[str, str]
    column: str | None = None
    guard: str | None = None

    def conditions(self) -> dict[str, str]:
        """Each counter's own row condition."""
        if self.column is None:
            return dict(self.counters)
        guard = f" AND {self.guard}" if self.guard else ""
        return {n: f"{self.column} = '{code}'{guard}" for n, code in self.counters.items()}


def switch(column: str, counters: dict[str, str], guard: str | None = None) -> Group:
    """Counters of the rows whose ``column`` equals a code (name -> code), where ``guard`` holds."""
    return Group(counters, column, guard)


def flags(counters: dict[str, str]) -> Group:
    """Counters with conditions of their own (name -> SQL condition)."""
    return Group(counters)


@dataclass(frozen=True)
class Word:
    """Counters summed as one aggregate: field k counts in bits [PACK_BITS k, PACK_BITS (k + 1))."""

    fields: tuple[str, ...]  # counter names, lowest field first
    increment: str  # SQL: what one row adds to the word


def _per_word() -> int:
    """Fields per 128-bit word (the sign bit stays 0)."""
    return 127 // PACK_BITS


def _per_half() -> int:
    """Fields per 64-bit half of a word (the sign bit stays 0)."""
    return 63 // PACK_BITS


def _chunks(names: list[str]) -> list[list[str]]:
    per = _per_word()
    return [names[i : i + per] for i in range(0, len(names), per)]


def _bit(k: int) -> str:
    return f"(CAST(1 AS {PACK_WORD}) << {PACK_BITS * k})"


def _words(group: Group) -> list[Word]:
    """A group's packed words. A switch needs one ``CASE column WHEN ...`` per word and row instead of one
    ``CASE`` per counter: a row matches at most one code, and evaluating per-counter conditions was most
    of a window bucket's cost (docs/benchmarks.md)."""
    if group.column is None:
        return [Word(tuple(names), " + ".join(f"CASE WHEN {group.counters[n]} THEN {_bit(k)} ELSE 0 END"
                                              for k, n in enumerate(names)))
                for names in _chunks(list(group.counters))]
    words = []
    for names in _chunks(list(group.counters)):
        case = (f"CASE {group.column} " + " ".join(f"WHEN '{group.counters[n]}' THEN {_bit(k)}"
                                                   for k, n in enumerate(names)) + " ELSE 0 END")
        words.append(Word(tuple(names), f"CASE WHEN {group.guard} THEN {case} ELSE 0 END" if group.guard else case))
    return words


def _unpack(expr: str, position: int, top: bool) -> str:
    """Field ``position`` of a BIGINT half of a packed word, as an INTEGER (a field holds < PACK_LIMIT).

    The lowest field needs no shift and the half's top field (``top``) no mask: nothing lies above it.
    """
    value = f"({expr} >> {PACK_BITS * position})" if position else expr
    return f"CAST({value} AS INTEGER)" if top else f"CAST({value} & {PACK_LIMIT - 1} AS INTEGER)"


@dataclass(frozen=True)
class Counters:
    """Named counters of one aggregate. Column names carry ``{prefix}`` and a slot: ``{q}`` in templates."""

    groups: tuple[Group, ...]
    packed: bool
    words: tuple[Word, ...] = field(init=False)

    def __post_init__(self) -> None:
        words = [w for g in self.groups for w in _words(g)] if self.packed else []
        object.__setattr__(self, "words", tuple(words))

    @property
    def names(self) -> list[str]:
        return [n for g in self.groups for n in g.counters]

    def _slots(self) -> list[str]:
        """The stored columns' suffixes: (word)h(half) packed, the counter's index plain."""
        if not self.packed:
            return [str(k) for k in range(len(self.names))]
        return [f"{q}h{h}" for q, word in enumerate(self.words) for h in range(-(-len(word.fields) // _per_half()))]

    def aggregates(self, prefix: str) -> list[str]:
        """The aggregate expressions (inside ``GROUP BY customer_key``)."""
        if not self.packed:
            conditions = {n: c for g in self.groups for n, c in g.conditions().items()}
            return [f"COUNT(*) FILTER (WHERE {conditions[n]}) AS {prefix}{k}" for k, n in enumerate(self.names)]
        return [f"CAST(SUM({w.increment}) AS {PACK_WORD}) AS {prefix}{q}" for q, w in enumerate(self.words)]

    def stored(self, prefix: str) -> list[str]:
        """The projection right after the aggregate.

        Packed: each word split into BIGINT halves ``{prefix}{q}h{h}``, so the final join sums and
        unpacks 64-bit integers (128-bit arithmetic over every customer and field cost it more than the
        joins themselves, docs/benchmarks.md). Plain: the counts as they are.
        """
        if not self.packed:
            return self.stored_names(prefix)
        bits = PACK_BITS * _per_half()
        return [f"CAST(({prefix}{slot.split('h')[0]} >> {bits * int(slot.split('h')[1])}) & {(1 << bits) - 1} "
                f"AS BIGINT) AS {prefix}{slot}" for slot in self._slots()]

    def stored_names(self, prefix: str) -> list[str]:
        return [f"{prefix}{slot}" for slot in self._slots()]

    def fields(self, column: str) -> dict[str, str]:
        """Each counter's value as an INTEGER, read from the stored column ``column.format(q=slot)``."""
        if not self.packed:
            return {n: f"CAST({column.format(q=k)} AS INTEGER)" for k, n in enumerate(self.names)}
        per = _per_half()
        return {name: _unpack(column.format(q=f"{q}h{k // per}"), k % per,
                              k % per == per - 1 or k == len(w.fields) - 1)
                for q, w in enumerate(self.words) for k, name in enumerate(w.fields)}
