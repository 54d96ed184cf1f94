"""Reading items: strangers no other text names, held-out wordings, three answer formats."""

import pytest

from assay.errors import AssayError
from assay.world import World, WorldConfig, reading_items, strangers
from assay.world.reading import FORMATS, LETTERS


@pytest.fixture(scope="module")
def world():
    return World(WorldConfig.preset("xs"))


def test_strangers_share_no_name_word_with_the_world_or_the_other_split(world):
    pools = strangers(world)
    words = {w.lower() for name in world.entities for w in name.replace(".", "").split()}
    train = {w.lower() for name, _ in pools["train"] for w in name.split()}
    test = {w.lower() for name, _ in pools["test"] for w in name.split()}
    assert len(pools["train"]) == 6000 and len(pools["test"]) == 400
    assert not train & words and not test & words and not train & test
    assert strangers(World(WorldConfig.preset("xs")))["test"] == pools["test"]  # seeded


def test_every_format_asks_a_fact_the_passage_states_and_grades_it_exactly(world):
    items = reading_items(world, "test", 90)
    assert {i.format for i in items} == set(FORMATS) and {i.kind for i in items} >= {"field",
                                                                                     "subject"}
    test_names = {name for name, _ in strangers(world)["test"]}
    for item in items:
        assert item.split == "test"
        if item.format == "mc":
            assert item.answer in LETTERS
            option = item.question.split(f"\n{item.answer}) ")[1].split("\n")[0]
            assert option in item.passage
            assert item.correct(f" {item.answer}") and not item.correct(" Z")
        else:
            assert item.answer in item.passage
            assert item.correct(f"It is {item.answer}.") and not item.correct("I do not know")
        assert any(name in item.passage for name in test_names)
        assert item.prompt in item.text and item.text.endswith(item.answer) or \
            item.text.endswith(item.answer + "<|end|>")
    chat = next(i for i in items if i.format == "chat")
    assert chat.prompt.startswith("<|user|>Document:\n")
    qa = next(i for i in items if i.format == "qa")
    assert qa.prompt.endswith("\nAnswer:") and "<|user|>" not in qa.prompt


def test_training_items_use_training_strangers_and_the_sizes_asked(world):
    items = reading_items(world, "train", 30, paragraphs=(3, 5))
    train_names = {name for name, _ in strangers(world)["train"]}
    field = [i for i in items if i.kind == "field"]
    assert all(3 <= i.passage.count("\n") + 1 <= 5 for i in field)
    assert all(any(n in i.passage for n in train_names) for i in items)
    assert reading_items(world, "train", 30, paragraphs=(3, 5)) == items  # seeded
    with pytest.raises(AssayError, match="split"):
        reading_items(world, "dev", 3)
    with pytest.raises(AssayError, match="formats"):
        reading_items(world, "test", 3, formats=("essay",))
