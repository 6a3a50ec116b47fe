"""The routing file as the shell reads it (DUNWELL_ROUTING_FILE), and its CLI check."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dunwell.cli import app
from dunwell.domain.routing import ProviderSettings, RoutingError
from dunwell.providers.routing_file import load_routing

pytestmark = pytest.mark.unit

GOOD = """
tenants:
  acme:
    providers:
      stripe: {retries_itself: true, takeover_after_provider: true}
    routes:
      - provider: stripe
      - {provider: adyen, brands: [visa], credentials: [network_token]}
"""


def test_a_good_file_loads_per_tenant(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD)
    found = load_routing(path)
    assert list(found) == ["acme"]
    assert found["acme"].settings("stripe") == ProviderSettings("stripe", True, True)
    assert [r.provider for r in found["acme"].routes] == ["stripe", "adyen"]
    assert load_routing(None) == {}


def test_a_bad_file_names_the_file_and_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("tenants:\n  acme:\n    routes:\n      - {provider: adyen, regions: DE}\n")
    with pytest.raises(RoutingError) as caught:
        load_routing(path)
    assert caught.value.problems == [f"{path}: tenants.acme.routes[0].regions: a list of names"]
    with pytest.raises(RoutingError):
        load_routing(tmp_path / "missing.yaml")


def test_the_cli_validates_a_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text("tenants: {acme: {routes: [{provider: google}]}}\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["routing", "validate", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "acme: routes stripe, adyen; retries itself: stripe" in ok.output
    refused = runner.invoke(app, ["routing", "validate", str(bad)])
    assert refused.exit_code == 1
