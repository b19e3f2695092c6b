"""Batch generation on Ray: ``armor-ab content generate … --ray [ADDRESS]`` (docs/scale.md, "Batch
generation on Ray"). Needs the ``scale`` extra (``pip install 'armor-ab[scale]'``); Ray is imported only here.

The same pages as ``generate_content``, byte for byte:

* **The same batches.** The driver plans the run as the single process does (``plan_content``: per ARMOR
  variant, the missing catalog positions) and cuts it into the same batches (``content_batches``: runs of
  consecutive positions, ``batch_size`` rows at most). One batch is one row of a Ray Dataset; ``map_batches``
  hands it whole to an actor, which generates it with the batch's seed (the variant's seed + the first
  position; row r gets seed + r, the seed of its own position) through the same ``generate_batch``.
  Pages do not depend on which actor, or in which order, batches run.
* **One engine session per actor.** ``PageWriter.__init__`` loads each model of the run once, on the run's
  backend, and builds its check context. An actor holds one GPU (``num_gpus=1``) where the cluster has GPUs
  and the backend uses them (``onnxruntime``, ``tensorrt``); otherwise one CPU (the torch backend generates
  on the CPU, as ``generate_content`` does). The pool has ``--ray-actors`` actors (default: one per GPU,
  else one per CPU; never more than batches).
* **Checks run where the model is**, in the actor, as on-demand generation does in its worker, except the
  cross-page part of ``image_sanity`` (a picture must not be a near-duplicate of another item's): that needs
  every page, so the driver runs ``image_sanity`` again over each batch, in the single process's order,
  against the experiment's stored pictures and those of the batches before; its result replaces the actor's.
  The verdicts are the single process's.
* **Actors write, one process commits.** An actor writes its pages' pictures to the content-addressed image
  store (``write_image``: temp file, then rename) and returns the page JSON and its checks; it never opens
  the database. The driver, the only writer of the DuckDB file, reads each page back from the image store
  (every picture's SHA-256 verified), and stores its row (``save_generated``), in the single process's order.
  The image store must be one directory that every node sees (a local cluster, or a shared file system).

Failures: an actor that dies (its process, its node) is restarted by Ray and its batch retried (Ray Data's
actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); pictures it wrote before dying are whole files
(or ``*.tmp`` leftovers) that no row points at, and the retry writes the same bytes. The driver commits only
whole pages whose pictures are all in the store. An exception in a batch (a bug, a bad engine) stops the run
with the pages committed so far kept, and so does the driver's own death; a rerun skips them (``exists``)
and generates the rest, with the same seeds, in the batches a single-process rerun would cut.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb

from armor_ab.catalog.items import CatalogItem
from armor_ab.content.generate import (
    ContentError,
    GenerateReport,
    content_batches,
    generate_batch,
    load_generator,
    plan_content,
    resolve_model,
    store_page,
)
from armor_ab.experiments.content_checks import ContentChecks
from armor_ab.experiments.models import ContentSpec
from armor_ab.store.experiments import ExperimentRecord

log = logging.getLogger("armor_ab.content")

EXTRA = "pip install 'armor-ab[scale]'"
IMAGE_SANITY = "image_sanity"


def import_ray():
    """The ``ray`` module (with Ray Data), or a ``ContentError`` naming the extra that installs it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is what --ray runs on
    except ImportError as exc:
        raise ContentError(f"--ray needs Ray (with Ray Data), which is not installed: {EXTRA} ({exc})") from None
    return ray


@dataclass(frozen=True)
class Job:
    """One batch of the run, as the single process cuts it: one Ray Dataset row."""

    variant: str
    content: ContentSpec
    model: str  # the model name or directory (``resolve_model``), loaded by every actor
    rows: tuple[int, ...]  # catalog positions
    items: tuple[CatalogItem, ...]
    prompts: tuple[str, ...]


def _forget_pictures(ctx) -> None:
    """Drop image_sanity's duplicate index from an actor's check context: the driver owns that part."""
    from armor_ab.guardrails.image_sanity import OWNERS

    ctx.picture_hashes.clear()
    for key in [k for k in ctx.cache if k[0] == OWNERS]:
        del ctx.cache[key]


class PageWriter:
    """The Ray actor: one engine session (generator and check context) per model, loaded once; each call
    generates whole batches (``Job``s, by index), checks them, writes their pictures and returns the pages."""

    def __init__(self, jobs, catalog, policy: ContentChecks, backend: str, engine_dir: str | None,
                 images_dir: str) -> None:
        import ray

        from armor_ab.content.guard import check_context

        self.jobs: list[Job] = ray.get(jobs) if isinstance(jobs, ray.ObjectRef) else jobs
        catalog = ray.get(catalog) if isinstance(catalog, ray.ObjectRef) else catalog
        self.policy = policy
        self.images_dir = Path(images_dir)
        self.sessions: dict[str, tuple] = {}
        for name in dict.fromkeys(job.model for job in self.jobs):
            gen = load_generator(name, backend, Path(engine_dir) if engine_dir else None)
            self.sessions[name] = (gen, check_context(gen, name, catalog, policy))

    def __call__(self, batch: dict) -> dict:
        from armor_ab.store.content import write_image

        out: dict[str, list] = {"job": [], "row": [], "content": [], "checks": [], "image_size": []}
        for index in batch["job"]:
            job = self.jobs[int(index)]
            gen, ctx = self.sessions[job.model]
            _forget_pictures(ctx)
            contents, checked = generate_batch(gen, ctx, self.policy, job.variant, job.content, list(job.rows),
                                               list(job.items), list(job.prompts))
            for row, (page, checks) in enumerate(zip(contents, checked, strict=True)):
                for image in page.images:
                    write_image(self.images_dir, image.sha256, image.png)
                out["job"].append(int(index))
                out["row"].append(row)
                out["content"].append(json.dumps(page.to_json()))
                out["checks"].append(json.dumps(checks.to_json()))
                out["image_size"].append(int((ctx.image_size or (0, 0))[0]))
        return out


def _recheck_pictures(pages, checks, policy: ContentChecks, ctx) -> list:
    """``checks`` with image_sanity's result replaced by one against ``ctx``'s pictures (the experiment's
    stored pages and the run's earlier batches, as in a single process) and the batch's own."""
    from armor_ab.guardrails.pipeline import check_pages
    from armor_ab.guardrails.registry import CHECKS
    from armor_ab.guardrails.result import PageChecks

    only = policy.model_copy(update={name: getattr(policy, name).model_copy(update={"action": "off"})
                                     for name in CHECKS if name != IMAGE_SANITY})
    fresh = check_pages(pages, only, ctx)
    out = []
    for page_checks, again in zip(checks, fresh, strict=True):
        (result,) = again.results
        results = tuple(result if r.check == IMAGE_SANITY else r for r in page_checks.results)
        out.append(PageChecks(results, page_checks.checked_at, page_checks.policy_hash, page_checks.made_by))
    return out


def _default_actors(ray, backend: str) -> tuple[int, dict]:
    """(default pool size, each actor's resources): one GPU per actor where the cluster has GPUs and the
    backend runs on them (onnxruntime, tensorrt), else one CPU per actor, as many actors as CPUs. The torch
    backend generates on the CPU here (as ``generate_content`` does), so it never holds a GPU it would not use."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus and backend != "torch":
        return gpus, {"num_gpus": 1}
    return max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


def generate_content_ray(
    con: duckdb.DuckDBPyConnection,
    record: ExperimentRecord,
    items: list[CatalogItem],
    images_dir: Path,
    *,
    model: str | Path | None = None,
    backend: str = "torch",
    engine_dir: Path | None = None,
    batch_size: int = 4,
    progress: bool = True,
    address: str | None = None,
    actors: int | None = None,
    actor_class: type | None = None,
) -> GenerateReport:
    """``generate_content`` on a Ray cluster: the same pages, checks and report.

    ``address``: the cluster (``ray.init(address=…)``: ``auto``, ``ray://head:10001``; None: ``RAY_ADDRESS``,
    else a running local cluster, else a new local one); when Ray is already initialised in this process
    its cluster is used, and left running. ``actors``: the size of the actor pool (default: one per GPU
    for a GPU backend, else one per CPU). ``actor_class``: ``PageWriter`` (None) or a subclass (tests)."""
    ray = import_ray()
    plan = plan_content(con, record, items)
    report = plan.report
    if plan.total == 0:
        return report
    jobs: list[Job] = []
    order: list[tuple[str, list[int]]] = []  # (model, the variant's job indices), in the single process's order
    for variant, todo, prompts in plan.variants:
        name = _absolute(resolve_model(variant.content.model, model))
        first = len(jobs)
        for rows in content_batches(todo, batch_size):
            jobs.append(Job(variant.key, variant.content, name, tuple(rows),
                            tuple(plan.by_position[i] for i in rows), tuple(prompts[i] for i in rows)))
        order.append((name, list(range(first, len(jobs)))))

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address or None, log_to_driver=True)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is the user's to fix
            where = f"--ray {address}" if address else "--ray"
            raise ContentError(f"{where}: cannot start or reach a Ray cluster: {exc}") from None
    try:
        engine_dir = Path(engine_dir).resolve() if engine_dir else None  # actors run in other directories
        return _run(ray, con, record, images_dir, plan, jobs, order, backend=backend, engine_dir=engine_dir,
                    progress=progress, actors=actors, actor_class=actor_class or PageWriter)
    finally:
        if started:
            ray.shutdown()


def _run(ray, con, record: ExperimentRecord, images_dir: Path, plan, jobs: list[Job], order, *, backend: str,
         engine_dir: Path | None, progress: bool, actors: int | None, actor_class: type) -> GenerateReport:
    from tqdm import tqdm

    from armor_ab.content.guard import VerdictCounts, register_experiment
    from armor_ab.guardrails.context import CheckContext
    from armor_ab.guardrails.page import Page
    from armor_ab.guardrails.pipeline import resolve_expects
    from armor_ab.guardrails.result import PageChecks
    from armor_ab.model.interleaved import InterleavedContent
    from armor_ab.store.catalog import list_items

    spec = record.spec
    policy = spec.content_checks
    report = plan.report
    default, resources = _default_actors(ray, backend)
    pool = max(1, min(actors or default, len(jobs)))
    catalog = list_items(con)  # the checks know every category of the catalog, not only this selection's
    # One dataset row per batch, each its own block: map_batches hands each actor one batch at a time.
    dataset = ray.data.from_items([{"job": j} for j in range(len(jobs))], override_num_blocks=len(jobs))
    dataset.context.enable_progress_bars = False  # the driver's own bar counts committed pages
    # The job table and the catalog go to the object store once; the refs live as long as this run, so a
    # restarted actor finds them. Ray Data's actor pools restart a dead actor and retry its batch
    # (max_restarts=-1, max_task_retries=-1 by default).
    shared = {"jobs": ray.put(jobs), "catalog": ray.put(catalog)}
    dataset = dataset.map_batches(
        actor_class, batch_size=1, compute=ray.data.ActorPoolStrategy(size=pool),
        fn_constructor_kwargs={**shared, "policy": policy, "backend": backend,
                               "engine_dir": str(engine_dir) if engine_dir else None,
                               "images_dir": str(Path(images_dir).resolve())},
        **resources)
    stream = iter(dataset.iter_rows())
    log.info("ray generation", extra={"experiment": spec.key, "batches": len(jobs), "pages": plan.total,
                                      "actors": pool, **resources})
    arrived: dict[int, dict[int, dict]] = {}

    def batch(j: int) -> list[dict]:
        """Job ``j``'s pages, in row order: read the stream until they are all there (others wait)."""
        while len(arrived.get(j, ())) < len(jobs[j].rows):
            try:
                row = next(stream)
            except StopIteration:
                raise ContentError(f"Ray returned no pages for batch {j}") from None
            arrived.setdefault(int(row["job"]), {})[int(row["row"])] = row
        got = arrived.pop(j)
        return [got[r] for r in range(len(jobs[j].rows))]

    counts = VerdictCounts(report.by_verdict, report.failing)
    contexts: dict[str, CheckContext] = {}  # model -> image_sanity's duplicate index, as in a single process
    sanity = policy.image_sanity.action != "off"
    try:
        with tqdm(total=plan.total, desc=f"content {spec.key} (ray, {pool} actors)", unit="page",
                  disable=not progress) as bar:
            for (name, indices), (variant, _, _) in zip(order, plan.variants, strict=True):
                if name not in contexts:
                    contexts[name] = CheckContext()
                    register_experiment(contexts[name], con, spec.key, images_dir, policy)
                ctx = contexts[name]
                expects = resolve_expects(variant.content)
                for j in indices:
                    job, rows = jobs[j], batch(j)
                    pages = [_read_page(InterleavedContent, json.loads(r["content"]), images_dir) for r in rows]
                    checks = [PageChecks.from_json(json.loads(r["checks"])) for r in rows]
                    if sanity:
                        size = int(rows[0]["image_size"])
                        ctx.image_size = (size, size) if size else None
                        seen = [Page.from_content(p, item, prompt, expects, variant.key)
                                for p, item, prompt in zip(pages, job.items, job.prompts, strict=True)]
                        checks = _recheck_pictures(seen, checks, policy, ctx)
                    for item, prompt, page, page_checks in zip(job.items, job.prompts, pages, checks, strict=True):
                        store_page(con, images_dir, spec.key, variant.key, item, page, prompt, page_checks, policy,
                                   report, counts)
                        bar.update(1)
    except ContentError:
        raise
    except Exception as exc:
        raise ContentError(f"Ray generation stopped after {report.generated} of {plan.total} pages "
                           f"(they are stored; run it again for the rest): {type(exc).__name__}: {exc}") from exc
    return report


def _absolute(model: str) -> str:
    """A model directory given relative to this directory, made absolute (actors run elsewhere); a name
    (``armor-demo``, a shipped model or named configuration) stays as it is."""
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def _read_page(cls, data: dict, images_dir: Path):
    """A page an actor wrote, rebuilt from its JSON and the image store (each picture's SHA-256 verified)."""
    try:
        return cls.from_json(data, images_dir)
    except FileNotFoundError as exc:
        raise ContentError(f"a picture an actor wrote is not in the image store {images_dir}: {exc.filename} "
                           "(every Ray node must see the same image directory)") from None

