"""The research agenda: the 18 challenges of Anwar et al. 2024, as data."""

from assay.agenda.catalog import (
    GROUPS,
    SOURCE,
    Challenge,
    challenge,
    challenges,
    group_of,
    to_dict,
)

__all__ = ["GROUPS", "SOURCE", "Challenge", "challenge", "challenges", "group_of", "to_dict"]
