"""Safety: localhost by default, a read-only dashboard, no unsafe unpickling, every dependency pinned."""
import hashlib
import re
import sys

from experiments.tracking import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests"))
from test_dashboard_app import go, open_app  # noqa: E402
from test_dashboard_browser import start_server  # noqa: E402


def listening_addresses(port: int) -> set[str]:
    """Local addresses in LISTEN state on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_dashboard_listens_on_localhost_only_by_default(dashboard_store):
    client, _ = dashboard_store
    with start_server(client.tracking_uri) as url:
        port = int(url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
    assert 'address="${DASHBOARD_ADDRESS:-127.0.0.1}"' in (REPO_ROOT / "scripts" / "start").read_text()


def store_fingerprint(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"}


def test_browsing_every_page_leaves_the_store_byte_for_byte_unchanged(dashboard_store):
    client, ids = dashboard_store
    folder = REPO_ROOT.__class__(client.tracking_uri.removeprefix("sqlite:///")).parent
    before = store_fingerprint(folder)
    at = open_app(selection=[ids["conv"], ids["lenet5"], ids["failed"], ids["foreign"]])
    for page in ("runs", "compare", "overfitting", "detail"):
        at = go(at, page)
        assert not at.exception
    at.session_state["gallery_cell"] = (4, 9)
    at.run()
    assert store_fingerprint(folder) == before


def test_dashboard_never_loads_a_model_or_unpickles():
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "dashboard").rglob("*.py"))
    for forbidden in ("torch.load", "pickle", "load_model", "joblib"):
        assert forbidden not in source


def test_checkpoints_are_read_with_weights_only():
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "experiments").rglob("*.py"))
    calls = re.findall(r"torch\.load\([^)]*\)", source)
    assert calls and all("weights_only=True" in call for call in calls)


def test_every_requirement_is_pinned_to_an_exact_version():
    lines = [line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    unpinned = [line for line in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line)]
    assert not unpinned
