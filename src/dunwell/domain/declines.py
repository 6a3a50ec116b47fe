"""Decline classification: a provider's code, a network code and an advice code to a lane.

The codes themselves are data (`dunwell/providers/codes/*.csv`, loaded by
`dunwell.providers.taxonomy`); this module holds the value they are loaded into and the pure
precedence that reads it:

1. a Mastercard advice code that says never (03, 21) and a Visa category 1 response code
   (Visa cards only) override everything: do_not_retry;
2. Mastercard advice 01 sends the case to update_payment_method, unless the provider's code
   is already a never-retry lane (a "never" from either side wins);
3. the provider's own code table (by provider: stripe, adyen, braintree, ...);
4. the network (ISO 8583) response code, when the provider's code is not in its table;
5. otherwise an unknown code: a conservative lane, flagged `known=False`.
Mastercard advice 24-30 ("retry after ...") delays whatever lane the steps above chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from dunwell.domain.events import DeclineReport
from dunwell.domain.lanes import NEVER_RETRY_LANES, Lane

# Where a decline sits in the networks' own retry rules; Visa's four categories, named, plus
# refusals that never came from the network at all (a PSP's risk engine, its configuration).
NETWORK_CATEGORIES = (
    "never_approve",  # Visa category 1: the issuer will never approve
    "cannot_approve_now",  # Visa category 2: the issuer cannot approve at this time
    "fix_and_retry",  # Visa category 3: cannot approve with these details
    "generic",  # Visa category 4: everything else the issuer says
    "not_issuer",  # the provider refused it itself
)
VISA_CATEGORY_NAMES = {
    "1": "never_approve",
    "2": "cannot_approve_now",
    "3": "fix_and_retry",
    "4": "generic",
}

# Mastercard advice code effects, as the advice file names them.
ADVICE_NEVER = "never_retry"
ADVICE_UPDATE = "update_payment_method"
ADVICE_WAIT = "wait"
ADVICE_NONE = "none"
ADVICE_EFFECTS = (ADVICE_NEVER, ADVICE_UPDATE, ADVICE_WAIT, ADVICE_NONE)

# An unknown code must not lead to aggressive retrying: the retry_soon lane's few spaced
# retries at most, and the code is reported (metric, `dunwell codes unknown`) to be added.
UNKNOWN_CODE_LANE = Lane.RETRY_SOON


@dataclass(frozen=True, slots=True)
class CodeRow:
    """One row of a code table, kept whole so every classification can cite it."""

    table: str  # the file's stem, e.g. "stripe_decline_codes"
    line: int  # line in that file (the header is line 1)
    code: str  # as the source spells it
    description: str
    lane: Lane | None  # None only for advice rows that carry no lane of their own
    network_category: str | None
    source: str  # the public page this row comes from
    label: str  # how the rule text names the table, e.g. "stripe decline_code"
    extra: tuple[tuple[str, str], ...] = ()  # soft_hard, category, effect, ...

    @property
    def file(self) -> str:
        return f"{self.table}.csv"

    def get(self, key: str) -> str | None:
        return dict(self.extra).get(key)


def _frozen(mapping: Mapping[str, CodeRow] | None = None) -> Mapping[str, CodeRow]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class DeclineTaxonomy:
    """Every known code, by table, keyed by its normalised spelling."""

    # provider name -> its tables, in the order they are consulted
    providers: Mapping[str, tuple[Mapping[str, CodeRow], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    network: Mapping[str, CodeRow] = field(default_factory=_frozen)  # ISO 8583
    visa: Mapping[str, CodeRow] = field(default_factory=_frozen)  # Visa categories 1-4
    advice: Mapping[str, CodeRow] = field(default_factory=_frozen)  # Mastercard MAC
    # a provider name that speaks another's vocabulary, e.g. the simulator speaks Stripe's
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # classify_decline's answers on these tables, by (report, brand): the tables never change
    # and the classification reads nothing else. Not a field anyone sets or compares.
    classified: dict[tuple[DeclineReport, str | None], Classification] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def provider_key(self, provider: str | None) -> str:
        name = (provider or "").strip().lower()
        return self.aliases.get(name, name)

    def provider_row(self, provider: str | None, code: str | None) -> CodeRow | None:
        for table in self.providers.get(self.provider_key(provider), ()):
            for key in provider_keys(code):
                if key in table:
                    return table[key]
        return None

    def network_row(self, code: str | None) -> CodeRow | None:
        key = network_key(code)
        return self.network.get(key) if key else None

    def visa_row(self, code: str | None) -> CodeRow | None:
        key = network_key(code)
        return self.visa.get(key) if key else None

    def advice_row(self, code: str | None) -> CodeRow | None:
        key = network_key(code)
        return self.advice.get(key) if key else None

    def rows(self) -> tuple[CodeRow, ...]:
        """Every row once, table by table."""
        seen: dict[tuple[str, int], CodeRow] = {}
        tables = [t for ts in self.providers.values() for t in ts]
        for table in [*tables, self.network, self.visa, self.advice]:
            for row in table.values():
                seen.setdefault((row.table, row.line), row)
        return tuple(sorted(seen.values(), key=lambda r: (r.table, r.line)))


_DASHES_AND_QUOTES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2019": "'"})


def normalise_text(value: str) -> str:
    # Providers' pages and payloads mix en dashes and typographic quotes with plain ones.
    return " ".join(value.strip().lower().translate(_DASHES_AND_QUOTES).split())


def provider_keys(code: str | None) -> tuple[str, ...]:
    """The spellings a provider code is looked up by: the whole text, then its first token,
    so "2001 Insufficient Funds" and "12: Not enough balance" still find their rows."""
    text = normalise_text(code or "")
    if not text:
        return ()
    head = text.replace(":", " ").split()[0]
    return (text,) if head == text else (text, head)


def network_key(code: str | None) -> str:
    """ "5", "05" and "05 : Do not honor" are the same response code."""
    text = (code or "").strip().upper()
    if not text:
        return ""
    head = text.split(":")[0].split()
    text = head[0] if head else text
    return text.zfill(2) if text.isdigit() and len(text) == 1 else text


@dataclass(frozen=True, slots=True)
class Classification:
    lane: Lane
    rule: str  # which table row decided, for the explanation
    retry_allowed: bool
    retry_after: timedelta | None = None  # Mastercard advice codes 24-30
    known: bool = True
    provider: str | None = None
    provider_code: str | None = None
    network_code: str | None = None
    network_category: str | None = None
    advice_code: str | None = None
    source: CodeRow | None = None  # the row that decided the lane

    def explain(self) -> str:
        text = f"lane {self.lane.value} by {self.rule}"
        if self.retry_after is not None:
            text += f"; next attempt not before {self.retry_after} after this decline"
        if self.source is not None:
            text += f" (source: {self.source.file} line {self.source.line}, {self.source.source})"
        return text


def _rule(row: CodeRow) -> str:
    return f"{row.label} {row.code}"


def packaged_taxonomy() -> DeclineTaxonomy:
    """The code tables shipped with dunwell, read once per process by the providers layer.
    Only a default for callers that pass none; the shell passes its taxonomy explicitly."""
    from dunwell.providers.taxonomy import builtin_taxonomy

    return builtin_taxonomy()


# Distinct reports (code, advice, message) a taxonomy remembers answers for: a few hundred
# in practice; the bound keeps free-text messages from growing it without end.
_CLASSIFIED_LIMIT = 4096


def classify_decline(
    report: DeclineReport, brand: str | None, taxonomy: DeclineTaxonomy | None = None
) -> Classification:
    """Map one decline report to a lane. Network "never" rules win over the provider's code.

    A pure function of the report, the brand and the tables: answered once per distinct
    report and brand (every decline is classified by the decision and again by the metrics),
    then from the taxonomy's memo."""
    taxonomy = taxonomy if taxonomy is not None else packaged_taxonomy()
    memo = taxonomy.classified
    found = memo.get((report, brand))
    if found is None:
        if len(memo) >= _CLASSIFIED_LIMIT:
            memo.clear()
        found = memo[(report, brand)] = _classify(report, brand, taxonomy)
    return found


def _classify(
    report: DeclineReport, brand: str | None, taxonomy: DeclineTaxonomy
) -> Classification:
    # Providers spell brands their own way ("Visa", "visadebit"): any Visa is held to Visa.
    is_visa = (brand or "").strip().lower().startswith("visa")
    advice = taxonomy.advice_row(report.advice_code)
    effect = advice.get("effect") if advice else None
    visa = taxonomy.visa_row(report.network_code) if is_visa else None
    network = taxonomy.network_row(report.network_code)
    own = taxonomy.provider_row(report.provider, report.provider_code)

    category = None
    if visa is not None:
        category = VISA_CATEGORY_NAMES.get(visa.get("category") or "")
    category = category or (network.network_category if network else None)
    category = category or (own.network_category if own else None)

    def result(
        lane: Lane,
        rule: str,
        source: CodeRow | None,
        retry_after: timedelta | None = None,
        known: bool = True,
    ) -> Classification:
        return Classification(
            lane=lane,
            rule=rule,
            retry_allowed=lane not in NEVER_RETRY_LANES,
            retry_after=retry_after,
            known=known,
            provider=(report.provider or "").strip().lower() or None,
            provider_code=report.provider_code,
            network_code=report.network_code,
            network_category=category,
            advice_code=report.advice_code,
            source=source,
        )

    if advice is not None and effect == ADVICE_NEVER:
        return result(Lane.DO_NOT_RETRY, _rule(advice), advice)
    if visa is not None and visa.get("category") == "1":
        return result(Lane.DO_NOT_RETRY, f"visa category 1 code {visa.code}", visa)

    base = own or network
    if advice is not None and effect == ADVICE_UPDATE:
        if base is None or base.lane not in NEVER_RETRY_LANES:
            return result(Lane.UPDATE_PAYMENT_METHOD, _rule(advice), advice)

    retry_after = None
    if advice is not None and effect == ADVICE_WAIT:
        retry_after = timedelta(hours=int(advice.get("retry_after_hours") or 0))
    if base is None or base.lane is None:
        code = report.provider_code or ""
        rule = f"unknown code {code or '(none)'!r}"
        if taxonomy.provider_key(report.provider) not in taxonomy.providers:
            rule += f" (no code table for provider {report.provider or '(none)'!r})"
        lane, source, known = UNKNOWN_CODE_LANE, None, False
    else:
        lane, rule, source, known = base.lane, _rule(base), base, True
    if retry_after is not None and advice is not None:
        rule += f" + {_rule(advice)}"
    return result(lane, rule, source, retry_after, known)
