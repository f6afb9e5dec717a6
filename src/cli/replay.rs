//! `kobra-relay replay`: publish archived visits again.
//!
//! The archive stream (`<prefix>.visits.archive`) keeps every raw visit the
//! relay published. Replay reads it from a start point, rebuilds each
//! visit's envelope from the message (body, receipt id, receipt time, key
//! label), runs the body through the normalizer of this build and publishes
//! what the relay would publish today, with confirms. Each message keeps its
//! `message_id` and gains `x-replayed: true`, so consumers de-duplicate a
//! replay exactly as they de-duplicate redeliveries.
//!
//! Reading ends at the first visit received after `--until`, or when the
//! stream has nothing more to give (its end, for now).

use std::{
    collections::{HashSet, VecDeque},
    io::{IsTerminal, Write as _},
    process::ExitCode,
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use jiff::Timestamp;
use lapin::{
    BasicProperties, Channel, Connection, PublisherConfirm,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
};

use super::{FAILED, USAGE, fail};
use crate::config::Settings;
use crate::publisher::{PublishError, link, message, topology::Topology};
use crate::visit::{Envelope, Kind, Product, Receipt, inspect};

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Start with the visits received at or after this time (RFC 3339, e.g.
    /// 2026-11-01T00:00:00Z), or `first` for the oldest the archive keeps.
    #[arg(
        long,
        value_name = "TIME|first",
        required_unless_present = "offset",
        conflicts_with = "offset"
    )]
    pub since: Option<String>,
    /// Start at this archive offset (an interrupted replay prints where to
    /// go on).
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
    /// Stop at the first visit received after this time (RFC 3339; default:
    /// when the replay starts).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this product: a slug (`debt_collection`, `product_7`, `unknown`)
    /// or an id (`1`).
    #[arg(long)]
    pub product: Option<String>,
    /// Only the visit with this id (repeat for several).
    #[arg(long = "visit-id", value_name = "ID")]
    pub visit_ids: Vec<String>,
    /// Publish the raw bodies to the raw exchange instead of normalized
    /// documents to the normalized one.
    #[arg(long)]
    pub raw: bool,
    /// Publish to this queue only (through the default exchange), for one
    /// consumer, instead of to the exchange every consumer is bound to.
    #[arg(long, value_name = "QUEUE")]
    pub to_queue: Option<String>,
    /// Read and count what would be published; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop once the archive has given nothing for this long: its end, for
    /// now (raise it for a broker far away).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::config::parse_duration)]
    pub idle_timeout: Duration,
}

/// Where reading the stream starts: the `x-stream-offset` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    First,
    Offset(u64),
    /// The stream starts from the chunk appended at that second, which may
    /// hold somewhat older visits: those are passed over.
    Time(Timestamp),
}

impl Start {
    fn argument(self) -> AMQPValue {
        match self {
            Self::First => AMQPValue::LongString("first".into()),
            Self::Offset(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
            Self::Time(at) => AMQPValue::Timestamp(u64::try_from(at.as_second()).unwrap_or(0)),
        }
    }
}

/// What to replay and where to, checked before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    start: Start,
    /// Visits received before this are passed over.
    since: Option<Timestamp>,
    until: Timestamp,
    product: Option<Product>,
    visit_ids: HashSet<String>,
    raw: bool,
    to_queue: Option<String>,
    dry_run: bool,
    idle_timeout: Duration,
}

fn plan(args: &ReplayArgs, now: Timestamp) -> Result<Plan, String> {
    let time = |flag: &str, text: &str| {
        text.parse::<Timestamp>().map_err(|e| {
            format!("{flag} {text:?} is not an RFC 3339 time like 2026-11-01T00:00:00Z: {e}")
        })
    };
    let (start, since) = match (args.offset, args.since.as_deref()) {
        (Some(n), _) => (Start::Offset(n), None),
        (None, Some("first")) => (Start::First, None),
        (None, Some(text)) => {
            let at = time("--since", text)?;
            (Start::Time(at), Some(at))
        }
        (None, None) => {
            return Err("say where to start: --since TIME, --since first or --offset N".into());
        }
    };
    let until = match &args.until {
        Some(text) => time("--until", text)?,
        None => now,
    };
    if since.is_some_and(|since| since > until) {
        return Err(format!("--since is after --until ({until})"));
    }
    let product = match &args.product {
        Some(text) => Some(Product::parse(text).ok_or_else(|| {
            format!("--product {text:?} is not a product: use a slug (debt_collection, product_7, unknown) or an id (1)")
        })?),
        None => None,
    };
    Ok(Plan {
        start,
        since,
        until,
        product,
        visit_ids: args.visit_ids.iter().cloned().collect(),
        raw: args.raw,
        to_queue: args.to_queue.clone(),
        dry_run: args.dry_run,
        idle_timeout: args.idle_timeout,
    })
}

/// One archived message, read back.
#[derive(Debug)]
enum Archived {
    /// A raw visit as the relay published it.
    Visit(Envelope),
    /// Not for replay: a normalized copy (other products' visits reach the
    /// archive through the unrouted fanout with both copies) or the raw copy
    /// an earlier `replay --raw` appended.
    PassedOver,
    /// Cannot be replayed, and why.
    Corrupt(String),
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

fn text_header(properties: &BasicProperties, name: &str) -> Option<String> {
    match header(properties, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The receipt time: `x-received-at`, else the `timestamp` property.
fn received_at(properties: &BasicProperties) -> Option<Timestamp> {
    text_header(properties, "x-received-at")
        .and_then(|text| text.parse().ok())
        .or_else(|| {
            properties
                .timestamp()
                .and_then(|s| Timestamp::from_second(i64::try_from(s).ok()?).ok())
        })
}

fn stream_offset(properties: &BasicProperties) -> Option<u64> {
    match header(properties, "x-stream-offset")? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn read_archived(properties: &BasicProperties, body: &[u8]) -> Archived {
    if header(properties, "x-schema-version").is_some()
        || header(properties, "x-replayed").is_some()
    {
        return Archived::PassedOver;
    }
    let Some(id) = properties
        .correlation_id()
        .as_ref()
        .and_then(|id| id.as_str().parse().ok())
    else {
        return Archived::Corrupt(
            "no receipt id (correlation_id): not published by the relay".into(),
        );
    };
    let Some(received_at) = received_at(properties) else {
        return Archived::Corrupt("no receipt time (x-received-at)".into());
    };
    let body = Bytes::copy_from_slice(body);
    let kind = inspect(&body).kind;
    if let Kind::Rejected(reason) = kind {
        return Archived::Corrupt(format!(
            "the body is not a JSON object ({})",
            reason.as_str()
        ));
    }
    let receipt = Receipt {
        id,
        received_at,
        key_label: text_header(properties, "x-api-key-label").unwrap_or_default(),
    };
    let envelope = Envelope::with_kind(receipt, body, kind);
    let recorded = properties.message_id().as_ref().map(|id| id.to_string());
    if recorded.as_deref() != Some(envelope.message_id().as_str()) {
        return Archived::Corrupt("the body does not match its message_id (SHA-256)".into());
    }
    Archived::Visit(envelope)
}

fn matches(plan: &Plan, envelope: &Envelope) -> bool {
    if plan.product.is_none() && plan.visit_ids.is_empty() {
        return true;
    }
    let inspection = inspect(&envelope.body);
    plan.product.is_none_or(|p| p == inspection.product)
        && (plan.visit_ids.is_empty()
            || inspection
                .visit_id
                .is_some_and(|id| plan.visit_ids.contains(&id)))
}

/// The message the relay would publish for `envelope` today, marked as a
/// replay and addressed as `plan` says. Also returns how many normalization
/// warnings the visit has.
fn republish(envelope: &Envelope, topology: &Topology, plan: &Plan) -> (message::Outgoing, usize) {
    let prepared = message::prepare(envelope, topology);
    let wanted = if plan.raw {
        topology.raw_exchange()
    } else {
        topology.visits_exchange()
    };
    let mut outgoing = prepared
        .messages
        .into_iter()
        .find(|m| m.exchange == wanted)
        .expect("a visit envelope prepares a raw and a normalized message");
    let mut headers = outgoing.properties.headers().clone().unwrap_or_default();
    headers.insert("x-replayed".into(), AMQPValue::Boolean(true));
    outgoing.properties = outgoing.properties.with_headers(headers);
    if let Some(queue) = &plan.to_queue {
        outgoing.exchange = String::new();
        outgoing.routing_key = queue.clone();
    }
    (outgoing, prepared.warnings.len())
}

/// Counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    /// Raw visits read inside the window.
    read: u64,
    matched: u64,
    published: u64,
    skipped: u64,
    warnings: u64,
    /// Where the next replay goes on: after the last message handled.
    next_offset: Option<u64>,
}

/// How a replay ended.
enum End {
    /// Past `--until`, or the stream's end.
    Done,
    Interrupted,
    Failed(String),
}

/// The shell's code for a command stopped by Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;
/// Publishes awaited in order, a window at a time.
const CONFIRM_WINDOW: usize = 256;

/// Replays the archive and prints a summary; Ctrl-C stops once the
/// messages already sent are confirmed.
pub fn run(args: &ReplayArgs, settings: &Settings) -> ExitCode {
    let topology = Topology::from_settings(&settings.topology);
    let plan = match plan(args, Timestamp::now()) {
        Ok(plan) => plan,
        Err(message) => return fail("replay", USAGE, message),
    };
    let runtime = match super::runtime("replay") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let ca = settings.broker.ca_pem();
        let (connection, shown) =
            match link::open_first(&settings.broker.amqp_urls, ca, "kobra-relay replay").await {
                Ok(opened) => opened,
                Err(failures) => return fail("replay", FAILED, failures),
            };
        let mut tally = Tally::default();
        let end = match Replay::open(&connection, &topology, &plan).await {
            Ok(replay) => {
                eprintln!("replaying {} from {shown}", replay.describe());
                replay.run(&mut tally, tokio::signal::ctrl_c()).await
            }
            Err(message) => End::Failed(message),
        };
        let _ = connection.close(200, "replay done".into()).await;
        report(&plan, &tally, &end)
    })
}

/// An open replay: a stream consumer on the archive and, unless it is a dry
/// run, a channel in confirm mode to publish on.
struct Replay<'a> {
    topology: &'a Topology,
    plan: &'a Plan,
    consumer: lapin::Consumer,
    publisher: Option<Channel>,
    progress: Progress,
}

impl<'a> Replay<'a> {
    async fn open(
        connection: &Connection,
        topology: &'a Topology,
        plan: &'a Plan,
    ) -> Result<Self, String> {
        let archive = topology.archive_queue();
        let reader = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        link::check_queue(&reader, &archive)
            .await
            .map_err(|e| {
                format!("no archive {archive}: {e} (is TOPOLOGY_PREFIX right, and does a relay with ARCHIVE=true declare its queues?)")
            })?;
        // A stream consumer needs a prefetch and acknowledgements (they
        // only grant credit; nothing is removed).
        reader
            .basic_qos(500, BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-stream-offset".into(), plan.start.argument());
        let consumer = reader
            .basic_consume(
                archive.as_str().into(),
                "kobra-relay-replay".into(),
                BasicConsumeOptions::default(),
                arguments,
            )
            .await
            .map_err(|e| format!("cannot read {archive}: {e}"))?;
        let publisher = if plan.dry_run {
            None
        } else {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(queue) = &plan.to_queue {
                link::check_queue(&channel, queue)
                    .await
                    .map_err(|e| format!("--to-queue {queue}: {e}"))?;
            }
            Some(channel)
        };
        Ok(Self {
            topology,
            plan,
            consumer,
            publisher,
            progress: Progress::new(plan, std::io::stderr().is_terminal()),
        })
    }

    fn describe(&self) -> String {
        let plan = self.plan;
        let start = match plan.start {
            Start::First => "the oldest archived visit".to_owned(),
            Start::Offset(n) => format!("offset {n}"),
            Start::Time(at) => at.to_string(),
        };
        let to = match (&plan.to_queue, plan.raw, plan.dry_run) {
            (_, _, true) => "nowhere (dry run)".to_owned(),
            (Some(queue), _, _) => format!("queue {queue}"),
            (None, true, _) => self.topology.raw_exchange(),
            (None, false, _) => self.topology.visits_exchange(),
        };
        format!(
            "{} from {start} to {} into {to}",
            self.topology.archive_queue(),
            plan.until
        )
    }

    /// Reads until the window or the stream ends, `interrupt` resolves or a
    /// publish fails; every publish sent is confirmed before it returns.
    async fn run(mut self, tally: &mut Tally, interrupt: impl Future) -> End {
        let mut pending: VecDeque<(u64, PublisherConfirm)> = VecDeque::new();
        let mut interrupt = std::pin::pin!(interrupt);
        let mut end = End::Done;
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut interrupt => {
                    end = End::Interrupted;
                    break;
                }
                next = tokio::time::timeout(self.plan.idle_timeout, self.consumer.next()) => next,
            };
            let delivery = match next {
                Err(_) => break,
                Ok(None) => {
                    end = End::Failed("the broker closed the archive consumer".into());
                    break;
                }
                Ok(Some(Err(error))) => {
                    end = End::Failed(format!("reading the archive: {error}"));
                    break;
                }
                Ok(Some(Ok(delivery))) => delivery,
            };
            match self.handle(&delivery, tally, &mut pending).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(message) => {
                    end = End::Failed(message);
                    break;
                }
            }
            if let Err(error) = delivery.ack(BasicAckOptions::default()).await {
                end = End::Failed(format!("acknowledging the archive: {error}"));
                break;
            }
            while pending.len() > CONFIRM_WINDOW {
                if let Err(message) = confirm_front(&mut pending, tally).await {
                    return End::Failed(message);
                }
            }
            self.progress.draw(tally, &delivery.properties);
        }
        while !pending.is_empty() {
            if let Err(message) = confirm_front(&mut pending, tally).await {
                end = End::Failed(message);
                break;
            }
        }
        self.progress.clear();
        end
    }

    /// Handles one delivery; `false` once it lies past `--until`.
    async fn handle(
        &mut self,
        delivery: &Delivery,
        tally: &mut Tally,
        pending: &mut VecDeque<(u64, PublisherConfirm)>,
    ) -> Result<bool, String> {
        let offset = stream_offset(&delivery.properties);
        let at = received_at(&delivery.properties);
        if at.is_some_and(|at| at > self.plan.until) {
            tally.next_offset = offset.or(tally.next_offset);
            return Ok(false);
        }
        tally.next_offset = offset.map(|n| n + 1).or(tally.next_offset);
        if at.is_some_and(|at| self.plan.since.is_some_and(|since| at < since)) {
            return Ok(true);
        }
        let envelope = match read_archived(&delivery.properties, &delivery.data) {
            Archived::Visit(envelope) => envelope,
            Archived::PassedOver => return Ok(true),
            Archived::Corrupt(why) => {
                tally.read += 1;
                tally.skipped += 1;
                let at = offset.map_or_else(|| "?".to_owned(), |n| n.to_string());
                eprintln!("kobra-relay replay: warning: offset {at} skipped: {why}");
                return Ok(true);
            }
        };
        tally.read += 1;
        if !matches(self.plan, &envelope) {
            return Ok(true);
        }
        tally.matched += 1;
        let (outgoing, warnings) = republish(&envelope, self.topology, self.plan);
        tally.warnings += warnings as u64;
        let Some(channel) = &self.publisher else {
            return Ok(true);
        };
        let confirm = channel
            .basic_publish(
                outgoing.exchange.as_str().into(),
                outgoing.routing_key.as_str().into(),
                BasicPublishOptions {
                    // A --to-queue that vanished returns the message: a
                    // failure, not a silent drop.
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &outgoing.body,
                outgoing.properties,
            )
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        pending.push_back((offset.unwrap_or_default(), confirm));
        Ok(true)
    }
}

/// Waits for the oldest publish's confirm. On a failure, the replay is to
/// go on from that message.
async fn confirm_front(
    pending: &mut VecDeque<(u64, PublisherConfirm)>,
    tally: &mut Tally,
) -> Result<(), String> {
    let Some((offset, confirm)) = pending.pop_front() else {
        return Ok(());
    };
    let failure = match confirm.await {
        Ok(confirmation) => PublishError::check(confirmation)
            .err()
            .map(|error| format!("offset {offset}: {error}")),
        Err(error) => Some(format!(
            "waiting for the confirm of offset {offset}: {error}"
        )),
    };
    match failure {
        None => {
            tally.published += 1;
            Ok(())
        }
        Some(message) => {
            tally.next_offset = Some(offset);
            Err(message)
        }
    }
}

/// A one-line progress bar on stderr, when it is a terminal: how far the
/// replay has come through its time window.
struct Progress {
    enabled: bool,
    /// Start of the window; the first visit's time when it starts at an offset.
    from: Option<Timestamp>,
    until: Timestamp,
    dry_run: bool,
    drawn: Option<Instant>,
}

impl Progress {
    const WIDTH: usize = 30;
    const EVERY: Duration = Duration::from_millis(100);

    fn new(plan: &Plan, enabled: bool) -> Self {
        Self {
            enabled,
            from: plan.since,
            until: plan.until,
            dry_run: plan.dry_run,
            drawn: None,
        }
    }

    fn draw(&mut self, tally: &Tally, properties: &BasicProperties) {
        if !self.enabled {
            return;
        }
        let Some(at) = received_at(properties) else {
            return;
        };
        let from = *self.from.get_or_insert(at);
        if self
            .drawn
            .is_some_and(|drawn| drawn.elapsed() < Self::EVERY)
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let span = self.until.as_second() - from.as_second();
        let done = if span > 0 {
            ((at.as_second() - from.as_second()) as f64 / span as f64).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (done * Self::WIDTH as f64).round() as usize;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r[{}{}] {:>3}%  {at}  read {}  {} {}  skipped {}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            (done * 100.0).round(),
            tally.read,
            if self.dry_run { "matched" } else { "published" },
            if self.dry_run {
                tally.matched
            } else {
                tally.published
            },
            tally.skipped,
        );
        let _ = stderr.flush();
    }

    fn clear(&self) {
        if self.enabled && self.drawn.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

/// Prints the summary (stdout) and how to go on (stderr); the exit code.
fn report(plan: &Plan, tally: &Tally, end: &End) -> ExitCode {
    let verb = if plan.dry_run {
        "would publish"
    } else {
        "published"
    };
    let count = if plan.dry_run {
        tally.matched
    } else {
        tally.published
    };
    println!(
        "replay: read {}, matched {}, {verb} {count}, skipped {}, warnings {}",
        tally.read, tally.matched, tally.skipped, tally.warnings
    );
    let resume = tally
        .next_offset
        .map(|n| format!("--offset {n}"))
        .unwrap_or_else(|| "the same start".to_owned());
    match end {
        End::Done => {
            if let Some(n) = tally.next_offset {
                eprintln!("kobra-relay replay: done; later visits start at --offset {n}");
            }
            ExitCode::SUCCESS
        }
        End::Interrupted => {
            eprintln!("kobra-relay replay: interrupted; go on with {resume}");
            ExitCode::from(INTERRUPTED)
        }
        End::Failed(message) => fail(
            "replay",
            FAILED,
            format!("{message}; go on with {resume} once fixed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueType;

    fn args(since: Option<&str>, offset: Option<u64>) -> ReplayArgs {
        ReplayArgs {
            since: since.map(str::to_owned),
            offset,
            until: None,
            product: None,
            visit_ids: Vec::new(),
            raw: false,
            to_queue: None,
            dry_run: false,
            idle_timeout: Duration::from_secs(2),
        }
    }

    fn now() -> Timestamp {
        "2026-12-01T12:00:00Z".parse().expect("time")
    }

    #[test]
    fn the_start_is_a_time_the_first_visit_or_an_offset() {
        let p = plan(&args(Some("2026-11-01T00:00:00Z"), None), now()).expect("plan");
        let since: Timestamp = "2026-11-01T00:00:00Z".parse().expect("time");
        assert_eq!(
            (p.start, p.since, p.until),
            (Start::Time(since), Some(since), now())
        );
        assert_eq!(
            Start::Time(since).argument(),
            AMQPValue::Timestamp(1_793_491_200)
        );
        let p = plan(&args(Some("first"), None), now()).expect("plan");
        assert_eq!((p.start, p.since), (Start::First, None));
        assert_eq!(p.start.argument(), AMQPValue::LongString("first".into()));
        let p = plan(&args(None, Some(42)), now()).expect("plan");
        assert_eq!(p.start.argument(), AMQPValue::LongLongInt(42));
    }

    #[test]
    fn bad_times_and_products_say_which_flag() {
        let err = plan(&args(Some("yesterday"), None), now()).unwrap_err();
        assert!(err.contains("--since") && err.contains("RFC 3339"), "{err}");
        let mut a = args(Some("2026-11-02T00:00:00Z"), None);
        a.until = Some("2026-11-01T00:00:00Z".into());
        assert!(plan(&a, now()).unwrap_err().contains("after --until"));
        let mut a = args(Some("first"), None);
        a.product = Some("bananas".into());
        assert!(plan(&a, now()).unwrap_err().contains("--product"));
    }

    fn published(body: &str) -> (BasicProperties, Vec<u8>) {
        let envelope = Envelope::new(
            Receipt {
                id: uuid::Uuid::now_v7(),
                received_at: "2026-11-20T08:30:00.25Z".parse().expect("time"),
                key_label: "kobra".into(),
            },
            Bytes::from(body.to_owned()),
        );
        let topology = Topology::new("t", QueueType::Quorum, true);
        let raw = message::prepare(&envelope, &topology).messages.remove(0);
        (raw.properties, raw.body.to_vec())
    }

    #[test]
    fn an_archived_raw_message_gives_back_the_envelope_it_was_made_from() {
        let body = r#"{"productID":1,"visitID":"V1"}"#;
        let (properties, data) = published(body);
        let Archived::Visit(envelope) = read_archived(&properties, &data) else {
            panic!("a visit");
        };
        assert_eq!(envelope.body, body.as_bytes());
        assert_eq!(envelope.receipt.key_label, "kobra");
        assert_eq!(
            envelope.receipt.received_at.to_string(),
            "2026-11-20T08:30:00.25Z"
        );
        assert_eq!(
            Some(envelope.receipt.id.to_string()),
            properties.correlation_id().as_ref().map(|s| s.to_string())
        );

        let topology = Topology::new("t", QueueType::Quorum, true);
        let original = message::prepare(&envelope, &topology);
        let plan = plan(&args(Some("first"), None), now()).expect("plan");
        let (again, _) = republish(&envelope, &topology, &plan);
        assert_eq!(again.exchange, "t.visits");
        assert_eq!(again.body, original.messages[1].body, "same document");
        assert_eq!(
            again.properties.message_id(),
            original.messages[1].properties.message_id()
        );
        assert_eq!(
            header(&again.properties, "x-replayed"),
            Some(&AMQPValue::Boolean(true))
        );
    }

    #[test]
    fn corrupt_and_foreign_messages_are_skipped_with_a_reason() {
        let (properties, _) = published(r#"{"productID":1}"#);
        let corrupt = |props: &BasicProperties, data: &[u8]| match read_archived(props, data) {
            Archived::Corrupt(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(corrupt(&properties, br#"{"productID":2}"#).contains("message_id"));
        assert!(corrupt(&properties, b"{\"productID\":").contains("invalid_json"));
        assert!(corrupt(&BasicProperties::default(), b"{}").contains("correlation_id"));

        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert("x-schema-version".into(), AMQPValue::LongInt(1));
        let normalized = properties.clone().with_headers(headers);
        assert!(matches!(
            read_archived(&normalized, b"{}"),
            Archived::PassedOver
        ));
    }

    #[test]
    fn filters_pick_by_product_and_visit_id() {
        let envelope = |body: &str| {
            let (properties, data) = published(body);
            match read_archived(&properties, &data) {
                Archived::Visit(envelope) => envelope,
                other => panic!("{other:?}"),
            }
        };
        let mut a = args(Some("first"), None);
        a.product = Some("address_validation".into());
        a.visit_ids = vec!["V2".into()];
        let p = plan(&a, now()).expect("plan");
        assert!(matches(&p, &envelope(r#"{"productID":2,"visitID":"V2"}"#)));
        assert!(!matches(&p, &envelope(r#"{"productID":2,"visitID":"V3"}"#)));
        assert!(!matches(&p, &envelope(r#"{"productID":1,"visitID":"V2"}"#)));
    }

    #[test]
    fn to_queue_goes_through_the_default_exchange() {
        let (properties, data) = published(r#"{"productID":3}"#);
        let Archived::Visit(envelope) = read_archived(&properties, &data) else {
            panic!("a visit");
        };
        let mut a = args(Some("first"), None);
        a.raw = true;
        a.to_queue = Some("audit".into());
        let p = plan(&a, now()).expect("plan");
        let topology = Topology::new("t", QueueType::Quorum, true);
        let (outgoing, _) = republish(&envelope, &topology, &p);
        assert_eq!(
            (outgoing.exchange.as_str(), outgoing.routing_key.as_str()),
            ("", "audit")
        );
        assert_eq!(outgoing.body, envelope.body, "raw: byte-identical");
    }
}
