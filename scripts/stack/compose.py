#!/usr/bin/env python3
"""Cross-checks deploy/docker-compose.yml against the built image.

    compose.py RESOLVED_COMPOSE IMAGE_CONFIG REPO

RESOLVED_COMPOSE is `docker-compose config` output (the compose file as
Compose itself reads it: relative paths resolved, defaults filled in);
IMAGE_CONFIG the image's Docker config as buildah stores it. Prints one
summary line, or every mismatch and exits 1.
"""
import json
import os
import sys
import urllib.parse

import yaml

problems = []


def expect(condition, message):
    if not condition:
        problems.append(message)


def mounts(service):
    """(source, target) of each volume entry, short or long syntax."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield entry.get("source"), entry["target"]
        else:
            parts = entry.split(":")
            yield parts[0], parts[1]


def mount_for(service, target):
    return next((source for source, t in mounts(service) if t == target), None)


def host_path(service, path):
    """The host file behind a container path, through a bind mount."""
    for source, target in mounts(service):
        if source and os.path.isabs(source) and (path == target or path.startswith(target + "/")):
            return source + path[len(target):]
    return None


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def main(resolved, image_config, repo):
    with open(resolved) as f:
        services = yaml.safe_load(f)["services"]
    with open(image_config) as f:
        image = json.load(f)
    env = dict(item.split("=", 1) for item in image["Env"])

    relay_name, relay = next(
        ((n, s) for n, s in services.items() if s.get("build", {}).get("dockerfile") == "deploy/docker/Dockerfile"),
        (None, None),
    )
    if relay is None:
        sys.exit("no service builds deploy/docker/Dockerfile")
    relay_env = {**env, **{k: str(v) for k, v in relay.get("environment", {}).items()}}

    # The relay service and the image.
    expect(relay.get("user") in (None, image["User"]), f"{relay_name}: user {relay.get('user')} is not the image's {image['User']}")
    health = relay.get("healthcheck", {}).get("test")
    expect(health == image["Healthcheck"]["Test"], f"{relay_name}: healthcheck {health} is not the image's {image['Healthcheck']['Test']}")
    spool = relay_env["KOBRA_RELAY_SPOOL_DIR"]
    expect(spool in (image.get("Volumes") or {}), f"image: SPOOL_DIR {spool} is not a VOLUME")
    expect(mount_for(relay, spool) is not None, f"{relay_name}: no volume mounted at the spool directory {spool}")
    listen = {port_of(relay_env["KOBRA_RELAY_LISTEN"]), port_of(relay_env["KOBRA_RELAY_ADMIN_LISTEN"])}
    exposed = {int(p.split("/")[0]) for p in image.get("ExposedPorts", {})}
    published = {int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1]) for p in relay.get("ports", [])}
    expect(listen == exposed, f"image: EXPOSE {sorted(exposed)} is not the listeners {sorted(listen)}")
    expect(published == listen, f"{relay_name}: publishes container ports {sorted(published)}, the relay listens on {sorted(listen)}")
    probe_port = urllib.parse.urlsplit(image["Healthcheck"]["Test"][-1]).port
    expect(probe_port == port_of(relay_env["KOBRA_RELAY_ADMIN_LISTEN"]), f"image: HEALTHCHECK probes port {probe_port}, not ADMIN_LISTEN")

    # The relay and the broker service.
    broker_name = next((n for n, s in services.items() if "rabbitmq" in str(s.get("image", ""))), None)
    amqp = urllib.parse.urlsplit(relay_env.get("KOBRA_RELAY_AMQP_URL", ""))
    expect(amqp.hostname == broker_name, f"{relay_name}: AMQP_URL host {amqp.hostname} is not the broker service {broker_name}")
    if broker_name:
        broker_env = services[broker_name].get("environment", {})
        expect(
            (amqp.username, amqp.password) == (broker_env.get("RABBITMQ_DEFAULT_USER"), broker_env.get("RABBITMQ_DEFAULT_PASS")),
            f"{relay_name}: AMQP_URL user is not the broker's RABBITMQ_DEFAULT_USER/PASS",
        )

    # Prometheus: its config and rules are the shipped files, and it scrapes
    # the relay service's admin port.
    prometheus = services["prometheus"]
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if a.startswith("--config.file="))
    config_host = host_path(prometheus, config_path)
    expect(config_host == os.path.join(repo, "deploy/prometheus/prometheus.yml"), f"prometheus: {config_path} is not deploy/prometheus/prometheus.yml")
    with open(os.path.join(repo, "deploy/prometheus/prometheus.yml")) as f:
        config = yaml.safe_load(f)
    for rule_file in config.get("rule_files", []):
        in_container = os.path.join(os.path.dirname(config_path), rule_file)
        expect(host_path(prometheus, in_container) == os.path.join(repo, "deploy/prometheus", rule_file), f"prometheus: rule file {in_container} is not mounted from deploy/prometheus/{rule_file}")
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    want = f"{relay_name}:{port_of(relay_env['KOBRA_RELAY_ADMIN_LISTEN'])}"
    expect(targets == [want], f"prometheus.yml: targets {targets}, the relay's admin listener is {want}")

    # Grafana: provisioning mounted where Grafana reads it, the datasource
    # the dashboard names, the dashboards where the provider looks.
    grafana = services["grafana"]
    datasources_dir = host_path(grafana, "/etc/grafana/provisioning/datasources")
    providers_dir = host_path(grafana, "/etc/grafana/provisioning/dashboards")
    expect(datasources_dir is not None and providers_dir is not None, "grafana: provisioning directories are not mounted")
    uids, dashboard_uids, providers = {}, set(), 0
    if datasources_dir:
        for name in os.listdir(datasources_dir):
            with open(os.path.join(datasources_dir, name)) as f:
                for source in yaml.safe_load(f).get("datasources", []):
                    uids[source["uid"]] = source
    dashboards_dir = os.path.join(repo, "grafana/dashboards")
    for name in os.listdir(dashboards_dir):
        with open(os.path.join(dashboards_dir, name)) as f:
            text = f.read()

        def walk(node):
            if isinstance(node, dict):
                if isinstance(node.get("datasource"), dict):
                    dashboard_uids.add(node["datasource"].get("uid"))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(text))
    expect(dashboard_uids and dashboard_uids <= set(uids), f"dashboards use datasource uids {sorted(dashboard_uids)}, provisioned: {sorted(uids)}")
    for uid in dashboard_uids & set(uids):
        url = urllib.parse.urlsplit(uids[uid]["url"])
        expect(url.hostname == "prometheus" and url.port == 9090, f"datasource {uid}: url {uids[uid]['url']} is not the prometheus service")
    if providers_dir:
        for name in os.listdir(providers_dir):
            with open(os.path.join(providers_dir, name)) as f:
                for provider in yaml.safe_load(f).get("providers", []):
                    path = provider["options"]["path"]
                    expect(host_path(grafana, path) == dashboards_dir, f"grafana: provider {provider['name']} reads {path}, which is not grafana/dashboards")
                    providers += 1
    home = grafana.get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        expect(host_path(grafana, home) and os.path.isfile(host_path(grafana, home)), f"grafana: home dashboard {home} is not a mounted file")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"{len(services)} services; relay user, spool volume, ports, healthcheck match the image; "
          f"Prometheus scrapes {want}; Grafana datasource uid {','.join(sorted(dashboard_uids))}, {providers} dashboard provider(s)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
