"""Which stages need which source capability (features/intake/capabilities.py) to run at all.

Stage names belong to the wiring, so this table lives beside the stages; a stage whose needs are not met writes
its skip note and exits 0.
"""

from __future__ import annotations

from features.intake.capabilities import Capabilities

# What each stage needs in full; a stage whose needs are not met skips itself with the reason.
STAGE_NEEDS: dict[str, tuple[str, ...]] = {
    "generate": ("synthetic_truth",),
    "truth": ("synthetic_truth",),
    "truth_check": ("synthetic_truth",),
}

WHY = {
    "synthetic_truth": "the source is not the synthetic book, so there is no simulated truth",
    "archive": "the source has no policy archive (no premiums, lapses or rule segments)",
    "contact_history": "the source has no contact history",
    "snapshots": "the source has no dated history to take point-in-time snapshots from",
}


def skip_reason(stage: str, caps: Capabilities) -> str | None:
    """Why ``stage`` does not apply to this source, or None when it does."""
    missing = [need for need in STAGE_NEEDS.get(stage, ()) if not getattr(caps, need)]
    if not missing:
        return None
    return f"{stage} does not apply to this {caps.source} source: " + "; ".join(WHY[m] for m in missing)
