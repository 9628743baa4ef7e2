"""Cost of MedFILIP's loss computation (SSM + soft contrastive + patch + ITM) against a whole training step.

Builds the network, loss and optimiser that ``configs/train.json`` declares (demo settings), one
batch of ``--batch-size`` images at the config's image size with ``--texts`` finding texts per
image (random SynthCXR-like findings composed by the config's IKI composer), and times, after
warm-up, the median of ``--repeats`` runs of:

- the whole step: forward of both towers, loss, backward, optimiser step;
- the loss computation alone: SSM targets, soft contrastive loss, the patch-sentence term,
  hard-negative mining and the ITM head, forward and backward (from the network's outputs,
  which are held fixed);
- its parts: SSM targets; contrastive term forward + backward; patch term forward + backward;
  ITM term forward + backward.

    python scripts/benchmark_loss.py [--batch-size 64 --texts 8 --repeats 5]

Prints a Markdown table; the target is loss <= 10 % of the step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402

from bundle.data.synthcxr.recipes import CATEGORY_RECIPES  # noqa: E402
from bundle.findings import Finding, Presence  # noqa: E402


def random_findings(rng: np.random.Generator, count: int) -> list[Finding]:
    """``count`` findings of random SynthCXR categories, locations, severities and presences."""
    findings = []
    for category in rng.choice(list(CATEGORY_RECIPES), size=count, replace=False):
        recipe = CATEGORY_RECIPES[category]
        presence = [Presence.PRESENT, Presence.PRESENT, Presence.UNCERTAIN, Presence.ABSENT][int(rng.integers(4))]
        if presence is Presence.ABSENT:
            findings.append(Finding(str(category), presence=presence))
            continue
        side = str(rng.choice(recipe.lateralities)) if recipe.lateralities else None
        zone = str(rng.choice(recipe.zones)) if recipe.zones else None
        severity = str(rng.choice(recipe.severities)) if recipe.severities else None
        findings.append(Finding(str(category), " ".join(p for p in (side, zone) if p) or None, severity, presence))
    return findings


def median_seconds(function: Callable[[], None], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--texts", type=int, default=8, help="finding texts per image (all slots filled)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--config", nargs="+", default=[str(REPO / "configs/train.json")])
    args = parser.parse_args()

    config = ConfigParser()
    config.read_config(args.config)
    # no data set is needed: the batch is made here, so the datalist is a stub
    config.update({"datalist": {"categories": list(CATEGORY_RECIPES)}, "unmentioned_findings": "absent",
                   "max_texts_per_image": args.texts, "max_findings_per_image": args.texts})  # fmt: skip
    network = config.get_parsed_content("network")
    loss_function = config.get_parsed_content("loss")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    composer = config.get_parsed_content("text_composer")
    vocabulary = config.get_parsed_content("findings_vocabulary")
    tokenizer = config.get_parsed_content("tokenizer")
    size, batch = config["image_size"], args.batch_size

    rng = np.random.default_rng(0)
    findings = [random_findings(rng, args.texts) for _ in range(batch)]
    texts = [[composer.compose(f, rng) for f in item] for item in findings]
    tokens = torch.stack([tokenizer([t.text for t in item]) for item in texts])
    target = vocabulary.encode_batch(findings, texts, max_texts=args.texts, max_findings=args.texts)
    images = torch.rand(batch, 1, size, size)
    network.train()

    def whole_step() -> None:
        loss = loss_function(network(images, tokens), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        outputs = network(images, tokens)
    leaves = {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in outputs.items()}

    def loss_only() -> None:
        loss_function(leaves, target).backward()

    def ssm_only() -> None:
        loss_function.ssm(target["findings_code"], target["text_code"], target["text_attributes"])

    targets, weights = loss_function.ssm(target["findings_code"], target["text_code"], target["text_attributes"])

    def contrastive_only() -> None:
        similarity = loss_function.pooled_similarity(leaves)
        loss_function.contrastive(similarity, leaves["logit_scale"], targets, weights).backward()

    def patch_only() -> None:
        loss_function.patch_loss(leaves, targets, weights).backward()

    def itm_only() -> None:
        similarity = loss_function.pooled_similarity(leaves).detach()
        loss_function.itm_loss(leaves, similarity, targets, weights, args.texts).backward()

    rows = [("whole training step", whole_step), ("loss computation (SSM + contrastive + patch + ITM)", loss_only),
            ("  SSM targets", ssm_only), ("  soft contrastive, fwd + bwd", contrastive_only)]  # fmt: skip
    if loss_function.patch_weight > 0:
        rows.append(("  patch-sentence term, fwd + bwd", patch_only))
    if loss_function.itm_weight > 0:
        rows.append(("  ITM mining + head, fwd + bwd", itm_only))
    timed = [(name, median_seconds(function, args.repeats)) for name, function in rows]
    step = timed[0][1]
    print(f"\nbatch {batch}, {args.texts} texts per image, image {size} px, {torch.get_num_threads()} torch threads, "
          f"median of {args.repeats}\n")
    print("| part | ms | share of the step |")
    print("|---|---:|---:|")
    for name, seconds in timed:
        print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / step:.1f} % |")
    share = timed[1][1] / step
    verdict = "meets" if share <= 0.10 else "MISSES"
    print(f"\nloss computation = {100 * share:.1f} % of the step; {verdict} the target <= 10 %")


if __name__ == "__main__":
    main()
