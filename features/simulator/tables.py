"""The book's tables as an insurer's extract would hold them: ids, personal fields, missing values, dirty rows.

Split out of ``features.simulator.book`` (issue 19).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from features.intake.contract import INCOME_BANDS
from features.simulator.params import (
    CH,
    DURATION,
    GIVEN,
    LINES,
    MODES,
    NEEDS,
    PROVINCES,
    PURP,
    SOURCES_ARR,
    SURNAMES,
    SyntheticParams,
)
from features.simulator.world import World


# ---------------------------------------------------------------------------------------------
# Assembling tables
# ---------------------------------------------------------------------------------------------
def _personal(rng: np.random.Generator, w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = w.n
    names = (np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)].astype(object)
             + np.array(GIVEN)[rng.integers(0, len(GIVEN), n)].astype(object)
             + np.where(rng.random(n) < 0.6, np.array(GIVEN)[rng.integers(0, len(GIVEN), n)], "").astype(object))
    phones = np.char.add(np.char.add("1", rng.choice(list("3456789"), n)),
                         np.char.zfill(rng.integers(0, 10**9, n).astype(str), 9)).astype(object)
    births = pd.DatetimeIndex(w.date(w.birth)).strftime("%Y%m%d").to_numpy()
    region = rng.integers(110000, 659999, n).astype(str)
    seq = np.char.zfill(rng.integers(0, 999, n).astype(str), 3)
    body = np.char.add(np.char.add(region, births.astype(str)), seq)
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    digits = np.array([list(b) for b in body], dtype=int)
    check = np.array(list("10X98765432"))[(digits * weights).sum(1) % 11]
    ids = np.char.add(body, check).astype(object)
    return names, phones, ids


def _customers(w: World, H: int, rng: np.random.Generator, cid: np.ndarray) -> pd.DataFrame:
    n = w.n
    prov_names = list(PROVINCES)
    prov = rng.integers(0, len(prov_names), n)
    city = np.array([PROVINCES[prov_names[i]][rng.integers(0, len(PROVINCES[prov_names[i]]))] for i in prov],
                    dtype=object)
    age_now = w.age(H)
    marital = np.where(w.married, "married", np.where(age_now > 70, "widowed", "single")).astype(object)
    marital[w.married & (rng.random(n) < 0.08)] = "divorced"
    names, phones, ids = _personal(rng, w)
    fp = w.first_policy
    customers = pd.DataFrame({
        "customer_id": cid,
        "created_date": w.date(w.created).normalize(),
        "birth_date": w.date(w.birth).normalize(),
        "gender": np.where(w.female, "F", "M").astype(object),
        "province": np.array(prov_names, dtype=object)[prov],
        "city": city,
        "occupation_class": pd.array(w.occupation, dtype="Int64"),
        "income_band": np.array(list(INCOME_BANDS), dtype=object)[w.income],
        "marital_status": marital,
        "children": pd.array(w.children.astype(int), dtype="Int64"),
        "needs_class": np.array(NEEDS, dtype=object)[w.needs],
        "acquisition_source": SOURCES_ARR.astype(object)[w.source],
        "referred_by": np.where(w.referred_by >= 0, cid[np.maximum(w.referred_by, 0)], None),  # type: ignore[call-overload]
        "first_policy_date": pd.Series(w.date(np.where(fp < H, fp, 0))).where(fp < H).dt.normalize().to_numpy(),
        "agent_id": np.where(w.agent >= 0,  # type: ignore[call-overload]
                             np.char.add("A", np.char.zfill(np.maximum(w.agent, 0).astype(str), 4)),
                             None).astype(object),
        "do_not_call": w.dnc.copy(),
        "do_not_sms": w.dns.copy(),
        "name": names, "phone": phones, "id_number": ids,
    })
    customers = customers[w.created < H].reset_index(drop=True)
    return customers


def _policies_claims(w: World, H: int, cid: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    P = w.pol
    k = P.n
    st = np.array(["in_force", "lapsed", "surrendered", "matured"], dtype=object)[P.status[:k]]
    end = P.end[:k]

    def day_or_nat(mask: np.ndarray, days: np.ndarray) -> np.ndarray:
        return pd.Series(w.date(np.where(mask, days, 0))).where(mask).dt.normalize().to_numpy()

    mat_known = P.maturity[:k] < np.iinfo(np.int32).max
    policies = pd.DataFrame({
        "policy_id": np.char.add("P", np.char.zfill(np.arange(1, k + 1).astype(str), 8)).astype(object),
        "customer_id": cid[P.cust[:k]],
        "product_line": np.array(LINES, dtype=object)[P.line[:k]],
        "issue_date": w.date(P.issue[:k]).normalize(),
        "status": st,
        "lapse_date": day_or_nat(P.status[:k] == 1, end),
        "surrender_date": day_or_nat(P.status[:k] == 2, end),
        "maturity_date": day_or_nat(mat_known, np.minimum(P.maturity[:k], 60 * 365)),
        "annual_premium": P.premium[:k],
        "sum_assured": P.sum[:k],
        "payment_mode": np.array(MODES, dtype=object)[P.mode[:k]],
    })
    policies = policies[P.issue[:k] < H].reset_index(drop=True)

    cl = w.claims.frame()
    cstat = np.array(["paid", "rejected", "pending"], dtype=object)[cl["status"]]
    cstat[(H - cl["day"]) <= 30] = "pending"
    claims = pd.DataFrame({
        "claim_id": np.char.add("L", np.char.zfill(np.arange(1, len(cl["pol"]) + 1).astype(str), 8)).astype(object),
        "policy_id": np.char.add("P", np.char.zfill((cl["pol"] + 1).astype(str), 8)).astype(object),
        "customer_id": cid[P.cust[cl["pol"]]],
        "claim_date": w.date(cl["day"]).normalize(),
        "amount": cl["amount"],
        "status": cstat,
    })
    return policies, claims


def _contacts(w: World, rng: np.random.Generator, cid: np.ndarray) -> pd.DataFrame:
    ct = w.contacts.frame()
    m = len(ct["cust"])
    secs = rng.integers(9 * 3600, 20 * 3600, m)
    ts = w.start + pd.to_timedelta(ct["day"].astype(np.int64) * 86400 + secs, unit="s")
    outcome_codes = np.array(["no_answer", "reached", "interested", "quote", "appointment", "purchase",
                              "complaint", "opt_out"], dtype=object)
    outcome = np.where(ct["outcome"] >= 0, outcome_codes[np.maximum(ct["outcome"], 0)], None)
    dur = DURATION[ct["ch"]] * rng.lognormal(0, 0.5, m)
    dur = np.where(ct["outcome"] >= 1, np.round(dur), np.where(ct["ch"] == CH.index("phone"), 0.0, np.nan))
    dur[ct["holdout"]] = np.nan
    agent = w.agent[ct["cust"]]
    agent = np.where(ct["inbound"] & (rng.random(m) < 0.5), -1, agent)
    camp_code = {c["id"]: c["code"] for v in w.campaigns.values() for c in v}
    contacts = pd.DataFrame({
        "contact_id": np.char.add("K", np.char.zfill(np.arange(1, m + 1).astype(str), 9)).astype(object),
        "customer_id": cid[ct["cust"]],
        "contact_ts": ts.astype("datetime64[us]"),
        "channel": np.array(CH, dtype=object)[ct["ch"]],
        "direction": np.where(ct["inbound"], "inbound", "outbound").astype(object),
        "purpose": np.array(PURP, dtype=object)[ct["purpose"]],
        "outcome": outcome,
        "duration_sec": dur,
        "agent_id": np.where(agent >= 0,  # type: ignore[call-overload]
                             np.char.add("A", np.char.zfill(np.maximum(agent, 0).astype(str), 4)),
                             None).astype(object),
        "campaign_id": campaign_codes(ct["campaign"], camp_code),
        "holdout": ct["holdout"],
    })
    # in time order, ties in contact_id order: the ids number the rows as recorded, so a stable sort of the
    # timestamps alone gives the same order as sorting by (contact_ts, contact_id), without comparing 852k texts
    return contacts.take(np.argsort(contacts["contact_ts"].to_numpy(), kind="stable")).reset_index(drop=True)


def campaign_codes(campaign: np.ndarray, codes: dict[int, str]) -> np.ndarray:
    """Each contact's campaign code: None outside a campaign (id -1) or for an id without a code."""
    table = np.full(max(codes, default=-1) + 2, None, dtype=object)  # the last slot answers -1 and unknown ids
    for k, code in codes.items():
        table[k] = code
    ids = np.asarray(campaign, dtype=np.int64)
    return table[np.where((ids >= 0) & (ids < len(table) - 1), ids, len(table) - 1)]


def book_tables(w: World, p: SyntheticParams, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The four tables at the as-of date; ``rng`` draws in a fixed order (customers, then contacts)."""
    H = p.size.history_days
    cid = np.char.add("C", np.char.zfill(np.arange(1, w.n + 1).astype(str), 7)).astype(object)
    customers = _customers(w, H, rng, cid)
    policies, claims = _policies_claims(w, H, cid)
    contacts = _contacts(w, rng, cid)
    return {"customers": customers, "policies": policies, "claims": claims, "contacts": contacts}


def add_missing(t: dict[str, pd.DataFrame], share: float, rng: np.random.Generator) -> None:
    """Blank optional fields the way real archives do (incomplete profiles, unknown sums)."""
    cu = t["customers"]
    for col, mult in (("occupation_class", 1.0), ("income_band", 1.6), ("marital_status", 0.6),
                      ("children", 1.0), ("city", 0.4), ("province", 0.2), ("name", 0.1), ("phone", 1.0)):
        m = rng.random(len(cu)) < share * mult
        cu.loc[m, col] = None
    po = t["policies"]
    po.loc[rng.random(len(po)) < share * 0.5, "sum_assured"] = np.nan


def inject_dirt(t: dict[str, pd.DataFrame], share: float, as_of: dt.date,
                 rng: np.random.Generator) -> dict[str, dict[str, int]]:
    """Corrupt a small share of rows in the ways real exports go wrong; return what was done.

    Columns are cast to text where a corruption needs a non-conforming value, as a CSV export would.
    """
    done: dict[str, dict[str, int]] = {}
    if share <= 0:
        return done
    after = pd.Timestamp(as_of) + pd.Timedelta(days=rng.integers(3, 60))

    used: dict[int, np.ndarray] = {}  # per table, the rows corrupted so far

    def pick(df: pd.DataFrame, k: int) -> np.ndarray:
        """Rows not corrupted yet in this table, so every injected fault is a row of its own."""
        taken = used.setdefault(id(df), np.zeros(len(df), bool))
        free = np.flatnonzero(~taken)  # ascending, as np.setdiff1d gave it: the same rows drawn
        out = rng.choice(free, size=min(k, len(free)), replace=False) if len(free) else np.array([], int)
        taken[out] = True
        return out

    def count(table: str, rule: str, k: int) -> None:
        if k:
            done.setdefault(table, {})[rule] = done.setdefault(table, {}).get(rule, 0) + int(k)

    cu = t["customers"]
    k = max(1, int(len(cu) * share / 4))
    for col in ("gender", "income_band"):
        cu[col] = cu[col].astype(object)
    i = pick(cu, k)
    cu.loc[i, "gender"] = "X"
    count("customers", "allowed_values", len(i))
    i = pick(cu, k)
    cu.loc[i, "birth_date"] = after
    count("customers", "future_date", len(i))
    dup = cu.iloc[pick(cu, k)].copy()
    dup["city"] = "未知"
    t["customers"] = pd.concat([cu, dup], ignore_index=True)
    count("customers", "duplicate_key", len(dup))

    po = t["policies"]
    k = max(1, int(len(po) * share / 4))
    i = pick(po, k)
    po.loc[i, "annual_premium"] = -po.loc[i, "annual_premium"]
    count("policies", "range", len(i))
    po["status"] = po["status"].astype(object)
    i = pick(po, k)
    po.loc[i, "status"] = "Lapsed "
    count("policies", "allowed_values", len(i))
    i = pick(po, k)
    po.loc[i, "customer_id"] = "C9" + pd.Series(range(len(i))).astype(str).str.zfill(7).to_numpy()
    count("policies", "orphan_reference", len(i))

    cl = t["claims"]
    if len(cl):
        k = max(1, int(len(cl) * share / 2))
        i = pick(cl, k)
        cl.loc[i, "amount"] = -1.0
        count("claims", "range", len(i))

    co = t["contacts"]
    k = max(1, int(len(co) * share / 4))
    co["channel"] = co["channel"].astype(object)
    i = pick(co, k)
    co.loc[i, "channel"] = "fax"
    count("contacts", "allowed_values", len(i))
    i = pick(co, k)
    co.loc[i, "contact_ts"] = after + pd.Timedelta(hours=10)
    count("contacts", "future_date", len(i))
    live = co.index[~co["holdout"].astype(bool) & co["channel"].isin(CH)].to_numpy()
    live = live[~used[id(co)][live]]  # not a row corrupted above
    src = co.loc[rng.choice(live, size=min(k, len(live)), replace=False)].copy()
    src["contact_id"] = "KD" + pd.Series(range(len(src))).astype(str).str.zfill(8).to_numpy()
    t["contacts"] = pd.concat([co, src], ignore_index=True)
    count("contacts", "duplicate_event", len(src))
    return done
