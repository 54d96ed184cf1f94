"""Write a world evaluation as a task folder that other evaluation tools run.

``export_inspect`` writes one Inspect task: the questions as JSON lines and a Python file
with an ``@task`` that asks each question as a user message, lets the model answer greedily
and scores the answer with ``match(location="exact")`` against the true option (the
model's chat format is the provider's business: ``assay/SPEC`` and ``assay serve`` apply the
model's own template).

``export_lm_eval`` writes one lm-evaluation-harness (0.4.x) task: the rendered items as
JSON lines, a YAML task that reads their fields, and a README with the exact command.
lm-eval then scores exactly the token sequences `assay.methods.evaluation.score_items`
scores:

- the context is the rendered prompt (for the default format, the organism's chat
  prompt, ending in ``<|assistant|>``) and each choice is assay's continuation text,
  joined with ``target_delimiter: ""``;
- lm-eval tokenizes context + continuation together and splits after the context's
  tokens, where assay tokenizes them apart: the two agree because every format's prompt
  ends in a special token or a ``:`` that the BPE pre-tokenizer always splits off, and no
  prompt ends in whitespace (which lm-eval would move into the continuation);
- the tokenizer's post-processor prepends ``<|bos|>`` when asked for special tokens, as
  assay's ``LM.encode`` does: lm-eval 0.4.13 asks for them unless ``add_bos_token=False``,
  older 0.4 releases only with ``add_bos_token=True``, so the README passes it explicitly.

The YAML names its data file by absolute path: ``datasets`` resolves a relative
``data_files`` entry against the working directory, not the YAML's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from assay.errors import AssayError
from assay.methods.evaluation import Format, render
from assay.training.recipes import RECIPES
from assay.world import World, WorldConfig, render_prompt
from assay.world.evals import EVALS, world_eval
from assay.world.world import WORLD_PRESETS

__all__ = ["export_inspect", "export_lm_eval", "task_name"]

MODEL_ARGS = "dtype=float32,add_bos_token=True"  # besides pretrained=FOLDER


def task_name(eval_name: str, world: str) -> str:
    """The lm-eval task name of ``eval_name`` on ``world``: ``assay_facts_train_s``."""
    return re.sub(r"\W", "_", f"assay_{eval_name}_{world}")


def export_lm_eval(eval_name: str, out_dir: str | Path, world: str = "s",
                   fmt: Format = Format(), limit: int | None = None) -> Path:
    """Write evaluation ``eval_name`` of world preset ``world`` as an lm-eval task folder at
    ``out_dir`` (new or empty) and return it; ``limit`` keeps the first items only.

    The folder is built beside ``out_dir`` and renamed into place when complete.
    """
    items, final = _checked(eval_name, out_dir, world, limit)
    name = task_name(eval_name, world)
    data = final / f"{name}.jsonl"  # where the rename will put it

    def write(tmp: Path) -> None:
        with open(tmp / data.name, "w") as f:
            for item in items:
                prompt, continuations, answer = render(item, fmt, render_prompt)
                row = {"id": item.id, "prompt": prompt, "choices": continuations,
                       "answer": answer, "subject": item.subject, "relation": item.relation,
                       "template": item.template}
                f.write(json.dumps(row) + "\n")
        (tmp / f"{name}.yaml").write_text(_task_yaml(name, data, eval_name, world, fmt,
                                                     len(items)))
        (tmp / "README.md").write_text(_readme(name, final, eval_name, world, fmt, len(items)))

    return _write_folder(final, write)


def export_inspect(eval_name: str, out_dir: str | Path, world: str = "s",
                   limit: int | None = None) -> Path:
    """Write evaluation ``eval_name`` of world preset ``world`` as an Inspect task folder at
    ``out_dir`` (new or empty): ``NAME.py`` with the ``@task`` and ``NAME.jsonl`` with one
    sample per item (the question as input, the true option as target)."""
    items, final = _checked(eval_name, out_dir, world, limit)
    name = task_name(eval_name, world)

    def write(tmp: Path) -> None:
        with open(tmp / f"{name}.jsonl", "w") as f:
            for item in items:
                row = {"id": item.id, "input": item.question,
                       "target": item.choices[item.answer],
                       "metadata": {"options": list(item.choices), "subject": item.subject,
                                    "relation": item.relation, "template": item.template}}
                f.write(json.dumps(row) + "\n")
        (tmp / f"{name}.py").write_text(_inspect_task(name, eval_name, world, len(items)))
        (tmp / "README.md").write_text(_inspect_readme(name, eval_name, world, len(items)))

    return _write_folder(final, write)


def _checked(eval_name: str, out_dir: str | Path, world: str, limit: int | None):
    """The items to export and the resolved folder, after every check that needs no writing."""
    if eval_name not in EVALS:
        raise AssayError(f"unknown evaluation {eval_name!r}: choose one of {', '.join(EVALS)}")
    if world not in WORLD_PRESETS:
        raise AssayError(f"unknown world {world!r}: choose one of {', '.join(WORLD_PRESETS)} "
                         "(--world)")
    if limit is not None and limit < 1:
        raise AssayError(f"limit must be a positive number of items, got {limit}")
    final = Path(out_dir).expanduser().resolve()
    if final.exists() and not final.is_dir():
        raise AssayError(f"{final} exists and is not a folder: choose a new folder to export to")
    if final.is_dir() and any(final.iterdir()):
        raise AssayError(f"{final} exists and is not empty: choose a new folder, or remove "
                         "this one first")
    return world_eval(World(WorldConfig.preset(world)), eval_name)[:limit], final


def _write_folder(final: Path, write) -> Path:
    """Run ``write(tmp)`` on a fresh folder beside ``final`` and rename it into place; on any
    error nothing is left behind."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed export of this process id
    tmp.mkdir()
    try:
        write(tmp)
        os.replace(tmp, final)  # onto nothing, or onto the empty folder checked above
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _task_yaml(name: str, data: Path, eval_name: str, world: str, fmt: Format, n: int) -> str:
    q = json.dumps  # a JSON string is a YAML string, quoted and escaped
    return "\n".join([
        f"# assay evaluation {eval_name!r} of world {world!r}, format {fmt.name}: {n} items",
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {q(str(data))}",
        "test_split: test",
        "output_type: multiple_choice",
        "doc_to_text: prompt      # the rendered prompt, chat format included",
        "doc_to_choice: choices   # assay's continuations, scored as they are",
        "doc_to_target: answer    # index of the true choice",
        'target_delimiter: ""     # nothing between prompt and continuation',
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        f"  assay_eval: {q(eval_name)}",
        f"  assay_world: {q(world)}",
        f"  assay_format: {q(fmt.name)}",
        "",
    ])


def _readme(name: str, final: Path, eval_name: str, world: str, fmt: Format, n: int) -> str:
    if world in RECIPES:  # the organism of the same name learned this world
        train = f"assay organisms train {world}   # trains it if needed; prints its folder\n"
        folder = f"$(assay organisms train {world})"
    else:
        train, folder = "", "ORGANISM_FOLDER"
    return f"""# {name}

assay evaluation `{eval_name}` of world `{world}` as an lm-evaluation-harness task:
{n} multiple-choice items in format `{fmt.name}`, scored by the summed log-likelihood of
each choice (metric `acc`). Written by `assay export lm-eval`.

Run it offline (tested with lm_eval 0.4.13):

```bash
{train}HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 lm_eval --model hf \\
  --model_args pretrained={folder},{MODEL_ARGS} \\
  --tasks {name} --include_path {final} --device cpu
```

`add_bos_token=True` makes lm-eval prepend `<|bos|>` as assay does (lm-eval 0.4.13 also
does by default, older 0.4 releases do not): with it, every per-choice log-likelihood
agrees with `assay.methods.evaluation.score_items` to 1e-4.

`{name}.yaml` names `{name}.jsonl` by absolute path (`datasets` resolves relative data
paths against the working directory): after moving this folder, export again.
"""


def _inspect_task(name: str, eval_name: str, world: str, n: int) -> str:
    return f'''"""assay evaluation {eval_name!r} of world {world!r} as an Inspect task ({n} items).

Each sample asks the question as a user message; the model answers greedily in at most 16
tokens, and the answer must equal the true option (Inspect's match, location "exact").
Written by `assay export inspect`; see README.md.
"""

from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import json_dataset
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import match
from inspect_ai.solver import generate


@task
def {name}() -> Task:
    return Task(
        dataset=json_dataset(str(Path(__file__).with_name("{name}.jsonl"))),
        solver=generate(),
        scorer=match(location="exact", ignore_case=False),
        config=GenerateConfig(temperature=0.0, max_tokens=16),
    )
'''


def _inspect_readme(name: str, eval_name: str, world: str, n: int) -> str:
    model = f"assay/organism:{world}" if world in RECIPES else "assay/hf:ORGANISM_FOLDER"
    return f"""# {name}

assay evaluation `{eval_name}` of world `{world}` as an Inspect task: {n} questions, answered
greedily and scored by exact match against the true option. Written by
`assay export inspect`.

In process, through assay's Inspect provider (tested with inspect_ai 0.3.285):

```bash
inspect eval {name}.py --model {model} --log-dir logs
```

Through `assay serve` and Inspect's OpenAI-compatible provider (same answers):

```bash
assay serve organism:{world} --port 8000 &
ASSAY_BASE_URL=http://127.0.0.1:8000/v1 ASSAY_API_KEY=unused \\
  inspect eval {name}.py --model openai-api/assay/organism:{world} --log-dir logs
```
"""
