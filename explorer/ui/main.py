"""The dashboard page: sidebar inputs, the Run button, job progress, and the result views."""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from .. import record
from ..analysis import per_run
from ..analysis.projection import compile_umap
from ..data.datasets import ImageDataset
from ..data.source_table import kind_name
from . import budget, proxy, reproduce, runtime, sidebar, state, views
from .analysis_job import AnalysisJob, shared_sample
from .cut_view import cut_job
from .jobs import AlreadyRunning, Job, QueueFull
from .projections_view import emergence_job
from .similarity_view import nulls_job
from .text import code, plain

log = logging.getLogger(__name__)
RUN_ASKED = "run_asked"  # session key: a Run click not yet acted on
LINK_NOTICES = "link_notices"  # session key: what the sidebar changed of the link's request, shown until a Run click
_warm = threading.Event()


@dataclass
class Result:
    """A finished analysis as the views need it."""

    comparison: record.Comparison
    inputs: sidebar.Inputs


def warm_up_umap() -> None:
    """Pay numba's compilation once per server process, in the background (docs/design.md, "numba").

    Compiling holds the GIL most of the time, so it waits until the job queue has been idle for a
    moment; a UMAP job that comes first compiles for itself.
    """
    if _warm.is_set():
        return
    rt = runtime.current()
    if rt.mode.isolated_jobs:  # jobs in processes of their own load numba's cache there
        return
    _warm.set()

    def fit() -> None:
        try:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 3.0:
                time.sleep(0.5)
                if not rt.queue.idle():
                    quiet_since = time.monotonic()
            compile_umap()
            log.info("UMAP warm-up done")
        except Exception:  # warm-up is an optimisation only
            log.exception("UMAP warm-up failed")

    threading.Thread(target=fit, name="explorer-umap-warmup", daemon=True).start()


def _client() -> str:
    """The key of the visitor's limits (explorer.ui.proxy): their address (the entry the outermost of
    the host's EXPLORER_TRUSTED_PROXIES proxies added, else the connection's), an IPv6 one by its
    /64; every visitor whose address is unknown (Streamlit reports loopback as None) shares one key."""
    forwarded = ", ".join(st.context.headers.get_all("X-Forwarded-For"))  # every header line: a client may send its own
    return proxy.visitor_key(
        proxy.client_address(forwarded, st.context.ip_address, runtime.current().mode.trusted_proxies)
    )


def _session_id() -> str:
    if "session_id" not in st.session_state:
        st.session_state["session_id"] = uuid.uuid4().hex
    return st.session_state["session_id"]


def _sample(source: str, max_images: int | None) -> ImageDataset:
    """Bundled samples never change: checked once per server process, shared by every visitor (and
    by the jobs that run on the server's thread)."""
    return shared_sample(source, max_images, runtime.current().mode.limits)


def make_job(inputs: sidebar.Inputs, source: str, fresh_upload: bool) -> AnalysisJob:
    """The analysis a worker runs for these inputs (`fresh_upload`: `source` was written for this
    job and is deleted after it, by the queue): its specs decided here, from the inputs."""
    rt = runtime.current()
    return AnalysisJob(
        reproduce.request(inputs, source),
        rt.mode,
        str(rt.cache.root),
        fresh_upload,
        cache=None if rt.mode.isolated_jobs else rt.cache,
    )


def _shown(inputs: sidebar.Inputs) -> Callable[[Any], Result]:
    """What the worker makes of the analysis's Comparison, on the server's side: the result the
    page shows (and, in the demo, the movers gallery's ranking, so that it is made on the queue and
    not on a visitor's page thread; locally it is made when the gallery opens)."""
    inputs = replace(inputs, upload=None)  # the bytes are on disk now: not kept with the job or its result

    def finish(comp: record.Comparison) -> Result:
        if runtime.current().mode.name == "demo":
            for run in comp.runs:
                if len(run.features) > 1:
                    per_run.movers(comp, run)
        return Result(comp, inputs)

    return finish


def _check_budget(inputs: sidebar.Inputs) -> None:
    """Refuse at once what is over the mode's budget for as many images as the request can hold
    (the job checks again with the exact number)."""
    rt = runtime.current()
    if kind_name(inputs.data) == "sample":
        n = len(_sample(inputs.data, inputs.max_images))
    elif inputs.upload is not None and inputs.upload[0] == "files":
        n = min(len(inputs.upload[1]), inputs.max_images or rt.mode.max_images)
    else:  # a zip or a folder: counted when the job opens it
        return
    budget.check(reproduce.analysis(inputs, inputs.data)[1], n, rt.mode)


def submit(inputs: sidebar.Inputs, session: str, client: str | None, also: dict) -> None:
    """Queue an analysis for this session, or say why not; `also`: more session values to set.

    The session's state is written once, at the end (`state.write`): every access to it is where
    a rerun the visitor asked for meanwhile stops the script, and between a job queued and its id
    recorded that lost the job's outcome."""
    rt = runtime.current()
    log.info("session %s: analysis asked for (%r)", session[:8], "an upload" if inputs.upload else inputs.data[:60])
    source, cleanup = inputs.data, None
    try:
        if inputs.data == sidebar.SERVER_PATH:
            raise ValueError("type the path of a folder or zip on this machine first")
        if kind_name(inputs.data) == "upload" and inputs.upload is None:
            raise ValueError("choose files to upload first")
        _check_budget(inputs)
        if kind_name(inputs.data) == "upload":
            source = sidebar.write_upload(inputs.upload, runtime.upload_root())
            cleanup = functools.partial(shutil.rmtree, sidebar.upload_folder(source), ignore_errors=True)
        job = rt.queue.submit(
            session,
            make_job(inputs, source, cleanup is not None),
            cleanup,
            client=client,
            finish=_shown(inputs),
            isolated=rt.mode.isolated_jobs,
        )
    except (AlreadyRunning, QueueFull, ValueError) as exc:
        if cleanup is not None:  # refused: the upload is ours to delete
            cleanup()
        state.write({**also, "notice": str(exc)[:1].upper() + str(exc)[1:] + "."})
        return
    except BaseException:
        if cleanup is not None:  # not queued: the upload is ours to delete
            cleanup()
        raise
    state.write({**also, "submitted_job": job.id, "notice": state.DELETE})


def _queue_for_this_session(make: Callable[[Result], Callable[[Job], Any]], forget: str) -> None:
    """Queue `make(shown result)` for this session, under the queue's per-visitor limit, and forget
    the session's previous answer under `forget`; or say in the notice why not."""
    result: Result | None = st.session_state.get("result")
    if result is None:
        return
    try:
        job = runtime.current().queue.submit(_session_id(), make(result), None, client=_client())
    except (AlreadyRunning, QueueFull) as exc:
        st.session_state["notice"] = str(exc)[:1].upper() + str(exc)[1:] + "."
        return
    st.session_state["submitted_job"] = job.id
    st.session_state.pop("notice", None)
    st.session_state.pop(forget, None)


def export_cut(model: str, layer: str, as_embedder: bool = False) -> None:
    """The "Export this cut" (and "Export as an embedder") button's callback: queue the export of
    the shown result's cut of `model` at `layer`."""
    rt = runtime.current()
    _queue_for_this_session(
        lambda r: cut_job(r.comparison, model, layer, r.inputs.data, rt.cache, rt.mode.limits, as_embedder),
        "cut_export",
    )


def ask_emergence(run_label: str, images: tuple[int, ...]) -> None:
    """The "Where do these images emerge?" button's callback: queue the training of the
    selection's probes for the shown result (not on the page's thread)."""
    _queue_for_this_session(lambda r: emergence_job(r.comparison, run_label, images), "emergence")


def ask_nulls() -> None:
    """The "Test every pair against its null" button's callback: queue the similarity measures
    against their permutation nulls for the shown result."""
    rt = runtime.current()
    _queue_for_this_session(lambda r: nulls_job(r.comparison, rt.cache), "similarity_nulls")


def progress_panel() -> None:
    """This session's job: while it waits or runs, a panel that polls it (queue position or
    progress, and a Cancel button); once it ended, its outcome.

    Only a page with a job in flight polls (a fragment rerun every second): an idle page costs the
    server nothing, and its uploads and widgets are not rerun under the visitor (Streamlit reports
    uploads lost to frequent fragment reruns, issue #9079)."""
    job = runtime.current().queue.job_of(_session_id())
    if job is not None and job.active:
        _take_first_view(job)  # drawn by this run, below
        _job_status()
    elif (
        job is not None and _collect(job) or job is None and _outcome_not_shown()
    ):  # ended between this run's start and now
        st.rerun(scope="app")


@st.fragment(run_every=1.0)
def _job_status() -> None:
    """Queue position or progress, polled; draws the page again when the job ends."""
    rt = runtime.current()
    job = rt.queue.job_of(_session_id())
    if job is None:
        if _outcome_not_shown():
            st.rerun(scope="app")
        return
    if job.active and _take_first_view(job):
        st.rerun(scope="app")  # the first panels, while the rest is computed
    if job.active:
        pos = rt.queue.position(job)
        if pos:
            st.info(f"Waiting in the queue: position {pos}. Your analysis starts when a worker is free.", icon="⏳")
        else:
            frac = job.done / job.total if job.total else 0.0
            st.progress(min(max(frac, 0.0), 1.0), text=f"{job.stage} — {job.done}/{job.total}")
        st.button("Cancel", key="cancel", on_click=rt.queue.cancel, args=(job,))
    elif _collect(job):
        st.rerun(scope="app")


def _take_first_view(job: Job) -> bool:
    """Move a running analysis's first view (Job.show_early: its first panels, the rest still being
    computed) into the session as its result, once; True when it did."""
    early = runtime.current().queue.take_early(job)
    if early is None:
        return False
    state.write({"result": early})
    return True


def _collect(job: Job) -> bool:
    """Move a finished job's result or message into the session once; True when something changed."""
    if job.active or st.session_state.get("seen_job") == job.id:
        return False
    result = runtime.current().queue.take(job)  # the session holds it now; the queue forgets the job
    values: dict = {"seen_job": job.id}
    if job.state == "done":
        values[getattr(result, "SESSION_KEY", "result")] = result  # an analysis, or an export's or a question's answer
    elif job.state == "failed":
        values["notice"] = job.error[:1].upper() + job.error[1:] + ("" if job.error.endswith(".") else ".")
    elif job.state == "cancelled":
        values["notice"] = "Analysis cancelled; the layers finished so far stay cached for the next run."
    state.write(values)  # all of it, or a rerun asked for now would lose the result the queue let go
    return True


def _outcome_not_shown() -> bool:
    """Whether this session's last job ended without the page showing how: the queue forgot it
    before the session took it (the page did not poll within the result TTL; a notice says so), or
    the full rerun that draws the outcome did not happen. Checked every second by the progress
    panel, so that a visitor is never left looking at an older result."""
    ss = st.session_state
    submitted = ss.get("submitted_job")
    if submitted is not None and ss.get("seen_job") != submitted:
        state.write(
            {
                "seen_job": submitted,
                "notice": (
                    "Your analysis finished while this page was away, and its result was let go; press "
                    "Run analysis to open it again (what it computed is cached)."
                ),
            }
        )
        log.info("job %d: the session came back after its result was forgotten", submitted)
        return True
    if ss.get("seen_job") != ss.get("rendered_job"):
        log.info("job %s: its outcome is not on the page yet; the page is drawn again", ss.get("seen_job"))
        return True
    return False


def _wait_briefly(seconds: float = 4.0) -> None:
    """A cached analysis takes a fraction of a second: show it in this run instead of after a poll."""
    rt = runtime.current()
    job = rt.queue.job_of(_session_id())
    deadline = time.monotonic() + seconds
    # only while it runs or is about to: a visitor behind others sees their queue position at once
    while job is not None and job.active and job.early is None and time.monotonic() < deadline:
        pos = rt.queue.position(job)
        if pos > 1 or (pos == 1 and not rt.queue.has_free_worker()):
            break
        time.sleep(0.05)
    if job is not None:
        _collect(job)


def _changed(now: sidebar.Inputs, shown: sidebar.Inputs) -> bool:
    """Whether the sidebar asks for something other than the results on screen (uploads aside)."""
    fields = ("data", "max_images", "extract", "projection", "other_models", "random_baseline")
    return any(getattr(now, f) != getattr(shown, f) for f in fields) and kind_name(now.data) != "upload"


def _ask_for_analysis() -> None:
    """The Run button's callback: the click is kept in the session until a run of the page reaches
    the button. A click's own run can be stopped before it gets there by the next interaction (a
    tab clicked at once): Streamlit then reruns with that interaction's widget states, where the
    button reads False, and the click is lost (bench/bench_run_clicks.py). The callback itself runs
    before a newer request can stop the run (`state.apply_each_interaction_whole`)."""
    st.session_state[RUN_ASKED] = True


def _ask_to_load(models: tuple[tuple[str, str], ...]) -> None:
    """What a link asks to load that runs code, in one sentence, and the one button that loads it
    and runs the link's analysis; until then the page builds none of it."""
    names = tuple(m for m, _ in models)
    what = "; and ".join(f"{code(m[:120])}, which is {w}" for m, w in models)
    st.warning(f"This link asks to load {what}. Load it only if you trust whoever sent the link.", icon="🔒")
    link_first = sidebar.link_first_model()
    first = link_first if link_first in names else None
    st.button(
        f"Load {names[0][:60]}{' and the others' if len(names) > 1 else ''} and run",
        key="confirm_link_models",
        type="primary",
        on_click=_confirm_and_run,
        args=(names, first, tuple(m for m in names if m != first)),
    )


def _confirm_and_run(names: tuple[str, ...], first: str | None, others: tuple[str, ...]) -> None:
    sidebar.confirm_link_models(names, first, others)
    st.session_state[RUN_ASKED] = True


def render() -> None:
    """The whole page."""
    rt = runtime.current()
    state.apply_each_interaction_whole()  # from the first run on: no click lost between two requests
    st.markdown("## Bottleneck Explorer")
    st.caption("Where in a network do your classes become separable, and what does a narrow layer keep or lose?")
    inputs = sidebar.render()
    st.sidebar.button(
        "Run analysis",
        type="primary",
        key="run",
        width="stretch",
        on_click=_ask_for_analysis,
        help="Extracts every chosen layer in one forward pass (cached), then scores and projects them.",
    )
    if state.fast_reruns_on():  # the server could not turn them off (state.keep_clicks)
        st.sidebar.caption(
            "This server reruns the page at every click: a click followed at once by another can be "
            "lost. If nothing starts after Run analysis, press it again."
        )
    session, client = _session_id(), _client()
    if inputs.awaiting_confirmation:  # a link's model that runs code: nothing is built before the person says so
        _ask_to_load(inputs.awaiting_confirmation)
    first_visit = (
        "result" not in st.session_state
        and rt.queue.job_of(session) is None
        and not st.session_state.get("auto_done")
        and not inputs.awaiting_confirmation
    )
    # the last access to the state before a job is queued: a rerun asked for by then stops the
    # script before the pop, and the click waits in the state for the next run
    clicked = st.session_state.pop(RUN_ASKED, False)
    if clicked or first_visit:
        # a click also ends the link's notices (shown until then: drawing a result rewrites the link)
        forget = {LINK_NOTICES: state.DELETE, sidebar.LAYER_NOTICE: state.DELETE} if clicked else {}
        submit(inputs, session, client, also={"auto_done": True, **forget})
        _wait_briefly()
    warm_up_umap()  # after the first job is queued, so that it waits for it
    if inputs.notices:  # kept until a Run click: drawing a result rewrites the link, and the next run reads no notice
        st.session_state[LINK_NOTICES] = inputs.notices
    for text in inputs.notices or st.session_state.get(LINK_NOTICES, ()):
        st.warning(plain(text), icon="⚠️")
    if st.session_state.get("notice"):  # a job's error may quote a visitor's file name
        st.warning(plain(st.session_state["notice"]), icon="⚠️")
    st.session_state["rendered_job"] = st.session_state.get("seen_job")  # this run draws that job's outcome
    progress_panel()
    result: Result | None = st.session_state.get("result")
    if result is None:
        job = rt.queue.job_of(_session_id())
        if job is not None and job.active:
            st.caption("The first analysis is on its way; results are cached for everyone after it.")
        return
    if _changed(inputs, result.inputs):
        st.info(
            "The settings in the sidebar changed: press **Run analysis** to update. "
            "Layers already extracted come from the cache.",
            icon="ℹ️",
        )
    st.query_params.from_dict(reproduce.share_params(result.inputs))
    t0 = time.perf_counter()
    can_export = kind_name(result.inputs.data) != "upload"  # an upload is deleted after its analysis
    views.render(result.comparison, result.inputs, export_cut if can_export else None, ask_emergence, ask_nulls)
    log.debug("views rendered in %.2f s", time.perf_counter() - t0)
