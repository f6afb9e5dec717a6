#!/usr/bin/env python3
"""Prometheus pieces of scripts/stack-check.sh.

    prom.py config SHIPPED OUT TARGET     shipped prometheus.yml, scrape target replaced
    prom.py rules SHIPPED OUT FOR         alert rules with every `for:` set to FOR
    prom.py panels URL DASHBOARD DATASOURCES
                                          every panel query must return a series
    prom.py alert URL STATE TIMEOUT NAME… wait until each alert is in STATE
                                          (pending, firing, or inactive = resolved)

Only the standard library and PyYAML (Debian's python3-yaml).
"""
import copy
import glob
import json
import re
import sys
import time
import urllib.parse
import urllib.request

import yaml


def die(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def api(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", body))
    return body["data"]


def rewrite_config(shipped, out, target):
    with open(shipped) as f:
        config = yaml.safe_load(f)
    rewritten = copy.deepcopy(config)
    jobs = rewritten["scrape_configs"]
    if len(jobs) != 1 or len(jobs[0]["static_configs"]) != 1:
        die(f"{shipped}: expected one job with one static target list")
    jobs[0]["static_configs"][0]["targets"] = [target]
    with open(out, "w") as f:
        yaml.safe_dump(rewritten, f, sort_keys=False)


def shorten_rules(shipped, out, hold):
    with open(shipped) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    with open(out, "w") as f:
        yaml.safe_dump(rules, f, sort_keys=False)


def grafana_duration(seconds):
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_duration(text):
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        die(f"cannot read the duration {text!r}")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panels_of(panel)  # panels inside collapsed rows


def check_panels(base, dashboards, datasources):
    """Evaluates each panel query the way a dashboard load would fill it in."""
    scrape = 15
    for path in glob.glob(f"{datasources}/*.y*ml"):
        with open(path) as f:
            for source in yaml.safe_load(f).get("datasources", []):
                interval = source.get("jsonData", {}).get("timeInterval")
                if source.get("type") == "prometheus" and interval:
                    scrape = parse_duration(interval)
    evaluated, problems = 0, []
    files = sorted(glob.glob(dashboards))
    if not files:
        die(f"no dashboard matches {dashboards}")
    for path in files:
        with open(path) as f:
            dashboard = json.load(f)
        span = dashboard.get("time", {}).get("from", "now-6h")
        range_seconds = parse_duration(span.removeprefix("now-"))
        # Grafana: $__rate_interval = max($__interval + scrape interval,
        # 4 × scrape interval); $__interval stays below the scrape interval
        # for dashboards of a few hours on a normal screen.
        values = {
            "__rate_interval": grafana_duration(4 * scrape),
            "__range": grafana_duration(range_seconds),
        }
        for variable in dashboard.get("templating", {}).get("list", []):
            name = variable["name"]
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query or "")
            if not match:
                die(f"{path}: variable ${name} is not a label_values() query")
            selector = substitute(match[1], values)
            found = api(base, f"/api/v1/label/{match[2]}/values", **{"match[]": selector})
            if not found:
                problems.append(f"variable ${name}: {query} lists no values")
            # The dashboard opens on "All" (allValue), as saved.
            values[name] = variable.get("allValue") or "|".join(map(re.escape, found))
        for panel in panels_of(dashboard):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                promql = substitute(expr, values)
                evaluated += 1
                try:
                    result = api(base, "/api/v1/query", query=promql)["result"]
                except Exception as error:  # noqa: BLE001 - report every panel
                    problems.append(f"panel {panel.get('title')!r}: {promql}: {error}")
                    continue
                if not result:
                    problems.append(f"panel {panel.get('title')!r}: no series for {promql}")
    if problems:
        die("\n".join(problems))
    print(evaluated)


def substitute(expr, values):
    # Longest names first, so $__range does not eat $__range_ms and the like.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def wait_alerts(base, state, timeout, names):
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        alerts = api(base, "/api/v1/alerts")["alerts"]
        states = {name: "inactive" for name in names}
        for alert in alerts:
            name = alert["labels"].get("alertname")
            if name in states:
                states[name] = alert["state"]
        if all(s == state for s in states.values()):
            print(round(time.monotonic() - started))
            return
        if time.monotonic() > deadline:
            die(f"after {timeout}s: {states}, wanted all {state}")
        time.sleep(1)


def main(args):
    match args:
        case ["config", shipped, out, target]:
            rewrite_config(shipped, out, target)
        case ["rules", shipped, out, hold]:
            shorten_rules(shipped, out, hold)
        case ["panels", base, dashboards, datasources]:
            check_panels(base, dashboards, datasources)
        case ["alert", base, state, timeout, *names] if names:
            wait_alerts(base, state, int(timeout), names)
        case _:
            die(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
