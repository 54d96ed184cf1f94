"""lm-evaluation-harness drives `assay serve` through its local-completions model (the way
it reaches any OpenAI-compatible server) and scores the exported world task exactly as
assay's own scorer does."""


import numpy as np
import pytest
from conftest import MODEL

from assay.export import export_lm_eval, task_name
from assay.methods.evaluation import score_items
from assay.world import World, WorldConfig
from assay.world.evals import world_eval

pytestmark = pytest.mark.slow

EVAL, WORLD, N = "facts-heldout", "xs", 40


def test_lm_eval_local_completions_through_the_server_matches_assay(server, xs_lm, xs_organism,
                                                                     offline, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    url, _ = server
    folder, _ = xs_organism
    task = export_lm_eval(EVAL, tmp_path / "task", world=WORLD, limit=N)
    name = task_name(EVAL, WORLD)
    args = (f"base_url={url}/completions,model={MODEL},tokenizer={folder},"
            "tokenizer_backend=huggingface,add_bos_token=True,num_concurrent=8,max_retries=1,"
            "batch_size=1")
    out = lm_eval.simple_evaluate(model="local-completions", model_args=args, tasks=[name],
                                  task_manager=TaskManager(include_path=str(task),
                                                           include_defaults=False),
                                  log_samples=True, bootstrap_iters=0, random_seed=None,
                                  numpy_random_seed=None, torch_random_seed=None)
    samples = {s["doc"]["id"]: s for s in out["samples"][name]}
    items = world_eval(World(WorldConfig.preset(WORLD)), EVAL)[:N]
    scores, answers = score_items(xs_lm, items)
    for item, ours in zip(items, scores):
        theirs = [ll for ll, _ in samples[item.id]["filtered_resps"]]
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-4, err_msg=item.id)
    acc = np.mean([int(np.argmax(s)) == a for s, a in zip(scores, answers)])
    assert out["results"][name]["acc,none"] == pytest.approx(acc, abs=1e-12)
    assert 0 < acc < 1
