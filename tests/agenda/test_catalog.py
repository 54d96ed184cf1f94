"""The agenda catalog: exact ids and titles, group sizes, text shape, lookup errors, JSON."""

import dataclasses
import json
import re

import pytest

from assay.agenda import GROUPS, SOURCE, Challenge, challenge, challenges, group_of, to_dict
from assay.errors import AssayError

EXPECTED = [
    ("2.1", "In-Context Learning (ICL) Is Black-Box"),
    ("2.2", "Capabilities Are Difficult to Estimate and Understand"),
    ("2.3", "Effects of Scale on Capabilities Are Not Well-Characterized"),
    ("2.4", "Qualitative Understanding of Reasoning Capabilities Is Lacking"),
    ("2.5", "Agentic LLMs Pose Novel Risks"),
    ("2.6", "Multi-Agent Safety Is Not Assured by Single-Agent Safety"),
    ("2.7", "Safety-Performance Trade-offs Are Poorly Understood"),
    ("3.1", "Pretraining Produces Misaligned Models"),
    ("3.2", "Finetuning Methods Struggle to Assure Alignment and Safety"),
    ("3.3", "LLM Evaluations Are Confounded and Biased"),
    ("3.4", "Tools for Interpreting or Explaining LLM Behavior Are Absent or Lack Faithfulness"),
    ("3.5", "Jailbreaks and Prompt Injections Threaten Security of LLMs"),
    ("3.6", "Vulnerability to Poisoning and Backdoors Is Poorly Understood"),
    ("4.1", "Values to Be Encoded within LLMs Are Not Clear"),
    ("4.2", "Dual-Use Capabilities Enable Malicious Use and Misuse of LLMs"),
    ("4.3", "LLM-Systems Can Be Untrustworthy"),
    ("4.4", "Socioeconomic Impacts of LLM May Be Highly Disruptive"),
    ("4.5", "LLM Governance Is Lacking"),
]

# A sentence ends at . ! or ? followed by whitespace and a capital letter, or at the end.
# Lower-case continuations ("e.g. the") therefore do not count as a new sentence.
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z\"'(]|\s*$)")


def n_sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text.strip()))


def test_eighteen_challenges_with_exact_ids_and_titles():
    assert [(ch.id, ch.title) for ch in challenges()] == EXPECTED


def test_ids_unique_and_sorted_numerically():
    ids = [ch.id for ch in challenges()]
    assert len(set(ids)) == len(ids) == 18
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("."))))


def test_groups_have_7_6_5_challenges_with_the_right_names():
    assert GROUPS == {
        "2": "Scientific Understanding of LLMs",
        "3": "Development and Deployment Methods",
        "4": "Sociotechnical Challenges",
    }
    counts = {g: sum(ch.group == g for ch in challenges()) for g in GROUPS}
    assert counts == {"2": 7, "3": 6, "4": 5}
    for ch in challenges():
        assert ch.id.split(".")[0] == ch.group
        assert group_of(ch.id) == GROUPS[ch.group]
    assert group_of("2.5") == "Scientific Understanding of LLMs"
    assert group_of("3.6") == "Development and Deployment Methods"
    assert group_of("4.5") == "Sociotechnical Challenges"


def test_sentence_counter():
    assert n_sentences("One. Two, e.g. three? Four!") == 3
    assert n_sentences("No end") == 0


@pytest.mark.parametrize("ch", challenges(), ids=lambda ch: ch.id)
def test_summary_has_2_to_4_sentences(ch: Challenge):
    assert 2 <= n_sentences(ch.summary) <= 4, ch.summary


@pytest.mark.parametrize("ch", challenges(), ids=lambda ch: ch.id)
def test_directions_are_4_to_7_single_sentences(ch: Challenge):
    assert isinstance(ch.directions, tuple)
    assert 4 <= len(ch.directions) <= 7
    assert len(set(ch.directions)) == len(ch.directions)
    for d in ch.directions:
        assert n_sentences(d) == 1, d
        assert d[0].isupper() and d[-1] in ".?", d


def test_text_has_no_stray_whitespace():
    for ch in challenges():
        for text in (ch.summary, *ch.directions):
            assert text == text.strip() and "  " not in text, text


def test_lookup_by_id():
    assert challenge("3.6").title == "Vulnerability to Poisoning and Backdoors Is Poorly Understood"
    assert challenge(" 2.1 ") is challenge("2.1")
    assert all(challenge(ch.id) is ch for ch in challenges())


def test_unknown_id_lists_the_valid_ids():
    with pytest.raises(AssayError) as err:
        challenge("9.9")
    message = str(err.value)
    valid = ", ".join(i for i, _ in EXPECTED)
    assert message == f"unknown challenge '9.9': choose one of {valid}"
    assert "\n" not in message
    with pytest.raises(AssayError):
        group_of("2.8")


def test_challenge_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        challenge("2.1").title = "changed"


def test_json_round_trip():
    for ch in challenges():
        data = json.loads(json.dumps(to_dict(ch)))
        assert data == to_dict(ch)
        assert set(data) == {"id", "title", "group", "summary", "directions"}
        assert Challenge(**{**data, "directions": tuple(data["directions"])}) == ch
    everything = json.dumps([to_dict(ch) for ch in challenges()])
    assert len(json.loads(everything)) == 18


def test_source_cites_the_paper():
    assert SOURCE == (
        "Anwar et al. 2024, Foundational Challenges in Assuring Alignment and Safety of "
        "Large Language Models, arXiv:2404.09932"
    )
