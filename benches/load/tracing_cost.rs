//! `--tracing`: what span export costs, measured in one sitting. The same
//! relay run (quorum queues, spool mode) with export off, on with a
//! collector that takes every span, and on with the collector down (and,
//! with `KOBRA_BENCH_BASELINE=<binary>`, a build from before tracing), twice
//! in alternation so a drift of the shared machine shows as spread rather
//! than as a difference.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use kobra_relay::config::QueueType;

use super::{RelayRun, RunShape, Target, free_addr, ms, percentile, relay_run_with};

/// A collector that takes every export and keeps nothing: its CPU is the
/// benchmark's, not the relay's.
async fn start_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A counter's value in a scrape (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn relay_us(run: &RelayRun) -> f64 {
    run.relay_cpu / run.load.accepted as f64 * 1e6
}

pub(super) async fn run(target: &Target, visits: usize, concurrency: usize) {
    let sink = start_sink().await;
    let dead = free_addr();
    let endpoint = |addr: SocketAddr| {
        vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://{addr}"),
        )]
    };
    let mut configurations: Vec<(&str, Vec<(String, String)>)> = vec![
        ("tracing off", Vec::new()),
        ("tracing on, collector up", endpoint(sink)),
        ("tracing on, collector down", endpoint(dead)),
    ];
    // KOBRA_BENCH_BASELINE: a build from before tracing, to show what
    // "off" costs against it.
    if let Ok(baseline) = std::env::var("KOBRA_BENCH_BASELINE") {
        configurations.push((
            "baseline build",
            vec![("KOBRA_BENCH_RELAY".to_owned(), baseline)],
        ));
    }
    let shape = RunShape {
        visits,
        concurrency,
        size: None,
        rate: None,
    };
    println!("# Tracing cost");
    println!();
    println!(
        "{visits} visits per run, concurrency {concurrency}, quorum queues, spool mode; each configuration twice, in alternation."
    );
    println!();
    println!(
        "| relay | round | accepted req/s | confirmed visits/s | ack p50 ms | p99 ms | relay µs / visit | spans exported | spans dropped |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut by_config: Vec<Vec<(f64, f64, Duration)>> = vec![Vec::new(); configurations.len()];
    for round in 1..=2 {
        for (i, (name, env)) in configurations.iter().enumerate() {
            let run = relay_run_with(target, QueueType::Quorum, "spool", shape, env).await;
            let l = &run.load.latencies;
            let dropped = counter(
                &run.metrics,
                "kobra_relay_trace_spans_dropped_total{reason=\"queue_full\"}",
            ) + counter(
                &run.metrics,
                "kobra_relay_trace_spans_dropped_total{reason=\"export_failed\"}",
            );
            println!(
                "| {name} | {round} | {:.0} | {:.0} | {} | {} | {:.1} | {:.0} | {dropped:.0} |",
                run.accepted_per_s,
                run.confirmed_visits_per_s,
                ms(percentile(l, 0.5)),
                ms(percentile(l, 0.99)),
                relay_us(&run),
                counter(&run.metrics, "kobra_relay_trace_spans_exported_total"),
            );
            by_config[i].push((relay_us(&run), run.accepted_per_s, percentile(l, 0.99)));
        }
    }
    let mean = |runs: &[(f64, f64, Duration)], pick: fn(&(f64, f64, Duration)) -> f64| {
        runs.iter().map(pick).sum::<f64>() / runs.len() as f64
    };
    let off_us = mean(&by_config[0], |r| r.0);
    let off_rate = mean(&by_config[0], |r| r.1);
    let off_p99 = mean(&by_config[0], |r| r.2.as_secs_f64());
    println!();
    for (i, (name, _)) in configurations.iter().enumerate().skip(1) {
        println!(
            "{name}: relay {:+.1} µs per visit over off, accepted rate ÷ off {:.2}, ack p99 ÷ off {:.2}.",
            mean(&by_config[i], |r| r.0) - off_us,
            mean(&by_config[i], |r| r.1) / off_rate,
            mean(&by_config[i], |r| r.2.as_secs_f64()) / off_p99,
        );
    }
    // The spans of the last runs are exported in the background; give the
    // sink's connections a moment to close before the process exits.
    tokio::time::sleep(Duration::from_millis(100)).await;
}
