//! `--compare LABEL=BINARY[,NAME=VALUE...] ...`: relay builds (or one build
//! under other allocator or runtime settings) side by side in one sitting.
//! Each round measures the ceiling first and then every configuration, so
//! each ratio divides by a ceiling taken minutes before it; rounds repeat
//! in the same order, and a drift of the shared machine shows as spread
//! between rounds rather than as a difference between builds.

use kobra_relay::config::QueueType;

use super::{RunShape, Target, broker_ceiling, ms, percentile, relay_run_with};

/// One configuration: a label, and the relay's extra environment (the
/// binary travels as `KOBRA_BENCH_RELAY`).
struct Configuration {
    label: String,
    env: Vec<(String, String)>,
}

/// Parses `LABEL=BINARY[,NAME=VALUE...]`.
fn parse(spec: &str) -> Configuration {
    let (label, rest) = spec
        .split_once('=')
        .unwrap_or_else(|| panic!("--compare {spec}: expected LABEL=BINARY[,NAME=VALUE...]"));
    let mut parts = rest.split(',');
    let binary = parts.next().unwrap_or_default();
    assert!(
        std::path::Path::new(binary).is_file(),
        "--compare {spec}: {binary} is not a file"
    );
    let mut env = vec![("KOBRA_BENCH_RELAY".to_owned(), binary.to_owned())];
    for pair in parts {
        let (name, value) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("--compare {spec}: {pair} is not NAME=VALUE"));
        env.push((name.to_owned(), value.to_owned()));
    }
    Configuration {
        label: label.to_owned(),
        env,
    }
}

/// What the summary averages per configuration.
#[derive(Clone, Copy, Default)]
struct Figures {
    relay_us: f64,
    ratio: f64,
    p99_ms: f64,
    rss_mib: f64,
}

pub(super) async fn run(
    target: &Target,
    specs: &[String],
    rounds: usize,
    visits: usize,
    concurrency: usize,
) {
    let configurations: Vec<Configuration> = specs.iter().map(|s| parse(s)).collect();
    let shape = RunShape {
        visits,
        concurrency,
        size: None,
        rate: None,
    };
    println!("# Relay builds compared");
    println!();
    println!(
        "{visits} visits per run, concurrency {concurrency}, quorum queues, spool mode, archive on; {rounds} rounds, each the ceiling then every configuration."
    );
    println!();
    println!(
        "| relay | round | ceiling visits/s | ceiling broker µs / visit | confirmed visits/s | relay ÷ ceiling | relay µs / visit | broker µs / visit | ack p50 ms | p99 ms | peak RSS MiB | delivered |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut by_config = vec![Vec::<Figures>::new(); configurations.len()];
    for round in 1..=rounds {
        let ceiling = broker_ceiling(target, QueueType::Quorum, visits).await;
        for (i, configuration) in configurations.iter().enumerate() {
            let run = relay_run_with(
                target,
                QueueType::Quorum,
                "spool",
                shape,
                &configuration.env,
            )
            .await;
            let accepted = run.load.accepted as f64;
            let latencies = &run.load.latencies;
            let figures = Figures {
                relay_us: run.relay_cpu / accepted * 1e6,
                ratio: run.confirmed_visits_per_s / ceiling.visits_per_s,
                p99_ms: percentile(latencies, 0.99).as_secs_f64() * 1e3,
                rss_mib: run.rss_mib,
            };
            println!(
                "| {} | {round} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} | {} | {} | {:.1} | {}/{} of {} |",
                configuration.label,
                ceiling.visits_per_s,
                ceiling.cpu.broker / visits as f64 * 1e6,
                run.confirmed_visits_per_s,
                figures.ratio,
                figures.relay_us,
                run.cpu.broker / accepted * 1e6,
                ms(percentile(latencies, 0.5)),
                ms(percentile(latencies, 0.99)),
                figures.rss_mib,
                run.delivered.0,
                run.delivered.1,
                run.load.accepted,
            );
            by_config[i].push(figures);
        }
    }
    println!();
    println!(
        "| relay | mean relay µs / visit | mean relay ÷ ceiling | mean ack p99 ms | mean peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (configuration, runs) in configurations.iter().zip(&by_config) {
        let mean =
            |pick: fn(&Figures) -> f64| runs.iter().map(pick).sum::<f64>() / runs.len() as f64;
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.1} |",
            configuration.label,
            mean(|f| f.relay_us),
            mean(|f| f.ratio),
            mean(|f| f.p99_ms),
            mean(|f| f.rss_mib),
        );
    }
}
