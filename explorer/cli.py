"""Command line: `python -m explorer models | layers | compare`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, cutting, embedding
from .analysis.leaderboard import RANK_COLUMNS
from .analysis.open_set import UNKNOWN
from .analysis.uncertainty import accuracy_interval
from .config import DataSpec, ExtractSpec, Limits, MetricSpec, ProjectionSpec
from .data.datasets import ImageDataset
from .fsutil import atomic_write_bytes
from .networks import catalog, layers
from .output import embedder_files, export
from .output.sentences import budget_sentence, new_class_sentences, scorer_trust_sentence
from .process_setup import configure
from .progress import Cancelled, StageBar
from .request import AnalysisRequest
from .request import add_arguments as add_request_arguments
from .run import RunSettings, read_data, run_analysis
from .store import FeatureCache

log = logging.getLogger("explorer")

EXIT_BAD_INPUT = 2


def _cmd_models(args: argparse.Namespace) -> int:
    names = catalog.search(args.filter or "", sources=None if args.source == "all" else (args.source,), limit=None)
    width = max((len(n) for n in names), default=5) + 2
    print(f"{'model':<{width}} weights")
    for n in names:
        print(f"{n:<{width}} {catalog.availability(n)}")
    print(
        f"\n{len(names)} models; 'offline' weights load here without a network, 'download' ones need internet "
        "(or --weights FILE); --weights none (random init) always works. Any Hugging Face repo id works as hf:ORG/NAME, "
        "a save_pretrained folder as hf:FOLDER, your own model as FILE.pt2 or package.module:builder."
    )
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    prof = layers.profile(args.model)
    default = set(prof.default)
    print(f"{'node':<48} {'shape':<18} {'layout':<7} {'dim':>6} {'size':>10}  marks")
    for info in prof.layers:
        if args.blocks and not (info.is_block or info.node in default):
            continue
        marks = " ".join(
            m
            for m, on in (
                ("default", info.node in default),
                ("block", info.is_block),
                ("bottleneck", info.is_bottleneck),
            )
            if on
        )
        shape = "x".join(map(str, info.shape))
        print(f"{info.node:<48} {shape:<18} {info.layout:<7} {info.dim:>6} {info.size:>10}  {marks}")
    print(f"\ndefault layers: {','.join(prof.default)}")
    if not prof.class_token and any(i.layout == "tokens" for i in prof.layers):
        print("no class token: token sequences are mean-pooled (--tokens cls means mean here)")
    return 0


def analysis_from_args(args: argparse.Namespace) -> tuple[DataSpec, list[ExtractSpec], ProjectionSpec, MetricSpec]:
    """What `compare` analyses: the data, one ExtractSpec per run, the projection and the metrics
    (request.AnalysisRequest, the vocabulary the dashboard's link and the Python API share)."""
    return AnalysisRequest.from_namespace(args).specs()


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        max_files=args.max_files,
        max_file_bytes=int(args.max_file_mb * 1024**2),
        max_pixels=args.max_pixels,
        max_total_bytes=int(args.max_archive_gb * 1024**3),
    )


def _cache(args: argparse.Namespace) -> FeatureCache:
    cache = FeatureCache(args.cache_dir) if args.cache_dir else FeatureCache()
    cache.clean_leftovers(partial=False)  # a killed run's stale temporary files; its finished chunks resume
    return cache


def _load(source: str, args: argparse.Namespace, bar: StageBar, cache: FeatureCache) -> ImageDataset:
    """A dataset as the command line reads one: headers checked, no thumbnails (extraction decodes each image once)."""
    spec = DataSpec(
        source=source, random_state=getattr(args, "seed", 0), label_column=getattr(args, "label_column", None)
    )
    return read_data(spec, settings=RunSettings(limits=_limits(args)), cache=cache, progress=bar)


def _cmd_compare(args: argparse.Namespace) -> int:
    request = AnalysisRequest.from_namespace(args)
    settings = RunSettings(
        limits=_limits(args),
        engine=args.engine,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        leaderboard=not args.no_leaderboard,
        latency=not args.no_latency,
        similarity_nulls=args.similarity_nulls,
        keep_files=False,
    )
    bar = StageBar(enabled=not args.quiet)
    t0 = time.perf_counter()
    try:
        comp = run_analysis(request, cache=_cache(args), settings=settings, progress=bar)
    finally:
        bar.close()
    selection = None
    if args.select:
        selection = (args.select, comp.selection(args.select))
        if not selection[1]:
            raise ValueError(f"--select {args.select!r} matches no image: give a class, or COLUMN=VALUE of labels.csv")
    files = export.write_all(comp, args.out, selection)
    if not args.quiet:
        cols = ["model", "layer", "dim", "probe_acc", "knn_acc", "silhouette", "eff_dim"]
        print(comp.metrics[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if not comp.leaderboard.empty:
            front = comp.leaderboard[comp.leaderboard["pareto"]].sort_values("gflops")
            print("\nPareto front (probe accuracy against GFLOPs up to the layer):")
            print(
                front[["model", "layer", "dim", "probe_acc", "gflops", "latency_ms_b1", "logme"]].to_string(
                    index=False, float_format=lambda v: f"{v:.3g}"
                )
            )
            budget = {
                "max_gflops": args.max_gflops,
                "max_latency_ms": args.max_latency_ms,
                "max_dim": args.max_dim,
                "rank_by": args.rank_by,
            }
            print(budget_sentence(comp.leaderboard, **budget))
            print(scorer_trust_sentence(comp.agreement), "(scorer_agreement.csv)")
        layers = sum(len(r.features) for r in comp.runs)
        if not comp.alignment and args.similarity_nulls is None and layers > 1:
            print(
                f"similarity.csv not written: {layers} layers make {layers * (layers - 1) // 2} pairs to test against "
                "their nulls (about 0.25 s each); --similarity-nulls computes them."
            )
        said = [s for r in comp.runs for s in new_class_sentences(comp, r)]
        if said:
            print("\nNew classes (retrieval.csv, few_shot.csv, unseen_compression.csv):")
            print("\n".join(f"- {s}" for s in said))
        longest = bar.where_the_time_went()
        print(
            f"\n{len(comp.dataset)} images, {len(comp.dataset.skipped)} skipped; "
            f"{time.perf_counter() - t0:.1f}s{f' (longest: {longest})' if longest else ''}; "
            f"wrote {', '.join(files)} to {args.out}"
        )
    return 0


def _cmd_cut(args: argparse.Namespace) -> int:
    if (args.reduce or args.dims) and not args.embedding:
        raise ValueError("--reduce and --dims shape an embedder: add --embedding")
    if args.embedding and args.test_data:
        raise ValueError("--test-data is for a cut with a head; an embedder is tested on classes held out of --data")
    bar = StageBar(enabled=not args.quiet)
    cache = _cache(args)
    dataset = _load(args.data, args, bar, cache)
    test = _load(args.test_data, args, bar, cache) if args.test_data else None
    spec = ExtractSpec(
        model=args.model,
        weights=args.weights,
        layers=(args.layer,),
        pooling=args.pooling,
        token_pooling=args.tokens,
        precision=args.precision,
        device=args.device,
        batch_size=args.batch_size,
        random_state=args.seed,
    )
    command = "python -m explorer " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    if args.embedding:
        return _cut_embedder(args, dataset, spec, cache, bar, command)
    try:
        got = cutting.make_cut(
            dataset,
            spec,
            args.out,
            test=test,
            test_split=args.test_split,
            cache=cache,
            progress=bar,
            max_pixels=args.max_pixels,
            command=command,
        )
    finally:
        bar.close()
        dataset.close()
        if test is not None:
            test.close()
    m = got.metrics
    if not args.quiet:
        print(
            f"{m['model']} cut at {m['layer']}: {m['dim']} dimensions, {m['gflops']:.3g} GFLOPs, {m['params']:,} parameters"
        )
        print(
            f"test accuracy {m['test_accuracy']:.3f} (95 % interval {m['test_accuracy_low']:.3f}-{m['test_accuracy_high']:.3f}) "
            f"on {m['n_test']} images the head never saw; trained on {m['n_train']}, C = {m['c']:g}"
        )
        print(f"wrote {', '.join(got.files)} to {args.out}")
    return 0


def _cut_embedder(
    args: argparse.Namespace,
    dataset: Any,
    spec: ExtractSpec,
    cache: FeatureCache,
    bar: StageBar,
    command: str,
) -> int:
    """`cut --embedding`: the network up to the layer, no head (embedding.make_embedder)."""
    try:
        got = embedding.make_embedder(
            dataset,
            spec,
            args.out,
            reduce=args.reduce,
            dims=args.dims,
            cache=cache,
            progress=bar,
            max_pixels=args.max_pixels,
            command=command,
        )
    finally:
        bar.close()
        dataset.close()
    m = got.metrics
    if not args.quiet:
        print(
            f"{m['model']} embedder at {m['layer']}: {m['dim']} dimensions"
            f"{'' if m['reduce'] == 'none' else ' (' + m['reduce'].upper() + ' of ' + str(m['layer_dim']) + ')'}, "
            f"{m['gflops']:.3g} GFLOPs"
        )
        if "test_map_at_r" in m:
            print(
                f"on {m['test_images']} images of {len(m['test_classes'])} held-out classes: MAP@R {m['test_map_at_r']:.3f}, "
                f"precision@1 {m['test_precision_at_1']:.3f}, verification AUC {m['test_verification_auc']:.3f}"
            )
        print(f"wrote {', '.join(got.files)} to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.gallery or embedder_files.is_embedder(args.model):
        return _predict_gallery(args)
    if args.save_gallery:
        raise ValueError("--save-gallery needs an embedder (`cut --embedding`) and --gallery")
    bar = StageBar(enabled=not args.quiet)
    cache = _cache(args)
    dataset = _load(args.data, args, bar, cache)
    try:
        table = cutting.predict(
            args.model, dataset, max_pixels=args.max_pixels, progress=lambda d, t: bar("predicting", d, t)
        )
    finally:
        bar.close()
        dataset.close()
    accuracy = None
    if dataset.labels is not None:  # labelled images: how often the cut is right, with its interval
        table.insert(3, "label", list(dataset.labels))
        decoded = table["error"] == ""
        right = (table.loc[decoded, "predicted"] == table.loc[decoded, "label"]).to_numpy()
        accuracy = (float(right.mean()), *accuracy_interval(right)) if len(right) else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, table.to_csv(index=False, float_format="%.6g").encode())
    if not args.quiet:
        failed = int((table["error"] != "").sum())
        print(f"{len(table)} images, {failed} could not be decoded; wrote {out}")
        if accuracy is not None:
            print(
                f"accuracy {accuracy[0]:.3f} (95 % interval {accuracy[1]:.3f}-{accuracy[2]:.3f}) against the folders' labels"
            )
        print(table["predicted"][table["error"] == ""].value_counts().to_string())
    return 0


def _predict_gallery(args: argparse.Namespace) -> int:
    """`predict --gallery`: enrol (or read) a gallery with an embedder and recognise each query
    as its nearest class or `unknown` (embedding.enrol_gallery, embedding.recognise_images)."""
    if not embedder_files.is_embedder(args.model):
        raise ValueError(f"--gallery needs an embedder folder (`cut --embedding`); {args.model!r} is not one")
    if not args.gallery:
        raise ValueError(
            "an embedder recognises by similarity: give --gallery FOLDER (one folder per class) or gallery.npz"
        )
    embedder = embedder_files.load_embedder(args.model)  # checked before any image is read
    bar = StageBar(enabled=not args.quiet)
    cache = _cache(args)
    try:
        if Path(args.gallery).suffix == ".npz" and Path(args.gallery).is_file():
            gallery = embedder_files.load_gallery(args.gallery, embedder.identity)
        else:
            enrolled = _load(args.gallery, args, bar, cache)
            try:
                gallery = embedding.enrol_gallery(
                    embedder,
                    enrolled,
                    far=args.far,
                    max_pixels=args.max_pixels,
                    progress=lambda d, t: bar("enrolling the gallery", d, t),
                )
            finally:
                enrolled.close()
            if args.save_gallery:
                embedder_files.save_gallery(args.save_gallery, gallery, embedder.identity)
        dataset = _load(args.data, args, bar, cache)
        try:
            table = embedding.recognise_images(
                embedder, gallery, dataset, max_pixels=args.max_pixels, progress=lambda d, t: bar("recognising", d, t)
            )
        finally:
            dataset.close()
    finally:
        bar.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, table.to_csv(index=False, float_format="%.6g").encode())
    if not args.quiet:
        counts = ", ".join(f"{n} images" for n in sorted(set(gallery.counts.tolist())))
        print(
            f"gallery: {len(gallery.classes)} classes ({counts} each), threshold {gallery.threshold:.3f} "
            f"for a false-accept rate of {gallery.far:g}"
            + (
                f" (the gallery can tell rates down to {gallery.far_floor:.3g} only: the threshold is its highest impostor)"
                if gallery.far < gallery.far_floor
                else ""
            )
        )
        unknown = int((table["prediction"] == UNKNOWN).sum())
        print(f"{len(table)} images, {unknown} answered {UNKNOWN}; wrote {out}")
        if args.save_gallery:
            print(f"saved the gallery to {args.save_gallery}")
    return 0


def _add_limits(c: argparse.ArgumentParser) -> None:
    lim = Limits()
    c.add_argument(
        "--max-files",
        type=int,
        default=lim.max_files,
        help="most images kept after --max-images (and entries of a zip)",
    )
    c.add_argument("--max-file-mb", type=float, default=lim.max_file_bytes / 1024**2, help="largest image file, MB")
    c.add_argument(
        "--max-pixels", type=int, default=lim.max_pixels, help="largest image, width x height (pixel-bomb guard)"
    )
    c.add_argument(
        "--max-archive-gb", type=float, default=lim.max_total_bytes / 1024**3, help="most a zip may expand to, GB"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m explorer",
        description="What the bottleneck layers of pretrained image networks make of your images.",
    )
    p.add_argument("--version", action="version", version=f"explorer {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models", help="list models and whether their weights are available offline")
    m.add_argument(
        "--filter",
        default=None,
        help="words that must all appear in the name (dino, convnext tiny), or an fnmatch pattern ('resnet*')",
    )
    m.add_argument(
        "--source", default="all", choices=["all", "torchvision", "timm", "hf"], help="which library's models"
    )
    lay = sub.add_parser(
        "layers", help="list a model's layers (FX nodes, or modules) with shapes, dims, defaults, bottlenecks"
    )
    lay.add_argument("--model", required=True)
    lay.add_argument("--blocks", action="store_true", help="only block outputs and default picks")
    c = sub.add_parser("compare", help="extract, score and project layers; write metrics, features and a report")
    add_request_arguments(c)  # the analysis's flags: request.py, the vocabulary the link and the Python API share
    _add_limits(c)
    c.add_argument(
        "--no-leaderboard",
        action="store_true",
        help="skip LogME, the compression curves and the cost per layer (leaderboard.csv, compression.csv)",
    )
    c.add_argument(
        "--no-latency", action="store_true", help="leave the measured latency out of the leaderboard (no timed passes)"
    )
    c.add_argument(
        "--similarity-nulls",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CKA, CKNNA, mutual kNN, RSA and Procrustes of every pair of layers on a sample of 300 images, each "
        "against its permutation null and with a bootstrap interval (similarity.csv; about 0.25 s a pair of layers). "
        "Given neither flag: up to 16 layers (120 pairs); --similarity-nulls forces it, --no-similarity-nulls skips it",
    )
    c.add_argument(
        "--max-gflops", type=float, default=None, help="name the most accurate cut under this many GFLOPs per image"
    )
    c.add_argument(
        "--max-latency-ms", type=float, default=None, help="... under this many ms per image at batch 1 here"
    )
    c.add_argument("--max-dim", type=int, default=None, help="... with at most this many feature dimensions")
    c.add_argument(
        "--rank-by",
        default="probe_acc",
        choices=list(RANK_COLUMNS),
        help="the accuracy column that names the best cut: probe_acc, knn_acc, map_at_r (retrieval, no training) or "
        "few_shot_5_prototype (5 images per class, no training)",
    )
    c.add_argument(
        "--engine", default="local", choices=["local", "ray"], help="where extraction runs: here, or on Ray (Ray Data)"
    )
    c.add_argument(
        "--ray-address", default=None, help="a running Ray cluster (HOST:6379 or auto); default: a local Ray instance"
    )
    c.add_argument(
        "--ray-actors", type=int, default=None, help="model-holding actors (default: one per GPU, else per 4 CPUs)"
    )
    c.add_argument(
        "--cache-dir", default=None, help="feature cache (default $EXPLORER_CACHE_DIR or ~/.cache/bottleneck-explorer)"
    )
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    k = sub.add_parser(
        "cut",
        help="train a head on one layer and export the network up to it: cut.pt2 (torch.export), "
        "preprocess.json, labels.json, metrics.json, model_card.md",
    )
    k.add_argument(
        "--data", default="sample:clothing", help="labelled images to train on: folder, .zip, or sample:NAME"
    )
    k.add_argument("--model", default="mobilenet_v2", help="one model of any source (as compare)")
    k.add_argument("--weights", default="auto", help="auto | none (random init) | a torchvision weights name | a file")
    k.add_argument(
        "--label-column", default=None, help="the label column of a table, metadata.csv/jsonl or a shard's .json"
    )
    k.add_argument("--layer", required=True, help="the layer to cut at (`layers --model M` lists them)")
    k.add_argument("--test-data", default=None, help="labelled images to test on (then every --data image trains)")
    k.add_argument(
        "--test-split", type=float, default=0.2, help="without --test-data: the share of each class held out to test"
    )
    k.add_argument(
        "--embedding",
        action="store_true",
        help="no head: export the network up to the layer as an embedder (pooled, L2-normalised features) that "
        "recognises new classes by similarity (`predict --gallery`); writes embedder.pt2, preprocess.json, "
        "metrics.json, model_card.md",
    )
    k.add_argument(
        "--reduce",
        default=None,
        choices=["pca", "lda"],
        help="with --embedding: a learned projection to --dims dimensions (fitted on half the classes, tested on the other)",
    )
    k.add_argument("--dims", type=int, default=None, help="with --reduce: dimensions kept (default: all it gives)")
    k.add_argument("--pooling", default="avg", choices=["avg", "max", "avgmax"])
    k.add_argument("--tokens", default="cls", choices=["cls", "mean"], help="pooling of ViT token sequences")
    k.add_argument(
        "--precision",
        default="fp32",
        choices=["auto", "fp32", "bf16"],
        help="of the training features (fp32: as the exported program runs)",
    )
    k.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    k.add_argument("--batch-size", type=int, default=32)
    k.add_argument("--seed", type=int, default=0, help="the split, the inner cross-validation, a random init")
    k.add_argument("--cache-dir", default=None, help="feature cache (as compare)")
    k.add_argument("--out", required=True, help="the folder to write the cut into")
    k.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    _add_limits(k)
    r = sub.add_parser(
        "predict", help="run an exported cut on new images: predictions.csv (file, predicted, probability)"
    )
    r.add_argument("--model", required=True, help="a folder written by `cut` (or `cut --embedding`, with --gallery)")
    r.add_argument("--data", required=True, help="images: folder, .zip, or sample:NAME (labels are not needed)")
    r.add_argument(
        "--gallery",
        default=None,
        help="with an embedder: one folder of images per class to enrol (a handful each), or a gallery.npz saved before; "
        "predictions.csv is then path, prediction (a class or `unknown`), similarity",
    )
    r.add_argument(
        "--far",
        type=float,
        default=0.01,
        help="with --gallery: the false-accept rate the `unknown` threshold is set for, estimated on the gallery",
    )
    r.add_argument(
        "--save-gallery", default=None, help="with --gallery FOLDER: save the enrolled gallery (.npz, no pickle)"
    )
    r.add_argument("--out", default="predictions.csv", help="the CSV to write")
    r.add_argument("--cache-dir", default=None, help="where reading a folder's files is remembered (as compare)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    _add_limits(r)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input exits 2 with one line on stderr and no traceback."""
    configure()
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    commands = {
        "models": _cmd_models,
        "layers": _cmd_layers,
        "compare": _cmd_compare,
        "cut": _cmd_cut,
        "predict": _cmd_predict,
    }
    try:
        return commands[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (KeyboardInterrupt, Cancelled):
        print("interrupted: finished chunks are cached; run the same command again to resume", file=sys.stderr)
        return 130
