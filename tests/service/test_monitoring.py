"""The Prometheus set-up in service/monitoring: a valid scrape config, alert rules that fire when they should
(promtool's own rule tests), and a compose service that mounts them."""

from __future__ import annotations

import yaml

from service.settings import Settings
from tests.support.promtool import ROOT, promtool

MONITORING = ROOT / "service" / "monitoring"
DEFAULT_PORT = Settings.model_fields["worker_metrics_port"].default  # the tests themselves set the variable to 0


def test_the_scrape_config_and_its_alert_rules_are_valid() -> None:
    checked = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "10 rules found" in checked.stdout


def test_the_alert_rules_fire_on_the_series_they_are_meant_for() -> None:
    tested = promtool("test", "rules", str(MONITORING / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_compose_runs_prometheus_on_demand_scraping_the_web_and_every_worker() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    prometheus = compose["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    for volume in prometheus["volumes"]:
        source = volume.split(":")[0]
        assert (ROOT / source).is_file(), source
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["jobs-web"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["jobs-workers"]["dns_sd_configs"][0]["port"] == DEFAULT_PORT
    assert compose["services"]["worker"]["expose"] == [str(DEFAULT_PORT)]
