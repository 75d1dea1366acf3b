"""Messages and formats per language: every text a policyholder reads comes from the gettext catalogues in
``ubi/portal/locale/<ll_CC>/LC_MESSAGES/messages.po``; amounts, numbers and dates are formatted by Babel (CLDR).

Message ids are keys (``statement.title``), not English sentences, so English is a catalogue like any other and
a text missing from one shows up in a test rather than as English in a Chinese statement. The ``.po`` files are the
source and are compiled in memory when first used (``babel.messages.mofile.write_mo``): a fresh clone needs no
build step and can never run a stale ``.mo``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

from ubi.common.errors import PortalError

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
# policy language (BCP 47, as stored) -> catalogue folder and CLDR locale
LANGUAGES = {"en": "en", "zh-CN": "zh_CN"}


@lru_cache(maxsize=None)
def catalogue(lang: str) -> Translations:
    folder = LANGUAGES.get(lang)
    if folder is None:
        raise PortalError(f"language {lang!r}: expected one of {', '.join(LANGUAGES)}")
    po = LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fh:
        cat = read_po(fh, locale=folder)
    buf = io.BytesIO()
    write_mo(buf, cat)
    buf.seek(0)
    return Translations(fp=buf)


def keys(lang: str) -> dict[str, str]:
    """Every message id of a catalogue with its text (plural forms joined by '|'), for tests and checks."""
    with (LOCALE_DIR / LANGUAGES[lang] / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        cat = read_po(fh, locale=LANGUAGES[lang])
    out = {}
    for m in cat:
        if not m.id:
            continue
        mid = m.id[0] if isinstance(m.id, tuple) else m.id
        out[mid] = "|".join(m.string) if isinstance(m.string, tuple) else m.string
    return out


@dataclass(frozen=True)
class Lang:
    """One language's texts and formats; ``currency`` is the book's (the rulebook prices in one currency)."""

    code: str
    currency: str = "EUR"
    tz: str = "UTC"

    @property
    def locale(self) -> Locale:
        return Locale.parse(LANGUAGES[self.code])

    @property
    def html_lang(self) -> str:
        return self.code

    def t(self, key: str, **kw: object) -> str:
        text = catalogue(self.code).gettext(key)
        return text % kw if kw else text

    def tn(self, key: str, plural_key: str, n: int, **kw: object) -> str:
        return catalogue(self.code).ngettext(key, plural_key, n) % {"n": self.integer(n), **kw}

    def money(self, x: Decimal | float) -> str:
        return format_currency(Decimal(str(x)), self.currency, locale=self.locale)

    def signed_money(self, x: Decimal) -> str:
        s = self.money(abs(x))
        return f"+{s}" if x > 0 else f"−{s}" if x < 0 else s

    def num(self, x: float, places: int = 2) -> str:
        return format_decimal(x, "#,##0." + "0" * places if places else "#,##0", locale=self.locale)

    def integer(self, n: int) -> str:
        return format_decimal(n, "#,##0", locale=self.locale)

    def signed_pct(self, x: Decimal | float) -> str:
        body = format_decimal(abs(x), "#,##0.0", locale=self.locale)
        return f"+{body}%" if x > 0 else f"−{body}%" if x < 0 else f"{body}%"

    def pct(self, share: float) -> str:
        return format_decimal(share * 100, "#,##0", locale=self.locale) + "%"

    def month(self, d: date) -> str:
        return format_skeleton("yMMMM", d, locale=self.locale)

    def month_short(self, d: date) -> str:
        return format_skeleton("yMMM", d, locale=self.locale)

    def date(self, d: date) -> str:
        return format_date(d, "long", locale=self.locale)

    def local(self, ts: datetime) -> datetime:
        """A stored UTC timestamp (naive) in the portal's time zone."""
        return ts.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(self.tz))

    def day(self, ts: datetime) -> str:
        return format_date(self.local(ts), "medium", locale=self.locale)

    def day_short(self, ts: datetime) -> str:
        """Weekday and day for a table within a month ("Tue, Nov 17", "11月17日周二")."""
        return format_skeleton("MMMEd", self.local(ts), locale=self.locale)

    def time(self, ts: datetime) -> str:
        return format_skeleton("Hm", self.local(ts), locale=self.locale)

    def datetime(self, ts: datetime) -> str:
        return format_datetime(self.local(ts), "medium", tzinfo=ZoneInfo(self.tz), locale=self.locale)
