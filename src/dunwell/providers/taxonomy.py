"""Load the decline code tables (`codes/*.csv`) into one immutable `DeclineTaxonomy`.

Each file is one public source. Loading is strict: a row without a valid lane, category or
source URL, or a code listed twice, is an error naming the file and line, so a bad edit
fails at start-up and in the tests, never as a silent misclassification in production.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from dunwell.domain.declines import (
    ADVICE_EFFECTS,
    ADVICE_NEVER,
    ADVICE_UPDATE,
    ADVICE_WAIT,
    NETWORK_CATEGORIES,
    VISA_CATEGORY_NAMES,
    CodeRow,
    DeclineTaxonomy,
    network_key,
    normalise_text,
)
from dunwell.domain.lanes import Lane


@dataclass(frozen=True)
class TableSpec:
    table: str  # file stem
    label: str  # how a rule names it
    columns: tuple[str, ...]  # required besides code, description and source
    by_description: bool = False  # the provider sends its text as often as its number
    network: bool = False  # codes are network codes: "5" and "05" are one code


STRIPE_DECLINE = TableSpec(
    "stripe_decline_codes", "stripe decline_code", ("lane", "network_category")
)
STRIPE_ERROR = TableSpec("stripe_error_codes", "stripe error code", ("lane", "network_category"))
ADYEN = TableSpec(
    "adyen_refusal_reasons",
    "adyen refusal reason",
    ("lane", "network_category"),
    by_description=True,
)
BRAINTREE = TableSpec(
    "braintree_processor_responses",
    "braintree processor response",
    ("soft_hard", "lane", "network_category"),
    by_description=True,
)
ISO8583 = TableSpec(
    "iso8583_response_codes",
    "iso 8583 response code",
    ("lane", "network_category"),
    network=True,
)
VISA = TableSpec(
    "visa_decline_categories",
    "visa decline category code",
    ("category", "lane", "retry_allowed"),
    network=True,
)
MASTERCARD = TableSpec(
    "mastercard_advice_codes",
    "mastercard advice code",
    ("effect", "lane", "retry_after_hours"),
    network=True,
)

# Provider name -> its tables, in the order they are consulted (a Stripe decline_code is
# more specific than the error code that carries it).
PROVIDER_TABLES: Mapping[str, tuple[TableSpec, ...]] = {
    "stripe": (STRIPE_DECLINE, STRIPE_ERROR),
    "adyen": (ADYEN,),
    "braintree": (BRAINTREE,),
}
# The built-in simulators report Stripe's decline codes; a report naming no provider at all
# (written before `decline.provider` existed) meant Stripe's, the only table there was.
ALIASES: Mapping[str, str] = {"sim": "stripe", "": "stripe"}
ALL_TABLES = (STRIPE_DECLINE, STRIPE_ERROR, ADYEN, BRAINTREE, ISO8583, VISA, MASTERCARD)


class TaxonomyError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid decline code tables:\n  " + "\n  ".join(problems))


Reader = Callable[[str], str]  # file name -> its text


def _packaged(name: str) -> str:
    return (resources.files("dunwell.providers") / "codes" / name).read_text(encoding="utf-8")


@cache
def builtin_taxonomy() -> DeclineTaxonomy:
    """The tables shipped with dunwell, loaded once per process."""
    return load_taxonomy(_packaged)


def load_directory(directory: Path) -> DeclineTaxonomy:
    return load_taxonomy(lambda name: (directory / name).read_text(encoding="utf-8"))


def load_taxonomy(read: Reader) -> DeclineTaxonomy:
    problems: list[str] = []
    tables = {spec.table: _load_table(spec, read, problems) for spec in ALL_TABLES}
    providers: dict[str, tuple[Mapping[str, CodeRow], ...]] = {}
    for provider, specs in PROVIDER_TABLES.items():
        _check_overlaps(provider, [tables[s.table] for s in specs], problems)
        providers[provider] = tuple(tables[s.table] for s in specs)
    if problems:
        raise TaxonomyError(problems)
    return DeclineTaxonomy(
        providers=MappingProxyType(providers),
        network=tables[ISO8583.table],
        visa=tables[VISA.table],
        advice=tables[MASTERCARD.table],
        aliases=MappingProxyType(dict(ALIASES)),
    )


def _load_table(spec: TableSpec, read: Reader, problems: list[str]) -> Mapping[str, CodeRow]:
    name = f"{spec.table}.csv"
    try:
        text = read(name)
    except OSError as exc:
        problems.append(f"{name}: cannot read: {exc}")
        return MappingProxyType({})
    reader = csv.DictReader(io.StringIO(text))
    required = ("code", "description", *spec.columns, "source")
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        problems.append(f"{name}: missing columns {', '.join(missing)}")
        return MappingProxyType({})
    keyed: dict[str, CodeRow] = {}
    for line, raw in enumerate(reader, start=2):
        row = _row(spec, line, raw, problems)
        if row is None:
            continue
        for key in _keys(spec, row):
            if key in keyed and keyed[key].line != line:
                problems.append(
                    f"{name}:{line}: {key!r} is already listed on line {keyed[key].line}"
                )
            keyed[key] = row
    return MappingProxyType(keyed)


def _keys(spec: TableSpec, row: CodeRow) -> Iterable[str]:
    if spec.network:
        return (network_key(row.code),)
    keys = [normalise_text(row.code)]
    if spec.by_description:
        keys.append(normalise_text(row.description))
    return dict.fromkeys(keys)


def _row(spec: TableSpec, line: int, raw: dict[str, str], problems: list[str]) -> CodeRow | None:
    where = f"{spec.table}.csv:{line}"
    values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
    bad: list[str] = []
    code, source = values.get("code", ""), values.get("source", "")
    if not code:
        bad.append("empty code")
    if not values.get("description"):
        bad.append("empty description")
    if not source.startswith("https://"):
        bad.append(f"source must be a public https URL, not {source!r}")
    lane_text = values.get("lane", "")
    lane: Lane | None = None
    if lane_text:
        try:
            lane = Lane(lane_text)
        except ValueError:
            bad.append(f"unknown lane {lane_text!r}; lanes: {', '.join(lane_names())}")
    category = values.get("network_category") or None
    if spec is VISA:
        visa_category = values.get("category", "")
        if visa_category not in VISA_CATEGORY_NAMES:
            bad.append(f"Visa category must be 1-4, not {visa_category!r}")
        category = VISA_CATEGORY_NAMES.get(visa_category)
        if values.get("retry_allowed") not in ("true", "false"):
            bad.append("retry_allowed must be true or false")
        elif (values["retry_allowed"] == "false") != (visa_category == "1"):
            bad.append("only category 1 forbids a retry")
    if spec is MASTERCARD:
        bad.extend(_advice_problems(values, lane))
    elif lane is None and not lane_text:
        bad.append("empty lane")
    if spec not in (VISA, MASTERCARD) and category not in NETWORK_CATEGORIES:
        bad.append(f"network_category must be one of {', '.join(NETWORK_CATEGORIES)}")
    if spec is BRAINTREE and values.get("soft_hard") not in ("soft", "hard"):
        bad.append("soft_hard must be soft or hard, as Braintree lists it")
    if bad:
        problems.extend(f"{where}: {b}" for b in bad)
        return None
    extra = tuple(
        (c, values[c]) for c in spec.columns if c not in ("lane", "network_category") and c
    )
    return CodeRow(
        table=spec.table,
        line=line,
        code=code,
        description=values["description"],
        lane=lane,
        network_category=category,
        source=source,
        label=spec.label,
        extra=extra,
    )


def _advice_problems(values: dict[str, str], lane: Lane | None) -> list[str]:
    effect = values.get("effect", "")
    if effect not in ADVICE_EFFECTS:
        return [f"effect must be one of {', '.join(ADVICE_EFFECTS)}"]
    hours = values.get("retry_after_hours", "")
    if effect == ADVICE_WAIT:
        if not hours.isdigit() or int(hours) <= 0:
            return ["a wait needs retry_after_hours, a positive whole number"]
    elif hours:
        return ["only a wait has retry_after_hours"]
    expected = {ADVICE_NEVER: Lane.DO_NOT_RETRY, ADVICE_UPDATE: Lane.UPDATE_PAYMENT_METHOD}
    if lane is not expected.get(effect):
        return [f"effect {effect} goes with lane {expected.get(effect) or '(empty)'}"]
    return []


def _check_overlaps(
    provider: str, tables: list[Mapping[str, CodeRow]], problems: list[str]
) -> None:
    """A code in two of one provider's tables (Stripe's expired_card is both a decline code
    and an error code) must mean the same lane in both, or the first table would hide a
    disagreement."""
    for i, first in enumerate(tables):
        for later in tables[i + 1 :]:
            for key in first.keys() & later.keys():
                a, b = first[key], later[key]
                if a.lane is not b.lane:
                    problems.append(
                        f"{provider}: {key!r} is {a.lane} in {a.file}:{a.line} "
                        f"but {b.lane} in {b.file}:{b.line}"
                    )


def lane_names() -> list[str]:
    return [lane.value for lane in Lane]
