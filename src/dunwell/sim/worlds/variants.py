"""The knobs of the realistic world, and the named variants `builtin:NAME` selects.

`realistic` is the development world. The others change one family of assumptions each
(payday calendars, decline mix, timezones), so a policy tuned on `realistic` can be checked
on worlds it was not tuned on. Shares are integer weights; sources in docs/simulation.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from dunwell.sim.worlds.calendars import PaySchedule as P


class Cause(StrEnum):
    """The hidden reason behind a first decline: what would actually fix it."""

    FUNDS = "funds"  # not enough money or credit until the next payday
    ISSUER = "issuer"  # do_not_honor / generic: the issuer approves some attempts
    TEMPORARY = "temporary"  # processing errors, issuer hiccups: clears within hours
    EXPIRED = "expired"  # only a new card helps (the customer, or an account updater)
    SCA = "sca"  # only the customer's authentication helps
    LOST = "lost"  # lost or stolen: never this card again; a new card helps
    FRAUD = "fraud"  # the issuer suspects fraud: nothing helps


class Engagement(StrEnum):
    """How a customer treats the messages they get."""

    IGNORE = "ignore"  # never opens them
    READ = "read"  # opens some, acts now and then
    ACT = "act"  # acts on the first clear message
    COMPLAIN = "complain"  # is annoyed: cancels after a few messages


US_PAY: tuple[tuple[P, int], ...] = (
    (P.WEEKLY, 32),
    (P.BIWEEKLY, 37),
    (P.SEMIMONTHLY, 20),
    (P.MONTHLY_FIRST, 5),
    (P.MONTHLY_LAST_BUSINESS_DAY, 6),
)
MONTHLY_PAY: tuple[tuple[P, int], ...] = (
    (P.MONTHLY_LAST_BUSINESS_DAY, 70),
    (P.MONTHLY_FIRST, 10),
    (P.WEEKLY, 10),
    (P.IRREGULAR, 10),
)


@dataclass(frozen=True)
class RealisticParams:
    name: str
    # (IANA zone, ISO country, weight): where customers live.
    zones: tuple[tuple[str, str, int], ...]
    # Pay schedule weights by country; "*" for every country not listed.
    pay: dict[str, tuple[tuple[P, int], ...]]
    gig_share: float  # extra share of customers with irregular income, in every country
    causes: tuple[tuple[Cause, int], ...]  # the decline mix
    sca_countries: frozenset[str]  # where issuers ask for authentication (SCA, AFA)
    engagement: tuple[tuple[Engagement, int], ...]
    account_updater_share: float  # expired cards the network's updater replaces by itself
    provider_outages_per_30d: float
    issuer_outages_per_30d: float  # per issuer
    currency: str = "USD"
    brands: tuple[tuple[str, int], ...] = (("visa", 55), ("mastercard", 35), ("amex", 10))
    # The payment providers: the first reports every failure and is the one that goes down
    # (`provider_outages_per_30d`); the others are backups that can charge the cards when
    # they are network tokens (`card_kind`), per the routing table the world hands the engine.
    providers: tuple[str, ...] = ("sim",)
    card_kind: str | None = None
    provider_outage_minutes: tuple[int, int] = (60, 6 * 60)  # shortest, longest (exclusive)


REALISTIC = RealisticParams(
    name="realistic",
    zones=(
        ("America/New_York", "US", 22),
        ("America/Chicago", "US", 10),
        ("America/Los_Angeles", "US", 12),
        ("America/Toronto", "CA", 5),
        ("America/Sao_Paulo", "BR", 6),
        ("America/Mexico_City", "MX", 3),
        ("Europe/London", "GB", 12),
        ("Europe/Berlin", "DE", 9),
        ("Europe/Paris", "FR", 7),
        ("Asia/Kolkata", "IN", 4),
        ("Asia/Tokyo", "JP", 5),
        ("Australia/Sydney", "AU", 5),
    ),
    pay={
        "US": US_PAY,
        "CA": ((P.BIWEEKLY, 50), (P.SEMIMONTHLY, 25), (P.WEEKLY, 15), (P.MONTHLY_FIRST, 10)),
        "BR": ((P.MONTHLY_5TH_BUSINESS_DAY, 75), (P.SEMIMONTHLY, 25)),
        "JP": ((P.MONTHLY_25TH, 85), (P.MONTHLY_LAST_BUSINESS_DAY, 15)),
        "AU": ((P.BIWEEKLY, 50), (P.WEEKLY, 20), (P.MONTHLY_LAST_BUSINESS_DAY, 30)),
        "*": MONTHLY_PAY,
    },
    gig_share=0.08,
    causes=(
        (Cause.FUNDS, 38),
        (Cause.EXPIRED, 20),
        (Cause.ISSUER, 17),
        (Cause.TEMPORARY, 10),
        (Cause.SCA, 6),
        (Cause.LOST, 6),
        (Cause.FRAUD, 3),
    ),
    sca_countries=frozenset({"GB", "DE", "FR", "IN"}),
    engagement=(
        (Engagement.IGNORE, 35),
        (Engagement.READ, 30),
        (Engagement.ACT, 25),
        (Engagement.COMPLAIN, 10),
    ),
    account_updater_share=0.5,
    provider_outages_per_30d=1.0,
    issuer_outages_per_30d=0.5,
)

VARIANTS: dict[str, RealisticParams] = {
    "realistic": REALISTIC,
    # Two providers, cards held as network tokens either can charge; the first goes down for
    # 6-12 hours about three times a month, the backup never (issue 4: retries move to the
    # backup or later, none is lost). An assumption for the test, not a measured rate.
    "realistic-two-psp": replace(
        REALISTIC,
        name="realistic-two-psp",
        providers=("psp_a", "psp_b"),
        card_kind="network_token",
        provider_outages_per_30d=3.0,
        provider_outage_minutes=(6 * 60, 12 * 60),
    ),
    # Everyone paid monthly, mostly on the last business day: few paydays to aim at.
    "realistic-monthly-pay": replace(
        REALISTIC, name="realistic-monthly-pay", pay={"*": MONTHLY_PAY}, gig_share=0.02
    ),
    # Everyone paid weekly or irregularly: money comes back often, and soon.
    "realistic-weekly-pay": replace(
        REALISTIC,
        name="realistic-weekly-pay",
        pay={"*": ((P.WEEKLY, 60), (P.IRREGULAR, 40))},
        gig_share=0.2,
    ),
    # Hard declines dominate: expired and lost cards, fewer funds problems.
    "realistic-hard-declines": replace(
        REALISTIC,
        name="realistic-hard-declines",
        causes=(
            (Cause.FUNDS, 20),
            (Cause.EXPIRED, 32),
            (Cause.ISSUER, 15),
            (Cause.TEMPORARY, 8),
            (Cause.SCA, 10),
            (Cause.LOST, 11),
            (Cause.FRAUD, 4),
        ),
        account_updater_share=0.3,
    ),
    # Customers in Asia and Oceania: other timezones, holidays and pay calendars.
    "realistic-apac": replace(
        REALISTIC,
        name="realistic-apac",
        zones=(
            ("Asia/Tokyo", "JP", 35),
            ("Australia/Sydney", "AU", 25),
            ("Asia/Kolkata", "IN", 20),
            ("Asia/Singapore", "SG", 10),
            ("Pacific/Auckland", "NZ", 10),
        ),
        pay={
            "JP": ((P.MONTHLY_25TH, 85), (P.MONTHLY_LAST_BUSINESS_DAY, 15)),
            "AU": ((P.BIWEEKLY, 50), (P.WEEKLY, 20), (P.MONTHLY_LAST_BUSINESS_DAY, 30)),
            "NZ": ((P.BIWEEKLY, 45), (P.WEEKLY, 35), (P.MONTHLY_LAST_BUSINESS_DAY, 20)),
            "*": ((P.MONTHLY_LAST_BUSINESS_DAY, 60), (P.MONTHLY_FIRST, 40)),
        },
    ),
}
