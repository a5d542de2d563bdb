"""Pretrained weights: bundled files, the pooch download cache, hash refusal, the resolver, the CLI and the
registry-update script. Weights are served by a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import os

import hashlib
import http.server
import importlib.util
import shutil
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from issm_emulator import weights
from issm_emulator.errors import DataUnavailableError, SolverError
from issm_emulator.nn import model_from_spec
from issm_emulator.solvers.emulator.checkpoint import load_checkpoint, make_manifest, save_checkpoint
from issm_emulator.weights.cli import fetch_command
from tests.test_nn_checkpoint import MELT, SPEC, TIME, fitted_normalizers

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("update_weights_registry",
                                                  ROOT / "scripts" / "update_weights_registry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


script = _load_script()


def _tiny_checkpoint(path: Path, arch: str = "gcn", mode: str = "step", seed: int = 0) -> Path:
    import torch

    _, _, norm_in, norm_out = fitted_normalizers()
    torch.manual_seed(seed)
    model = model_from_spec(arch, SPEC, hidden=4, n_layers=1)
    return save_checkpoint(path, model, make_manifest(SPEC, mode, {"melt_rate": MELT, "time": TIME}, arch=arch),
                           norm_in, norm_out)


@pytest.fixture(scope="module")
def ckpt_files(tmp_path_factory):
    """Two tiny checkpoints in a folder laid out as the repository's weights/ (one in a subfolder)."""
    d = tmp_path_factory.mktemp("repo_weights")
    _tiny_checkpoint(d / "gcn-step-tiny.pt", "gcn", "step", seed=0)
    _tiny_checkpoint(d / "cnn" / "cnn-direct-tiny.pt", "cnn", "direct", seed=1)
    return d


class _Server:
    """A threaded static-file server on 127.0.0.1 that records the paths requested."""

    def __init__(self, root: Path):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            timeout = 10

            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(root), **k)

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *a, **k):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights"  # no trailing slash on purpose
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.running = True

    def stop(self):
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=10)
            self.running = False


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/weights/"


@pytest.fixture()
def env(tmp_path, monkeypatch, ckpt_files):
    """Isolated weights: empty bundled folder, empty cache, a registry written by the update script from a
    copy of ``ckpt_files`` that a local server publishes under ``/weights/``."""
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    published = tmp_path / "site" / "weights"
    shutil.copytree(ckpt_files, published)
    reg_file = tmp_path / "weights.txt"
    assert script.main(["--weights-dir", str(published), "--registry", str(reg_file)]) == 0
    cache = tmp_path / "cache"
    server = _Server(tmp_path / "site")
    monkeypatch.setattr(weights, "bundled_dir", lambda: bundled)
    monkeypatch.setattr(weights, "registry_file", lambda: reg_file)
    monkeypatch.setenv(weights.CACHE_ENV_VAR, str(cache))
    monkeypatch.setenv(weights.URL_ENV_VAR, server.url)
    yield {"bundled": bundled, "published": published, "cache": cache, "server": server, "registry": reg_file,
           "monkeypatch": monkeypatch}
    server.stop()


# ------------------------------------------------------------------------------------------------ registry
def test_package_registry_and_bundled_names_are_well_formed():
    reg = weights.registry()  # parses and validates every line of the shipped file
    for name in [*reg, *weights.list_bundled()]:
        arch, mode, scenario = name.split("-", 2)
        assert arch in ("egcn", "gcn", "cnn") and mode in ("step", "direct") and scenario, name
    assert weights.registry_file().read_text().startswith("#")


@pytest.mark.parametrize("line, match", [
    ("gcn-step-x sha256:abc gcn-step-x.pt", "64 lowercase hex"),
    ("gcn-step-x gcn-step-x.pt", "expected '<name> sha256:<hex> <location>'"),
    (f"gcn-step-x sha256:{'0' * 64} ../gcn-step-x.pt", "relative path"),
    (f"gcn-step-x sha256:{'0' * 64} https://example.org/gcn-step-x.pt", "relative path"),
    (f"gcn-step-x sha256:{'0' * 64} other.pt", "relative path"),
    (f"gcn-step-x sha256:{'0' * 64} gcn-step-x.pt\ngcn-step-x sha256:{'1' * 64} gcn-step-x.pt", "line 3.*twice"),
])
def test_malformed_registry_refused(tmp_path, monkeypatch, line, match):
    f = tmp_path / "weights.txt"
    f.write_text("# header\n" + line + "\n")
    monkeypatch.setattr(weights, "registry_file", lambda: f)
    with pytest.raises(ValueError, match=match):
        weights.registry()


def test_default_cache_dir_and_url(monkeypatch):
    monkeypatch.delenv(weights.CACHE_ENV_VAR, raising=False)
    monkeypatch.delenv(weights.URL_ENV_VAR, raising=False)
    assert weights.cache_dir().parts[-2:] == ("issm-emulator", "weights")
    assert weights.base_url() == weights.DEFAULT_BASE_URL
    assert weights.DEFAULT_BASE_URL.endswith("/weights/")
    monkeypatch.setenv(weights.URL_ENV_VAR, "https://mirror.example/w")
    assert weights.base_url() == "https://mirror.example/w/"
    monkeypatch.setenv(weights.CACHE_ENV_VAR, "~/w")
    assert weights.cache_dir() == Path("~/w").expanduser()


# ------------------------------------------------------------------------------------------------ fetching
def test_download_verify_and_reuse_offline(env, ckpt_files):
    server = env["server"]
    old_umask = os.umask(0o022)
    try:
        p = weights.fetch("gcn-step-tiny")
    finally:
        os.umask(old_umask)
    assert p == env["cache"] / "gcn-step-tiny.pt"
    assert (p.stat().st_mode & 0o777) == 0o644  # the user's normal mode, not the 0600 of pooch's temporary
    assert p.read_bytes() == (ckpt_files / "gcn-step-tiny.pt").read_bytes()
    q = weights.fetch("cnn-direct-tiny.pt")  # with the suffix, in a subfolder
    assert q == env["cache"] / "cnn" / "cnn-direct-tiny.pt"
    assert load_checkpoint(q).manifest["arch"] == "cnn"
    assert server.requests == ["/weights/gcn-step-tiny.pt", "/weights/cnn/cnn-direct-tiny.pt"]
    # offline afterwards: the cache is used without any network access
    server.stop()
    env["monkeypatch"].setenv(weights.URL_ENV_VAR, _closed_port_url())
    assert weights.fetch("gcn-step-tiny") == p
    assert weights.resolve("cnn-direct-tiny") == q
    assert len(server.requests) == 2


def test_corrupted_cached_file_refused(env):
    p = weights.fetch("gcn-step-tiny")
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataUnavailableError, match=r"fails its hash.*rm .*gcn-step-tiny\.pt.*"
                                                   r"issm-emulator fetch gcn-step-tiny"):
        weights.fetch("gcn-step-tiny")
    assert len(env["server"].requests) == 1  # refused, not silently replaced
    info = {i.name: i for i in weights.available()}["gcn-step-tiny"]
    assert info.corrupted and not info.cached and info.path is None and info.status == "corrupted"
    p.unlink()
    assert weights.fetch("gcn-step-tiny").read_bytes() == (env["published"] / "gcn-step-tiny.pt").read_bytes()


def test_bad_download_rejected(env):
    (env["published"] / "gcn-step-tiny.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataUnavailableError, match=r"does not have the sha256.*ISSM_EMULATOR_WEIGHTS_URL"):
        weights.fetch("gcn-step-tiny")
    assert env["server"].requests == ["/weights/gcn-step-tiny.pt"]
    assert not env["cache"].exists() or list(env["cache"].rglob("*")) == []  # nothing kept, no temp file


@pytest.mark.parametrize("where", ["offline", "missing on server"])
def test_uncached_and_unreachable(env, where):
    if where == "offline":
        env["server"].stop()
        env["monkeypatch"].setenv(weights.URL_ENV_VAR, _closed_port_url())
    else:
        (env["published"] / "gcn-step-tiny.pt").unlink()
    with pytest.raises(DataUnavailableError,
                       match=r"not in the cache folder.*ISSM_EMULATOR_WEIGHTS_DIR.*ISSM_EMULATOR_WEIGHTS_URL"):
        weights.fetch("gcn-step-tiny")
    assert not (env["cache"] / "gcn-step-tiny.pt").exists()


def test_unknown_name_lists_available(env):
    (env["bundled"] / "egcn-step-bundled.pt").write_bytes(b"x")
    with pytest.raises(weights.UnknownWeightsError) as err:
        weights.fetch("egcn-step-nowhere")
    msg = str(err.value)
    assert msg.startswith("unknown weights 'egcn-step-nowhere'")
    assert "available: cnn-direct-tiny, egcn-step-bundled, gcn-step-tiny" in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, weights.WeightsNotFoundError)
    with pytest.raises(weights.UnknownWeightsError, match="no such file.*available: cnn-direct-tiny"):
        weights.resolve("egcn-step-nowhere")
    with pytest.raises(weights.WeightsNotFoundError, match="no such file"):
        weights.resolve("/nonexistent/gcn-step-tiny.pt")  # a path is never looked up by name
    assert env["server"].requests == []


def test_bundled_file_preferred_without_network(env):
    bundled = env["bundled"] / "gcn-step-tiny.pt"
    _tiny_checkpoint(bundled, seed=5)  # same name as a registry entry, other bytes: a damaged installation
    env["server"].stop()
    env["monkeypatch"].setenv(weights.URL_ENV_VAR, _closed_port_url())
    with pytest.raises(weights.CorruptedWeightsError, match="gcn-step-tiny.pt fail their hash check"):
        weights.fetch("gcn-step-tiny")
    shutil.copyfile(env["published"] / "gcn-step-tiny.pt", bundled)  # the registry's bytes, as shipped
    env["monkeypatch"].setenv(weights.URL_ENV_VAR, _closed_port_url())
    assert weights.fetch("gcn-step-tiny") == bundled
    assert weights.resolve("gcn-step-tiny") == bundled
    assert weights.default_checkpoint("gcn", "step") == bundled
    info = {i.name: i for i in weights.available()}["gcn-step-tiny"]
    assert (info.bundled, info.registered, info.cached, info.path, info.status) == \
        (True, True, False, bundled, "bundled")
    assert env["server"].requests == []


def test_available_flags_and_fetch_all(env):
    (env["bundled"] / "egcn-step-only.pt").write_bytes(b"bundled")
    before = {i.name: i for i in weights.available()}
    assert sorted(before) == ["cnn-direct-tiny", "egcn-step-only", "gcn-step-tiny"]
    assert [before[n].status for n in sorted(before)] == ["remote", "bundled", "remote"]
    assert not before["egcn-step-only"].registered and before["gcn-step-tiny"].path is None
    got = weights.fetch_all()
    assert got == {"cnn-direct-tiny": env["cache"] / "cnn" / "cnn-direct-tiny.pt",
                   "egcn-step-only": env["bundled"] / "egcn-step-only.pt",
                   "gcn-step-tiny": env["cache"] / "gcn-step-tiny.pt"}
    after = {i.name: i for i in weights.available()}
    assert after["gcn-step-tiny"].cached and after["gcn-step-tiny"].path == got["gcn-step-tiny"]
    assert after["cnn-direct-tiny"].status == "cached"


def test_fetch_all_reports_every_failure_after_trying_all(env):
    (env["published"] / "cnn" / "cnn-direct-tiny.pt").unlink()
    with pytest.raises(DataUnavailableError, match=r"(?s)1 of 2 weights files.*cnn-direct-tiny"):
        weights.fetch_all()
    assert (env["cache"] / "gcn-step-tiny.pt").is_file()  # the other one was still fetched


def test_default_checkpoint_points_to_downloadable(env):
    with pytest.raises(weights.WeightsNotFoundError, match="downloadable instead: gcn-step-tiny"):
        weights.default_checkpoint("gcn", "step")
    assert not weights.has_default("gcn", "step")


def test_solve_with_registry_name_downloads_it(env, tmp_path):
    import issm_emulator
    from issm_emulator.issm.adapter import read_model
    from tests.modelfactory import make_square_shelf_md
    from tests.test_rollout import make_checkpoint

    md = make_square_shelf_md(6, 6)
    src = make_checkpoint(env["published"] / "gcn-direct-square.pt", "gcn", "direct",
                          read_model(md, "TransientSolution"))
    assert script.main(["--weights-dir", str(env["published"]), "--registry", str(env["registry"])]) == 0
    issm_emulator.solve(md, "Transient", solver="gcn", mode="direct", checkpoint="gcn-direct-square",
                        device="cpu")
    cached = env["cache"] / "gcn-direct-square.pt"
    assert cached.read_bytes() == src.read_bytes()
    assert "gcn-direct-square.pt" in md.results.TransientSolution.steps[0].outlog
    assert env["server"].requests == ["/weights/gcn-direct-square.pt"]


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_fetch_list_and_errors(env):
    runner = CliRunner()
    r = runner.invoke(fetch_command, ["--list"])
    assert r.exit_code == 0, r.output
    assert str(env["cache"]) in r.output and weights.URL_ENV_VAR in r.output
    assert any(line.split()[:2] == ["gcn-step-tiny", "remote"] for line in r.output.splitlines())

    r = runner.invoke(fetch_command, ["gcn-step-tiny"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(env["cache"] / "gcn-step-tiny.pt")

    r = runner.invoke(fetch_command, ["--all"])
    assert r.exit_code == 0, r.output
    assert r.output.split() == [str(env["cache"] / "cnn" / "cnn-direct-tiny.pt"),
                                str(env["cache"] / "gcn-step-tiny.pt")]
    r = runner.invoke(fetch_command, ["--list"])
    assert any(line.split()[:3] == ["cnn-direct-tiny", "cached", str(env["cache"] / "cnn" / "cnn-direct-tiny.pt")]
               for line in r.output.splitlines())

    r = runner.invoke(fetch_command, ["gcn-nope"])
    assert r.exit_code == 1 and "available: cnn-direct-tiny, gcn-step-tiny" in r.output

    (env["cache"] / "gcn-step-tiny.pt").write_bytes(b"tampered")
    r = runner.invoke(fetch_command, ["gcn-step-tiny"])
    assert r.exit_code == 1 and "issm-emulator fetch gcn-step-tiny" in r.output

    for args in ([], ["--all", "gcn-step-tiny"], ["--list", "--all"]):
        assert runner.invoke(fetch_command, args).exit_code == 2


# ------------------------------------------------------------------------------------------------ script
def test_update_registry_script(tmp_path, ckpt_files, capsys):
    wdir = tmp_path / "weights"
    shutil.copytree(ckpt_files, wdir)
    (wdir / "README.md").write_text("not a checkpoint\n")
    reg = tmp_path / "out" / "weights.txt"
    assert script.main(["--weights-dir", str(wdir), "--registry", str(reg)]) == 0
    assert "skipped (not a .pt checkpoint): README.md" in capsys.readouterr().err
    from issm_emulator._download import parse_registry

    entries = parse_registry(reg.read_text())
    assert entries == {
        "cnn-direct-tiny": ("sha256:" + hashlib.sha256((wdir / "cnn/cnn-direct-tiny.pt").read_bytes()).hexdigest(),
                            "cnn/cnn-direct-tiny.pt"),
        "gcn-step-tiny": ("sha256:" + hashlib.sha256((wdir / "gcn-step-tiny.pt").read_bytes()).hexdigest(),
                          "gcn-step-tiny.pt"),
    }
    assert reg.read_text().startswith(script.HEADER)
    assert script.main(["--weights-dir", str(wdir), "--registry", str(reg), "--check"]) == 0
    _tiny_checkpoint(wdir / "gcn-step-tiny.pt", seed=9)  # retrained: the registry is stale
    assert script.main(["--weights-dir", str(wdir), "--registry", str(reg), "--check"]) == 1
    assert "gcn-step-tiny" in capsys.readouterr().err
    shutil.copy(wdir / "gcn-step-tiny.pt", wdir / "cnn" / "gcn-step-tiny.pt")
    with pytest.raises(SystemExit, match="two checkpoints are named 'gcn-step-tiny'"):
        script.main(["--weights-dir", str(wdir), "--registry", str(reg)])


def test_script_header_matches_shipped_registry():
    assert weights.registry_file().read_text().startswith(script.HEADER)


def test_weights_errors_are_solver_errors():
    assert issubclass(weights.UnknownWeightsError, SolverError)
    assert str(weights.UnknownWeightsError("a 'b' c")) == "a 'b' c"
