"""Training-data attribution on an organism: kronfluence against assay's gradient methods.

In one run, on the same organism, documents and queries, each method in its own process
(so its peak memory is its own):
  * kronfluence EK-FAC: fitting the factors, then pairwise scores (the two timed apart);
  * kronfluence with the identity strategy (its gradient dot product);
  * assay's `gradient_scores`, exact and with a 4,096-bucket CountSketch.
Reported: seconds, training documents scored per second (documents x queries pairs are
what grows) and peak resident memory, with each method's speed as a ratio to assay's exact
gradient dot product.

    python benchmarks/attribution_throughput.py [--organism xs] [--documents 200] [--queries 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

METHODS = ("assay-grad", "assay-grad-sketch", "kronfluence-identity", "kronfluence-ekfac")


def one(method: str, organism: str, n_docs: int, n_queries: int) -> dict:
    import assay.training  # noqa: F401  (registers the organism: scheme)
    from assay.methods.attribution import LMLoss, gradient_scores, influence_scores, tokenized
    from assay.models import load
    from assay.training.organisms import organism_world
    from assay.world.documents import documents

    lm = load(f"organism:{organism}")
    docs = [d.text for d in documents(organism_world(organism))][:n_docs]
    examples = tokenized(lm, docs)
    queries = tokenized(lm, [d[:60] for d in docs[:: max(1, len(docs) // n_queries)][:n_queries]])
    out: dict = {"method": method, "documents": len(examples), "queries": len(queries)}
    start = time.perf_counter()
    if method.startswith("assay"):
        gradient_scores(lm.model, LMLoss, queries, examples,
                        project=4096 if method.endswith("sketch") else None)
    else:
        strategy = method.split("-")[1]
        with tempfile.TemporaryDirectory() as cache:
            influence_scores(lm.model, LMLoss, queries, examples, cache, strategy=strategy)
            out["fit_and_score_s"] = time.perf_counter() - start
            again = time.perf_counter()
            influence_scores(lm.model, LMLoss, queries, examples, cache, strategy=strategy)
            out["score_only_s"] = time.perf_counter() - again
    out["seconds"] = out.get("fit_and_score_s", time.perf_counter() - start)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--organism", default="xs")
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.organism, args.documents, args.queries)))
        return
    rows = []
    for method in METHODS:
        child = subprocess.run(
            [sys.executable, __file__, "--one", method, "--organism", args.organism,
             "--documents", str(args.documents), "--queries", str(args.queries)],
            capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"{method} failed:\n{child.stderr[-2000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    base = rows[0]["documents"] / rows[0]["seconds"]
    print(f"organism {args.organism}, {rows[0]['documents']} documents, "
          f"{rows[0]['queries']} queries")
    print("| method | seconds | documents/s | ratio to assay-grad | peak RSS MB | scores only s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        rate = r["documents"] / r["seconds"]
        score_only = f"{r['score_only_s']:.1f}" if "score_only_s" in r else ""
        print(f"| {r['method']} | {r['seconds']:.1f} | {rate:.1f} | {rate / base:.2f}x | "
              f"{r['peak_rss_mb']:.0f} | {score_only} |")


if __name__ == "__main__":
    main()
