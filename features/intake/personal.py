"""Find personal data in a source's columns by name and by content, whatever the column is called.

Personal data (names, phone numbers, national ID numbers, e-mail and postal addresses) must never become a
feature, a log line, an MLflow input example or a score-file reason. A source may call such a column
``mobile``, ``姓名`` or ``cert_no``; it may also hide one behind an innocent name. So a column is personal when

* its **name** says so (tokens such as name/姓名, mobile/phone/tel/手机/电话, id_number/身份证/证件, email/邮箱,
  address/地址) and its values could tell people apart (more than ``FEW_VALUES`` distinct values: Telco's
  ``PhoneService`` is Yes/No, no phone number); or
* its **content** does: among up to ``SAMPLE`` non-empty values, at least ``CONTENT_SHARE`` are mainland
  mobile numbers (11 digits, 1[3-9]...), 18-character resident ID numbers with a valid ISO 7064 check digit,
  or e-mail addresses.

A source can declare columns ``personal`` (dropped, no detection needed) or ``not_personal`` (kept: a
false positive such as ``product_name``; content checks still apply to it, so a declared exception can
never let phone numbers through). Findings name the column and the rule, never a value.

Pure: DataFrames in, findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

SAMPLE = 2000
DRAW = 4 * SAMPLE  # values stripped to find SAMPLE non-empty ones (``_sample``)
CONTENT_SHARE = 0.5
FEW_VALUES = 20  # a column with no more distinct values than this identifies no one

# whole tokens of a column name (split on non-alphanumerics and camelCase), or Chinese substrings
NAME_TOKENS = {
    "name": {"name", "fullname", "firstname", "lastname", "surname", "givenname", "username", "nickname"},
    "phone": {"phone", "mobile", "tel", "telephone", "cellphone", "cell", "msisdn", "phoneno", "mobileno"},
    "id_number": {"idno", "idnumber", "idcard", "nationalid", "ssn", "passport", "certno", "certificate",
                  "identity", "idcardno"},
    "email": {"email", "mail", "emailaddress"},
    "address": {"address", "addr", "street", "postcode", "zipcode"},
}
NAME_ZH = {"name": ("姓名", "名字", "客户名", "联系人"), "phone": ("手机", "电话", "联系方式", "手机号"),
           "id_number": ("身份证", "证件", "护照"), "email": ("邮箱", "电子邮件"), "address": ("地址", "住址")}
# a token pair that together name an ID number: id + number / no / card
ID_PAIRS = ({"id"}, {"number", "no", "num", "card", "nr"})

MOBILE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")
RESIDENT_ID = re.compile(r"^\d{17}[\dX]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class Finding:
    column: str
    kind: str      # name | phone | id_number | email | address
    rule: str      # "column name" or "content: ..."; never a value

    def describe(self) -> str:
        return f"{self.column} ({self.kind}: {self.rule})"


def _tokens(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(column))
    return [t for t in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if t]


def by_name(column: str) -> str | None:
    """The kind of personal data a column name announces, or None."""
    text = str(column)
    for kind, subs in NAME_ZH.items():
        if any(s in text for s in subs):
            return kind
    tokens = _tokens(text)
    joined = "".join(tokens)
    for kind, words in NAME_TOKENS.items():
        if any(t in words for t in tokens) or joined in words:
            return kind
    if any(t in ID_PAIRS[0] for t in tokens) and any(t in ID_PAIRS[1] for t in tokens):
        return "id_number"
    return None


def valid_resident_id(value: str) -> bool:
    """An 18-character PRC resident ID number whose ISO 7064 MOD 11-2 check digit is right."""
    if not RESIDENT_ID.match(value):
        return False
    digits = np.frombuffer(value[:17].encode(), dtype=np.uint8) - ord("0")
    return ID_CHECK[int((digits * ID_WEIGHTS).sum() % 11)] == value[17]


def _sample(values: pd.Series) -> pd.Series:
    """Up to ``SAMPLE`` of the non-empty values, stripped, drawn from the whole column (their order does not matter:
    ``by_content`` takes shares). Only a random ``DRAW`` of the present values is stripped (not all of a 2M-row
    chunk, for 2,000: at 5M customers a tenth of validate's chunk checks); a column too blank to give ``SAMPLE``
    values that way is stripped whole."""
    present = np.flatnonzero(values.notna().to_numpy(bool))
    rng = np.random.default_rng(0)

    def stripped(at: np.ndarray) -> pd.Series:
        s = values.iloc[at].astype(str).str.strip()
        return s[s != ""]

    if len(present) > DRAW:
        s = stripped(present[rng.choice(len(present), DRAW, replace=False)])
        if len(s) >= SAMPLE:  # a random draw's first SAMPLE are a random sample
            return s.iloc[:SAMPLE]
    s = stripped(present)
    return s.iloc[np.sort(rng.choice(len(s), SAMPLE, replace=False))] if len(s) > SAMPLE else s


def by_content(values: pd.Series) -> tuple[str, float] | None:
    """(kind, share of sampled values) when personal data dominates a column's content, else None."""
    raw = _sample(values)
    if raw.empty:
        return None
    s = raw.str.replace(r"[\s\-()]", "", regex=True)
    checks = {"phone": s.str.match(MOBILE.pattern), "email": raw.str.match(EMAIL.pattern),
              "id_number": s.str.upper().map(valid_resident_id)}
    for kind, hit in checks.items():
        share = float(hit.mean())
        if share >= CONTENT_SHARE:
            return kind, share
    return None


def find(df: pd.DataFrame, columns: Iterable[str] | None = None, declared: Iterable[str] = (),
         not_personal: Iterable[str] = ()) -> list[Finding]:
    """Personal columns among ``columns`` (default all) of ``df``: declared, by name, or by content."""
    declared, exempt = set(declared), set(not_personal)
    out = []
    for c in (list(df.columns) if columns is None else list(columns)):
        if c in declared:
            out.append(Finding(str(c), "declared", "validate.source personal:"))
            continue
        kind = None if c in exempt else by_name(str(c))
        if kind and df[c].nunique(dropna=True) > min(FEW_VALUES, max(len(df) // 2, 1)):
            out.append(Finding(str(c), kind, "column name"))
            continue
        if df[c].dtype.kind in "biufcmM" and not _may_hold_numbers(df[c]):
            continue
        hit = by_content(df[c])
        if hit:
            out.append(Finding(str(c), hit[0], f"content: {hit[1]:.0%} of sampled values look like one"))
    return out


def _may_hold_numbers(values: pd.Series) -> bool:
    """Integer columns can hold phone or ID numbers read as numbers (13812345678); floats and dates cannot."""
    return values.dtype.kind in "iu" or (values.dtype.kind == "f" and bool(
        (values.dropna() % 1 == 0).all()) and bool((values.dropna().abs() >= 1e10).any()))
