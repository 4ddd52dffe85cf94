"""τ sweeps as a tree: the steps the τ share run once, and every τ's images equal its own run's."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gligen_eval.cli import main  # noqa: E402
from gligen_eval.config import SamplerConfig  # noqa: E402
from gligen_eval.generation import grounding as G  # noqa: E402
from gligen_eval.generation.sampler import GroundedSampler, tree_steps  # noqa: E402
from gligen_eval.generation.tiny import tiny_components  # noqa: E402
from gligen_eval.records import GroundedObject, Layout  # noqa: E402

SIZE = 32
LAYOUTS = [
    Layout("two", "a dog and a cat", (GroundedObject("a dog", (0.05, 0.2, 0.5, 0.9)),
                                      GroundedObject("a cat", (0.55, 0.3, 0.95, 0.8)))),
    Layout("one", "a red car", (GroundedObject("a red car", (0.1, 0.4, 0.9, 0.8)),)),
    Layout("none", "an empty street", ()),
]  # fmt: skip
SEEDS = [3, 5, 7]


def _settings(scheduler: str, **kw) -> SamplerConfig:
    return SamplerConfig(steps=5, height=SIZE, width=SIZE, scheduler=scheduler, schedule="alpha", batch_size=2, **kw)


def _png(t: torch.Tensor) -> list[bytes]:
    from PIL import Image

    from gligen_eval.generation.sampler import to_uint8

    out = []
    for a in to_uint8(t.permute(0, 2, 3, 1).numpy()):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


class _Counter:
    """Counts UNet evaluations."""

    def __init__(self, unet):
        self.n = 0
        unet.register_forward_pre_hook(lambda *_: setattr(self, "n", self.n + 1))


@pytest.fixture(scope="module")
def box_sampler():
    return GroundedSampler(tiny_components(seed=0, sample_size=SIZE))


@pytest.mark.parametrize("scheduler", ["pndm", "dpm"])
def test_branches_equal_independent_runs_to_the_byte(box_sampler, scheduler):
    """Hard cuts and a decay segment, on schedulers with (PNDM, DPM-Solver) and without history."""
    alphas = [[0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0], [0.3, 0.4, 0.3]]
    branches = [_settings(scheduler, alpha=a) for a in alphas]
    counter = _Counter(box_sampler.unet)
    tree = box_sampler.generate_branches(LAYOUTS, SEEDS, branches)
    shared = counter.n
    independent = [box_sampler.generate_tensors(LAYOUTS, SEEDS, b) for b in branches]
    for got, want in zip(tree, independent):
        assert torch.equal(got, want)
        assert _png(got) == _png(want)
    assert not torch.equal(tree[0], tree[2])  # the branches did diverge
    scales = [box_sampler._scales(box_sampler._loop_length(b), b) for b in branches]
    assert shared == 2 * tree_steps(scales) < counter.n - shared  # 2 batches; fewer than the separate runs


def test_spatial_branches_use_the_base_first_conv_and_equal_independent_runs():
    comps = tiny_components(seed=1, sample_size=SIZE, modality="canny")
    sampler = GroundedSampler(comps, grounding=G.get_grounding("canny", map_provider="synthetic"))
    branches = [_settings("pndm", alpha=a) for a in ([0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0])]
    tree = sampler.generate_branches(LAYOUTS[:2], SEEDS[:2], branches)
    for got, b in zip(tree, branches):
        assert torch.equal(got, sampler.generate_tensors(LAYOUTS[:2], SEEDS[:2], b))


def test_tree_steps_counts_shared_prefixes():
    assert tree_steps([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]) == 6
    assert tree_steps([[0.5, 0.0], [0.5, 0.0]]) == 2
    # the full config's sweep: 5.2 trajectories of 10 steps instead of 7
    taus = [0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    assert tree_steps([[1.0] * round(t * 10) + [0.0] * round(10 - t * 10) for t in taus]) == 52


def test_branches_must_share_everything_but_the_schedule(box_sampler):
    with pytest.raises(ValueError, match="differ only"):
        box_sampler.generate_branches(LAYOUTS, SEEDS, [_settings("pndm"), _settings("ddim")])


# ---- through `gligen-eval run` --------------------------------------------------------------------

RUN = ["--set", "layouts.limit=4", "--set", "sampler.steps=4", "--set", "sampler.batch_size=2",
       "--set", "sampler.height=64", "--set", "sampler.width=64", "--no-progress"]  # fmt: skip


def _images(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / "images").iterdir()}


def _points(out: Path) -> dict[float, Path]:
    return {p["tau"]: out / p["run"] for p in json.loads((out / "sweep.json").read_text())["points"]}


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    assert main(["run", "--out", str(out), *RUN, "--set", "sweep.tau=[0.0, 0.5, 1.0]"]) == 0
    return out


@pytest.mark.slow
def test_sweep_point_images_equal_independent_runs(sweep_run, tmp_path):
    points = _points(sweep_run)
    assert not (sweep_run / ".trunk").exists()  # the kept branch images went to their runs
    for tau in (0.0, 0.5):
        alone = tmp_path / f"alone-{tau}"
        assert main(["run", "--out", str(alone), *RUN, "--set", f"sampler.alpha=[{tau}, 0.0, {1 - tau}]"]) == 0
        assert _images(points[tau]) == _images(alone) and len(_images(alone)) == 4
        samples = lambda r: (r / "samples.jsonl").read_text()  # noqa: E731
        assert samples(points[tau]) == samples(alone)
        assert json.loads((points[tau] / "metrics.json").read_text()) == json.loads((alone / "metrics.json").read_text())


@pytest.mark.slow
def test_killed_sweep_resumes_with_identical_images(sweep_run, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    real = GroundedSampler.generate_branches
    calls: list[int] = []

    def dies_on_second_batch(self, layouts, seeds, branches, **kw):
        calls.append(len(branches))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, layouts, seeds, branches, **kw)

    monkeypatch.setattr(GroundedSampler, "generate_branches", dies_on_second_batch)
    # written in order, so batch 1 of τ = 0 is surely on disk when batch 2 is interrupted (the
    # overlapped writer may drop its queue on Ctrl-C: the missing set would depend on timing)
    args = [*RUN, "--set", "sweep.tau=[0.0, 0.5, 1.0]", "--set", "sampler.write_overlap=false"]
    assert main(["run", "--out", str(out), *args]) == 130  # interrupted
    assert len(list((out / ".trunk").rglob("*.png"))) == 4  # batch 1 of τ = 0.5 and 1 kept
    calls.clear()
    assert main(["run", "--out", str(out), *args, "--resume"]) == 0
    assert calls == [3]  # only the missing batch, for the three τ at once
    done, want = _points(out), _points(sweep_run)
    for tau in (0.0, 0.5, 1.0):
        assert _images(done[tau]) == _images(want[tau])
    assert not (out / ".trunk").exists()
