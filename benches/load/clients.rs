//! `--clients`: the ceiling's tight publisher written with lapin (the
//! relay's client) and with amqprs, the other maintained Rust AMQP 0-9-1
//! client, in alternation: the same messages (properties and headers
//! included) into the same topology, with the same confirm window. What
//! each costs per visit in the publishing process is the figure that
//! matters on a machine where the relay and the broker share the cores.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Instant,
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, LongStr, Nack, Return,
    ShortStr,
    callbacks::{ChannelCallback, DefaultConnectionCallback},
    channel::{BasicPublishArguments, Channel, ConfirmSelectArguments},
    connection::{Connection, OpenConnectionArguments},
};
use kobra_relay::{
    config::QueueType,
    publisher::{CONFIRM_WINDOW, declare, message::Outgoing},
};
use lapin::types::AMQPValue;
use tokio::sync::Notify;

use super::{
    Ceiling, CpuSplit, Target, broker, broker_ceiling, ceiling_delivered, ceiling_messages,
    random_prefix, relay_topology,
};

/// Delivery tags the broker has confirmed, from amqprs's callback.
#[derive(Default)]
struct Confirmed {
    /// Every tag up to here is confirmed.
    floor: u64,
    /// Confirmed one by one above the floor.
    above: BTreeSet<u64>,
    nacked: bool,
}

impl Confirmed {
    fn count(&self) -> u64 {
        self.floor + self.above.len() as u64
    }

    fn confirm(&mut self, tag: u64, multiple: bool) {
        if multiple {
            self.floor = self.floor.max(tag);
            self.above = self.above.split_off(&(self.floor + 1));
        } else if tag > self.floor {
            self.above.insert(tag);
        }
        while self.above.remove(&(self.floor + 1)) {
            self.floor += 1;
        }
    }
}

#[derive(Clone, Default)]
struct Confirms {
    state: Arc<Mutex<Confirmed>>,
    changed: Arc<Notify>,
}

impl Confirms {
    fn record(&self, tag: u64, multiple: bool, ack: bool) {
        let mut state = self.state.lock().expect("confirms");
        state.confirm(tag, multiple);
        state.nacked |= !ack;
        drop(state);
        self.changed.notify_one();
    }

    /// Waits until at most `unconfirmed` of `published` messages await a confirm.
    async fn wait(&self, published: u64, unconfirmed: u64) {
        loop {
            let notified = self.changed.notified();
            {
                let state = self.state.lock().expect("confirms");
                assert!(!state.nacked, "broker nacked");
                if published - state.count() <= unconfirmed {
                    return;
                }
            }
            notified.await;
        }
    }
}

#[async_trait::async_trait]
impl ChannelCallback for Confirms {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        panic!("broker closed the channel: {close}");
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.record(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.record(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(&mut self, _: &Channel, ret: Return, _: BasicProperties, _: Vec<u8>) {
        panic!("broker returned a message: {ret}");
    }
}

/// One message in amqprs's types, converted before the clock starts.
struct AmqprsMessage {
    args: BasicPublishArguments,
    properties: BasicProperties,
    body: Vec<u8>,
}

fn short(text: &str) -> ShortStr {
    text.to_owned().try_into().expect("short string")
}

fn convert(message: &Outgoing) -> AmqprsMessage {
    let p = &message.properties;
    let mut headers = FieldTable::new();
    for (name, value) in p
        .headers()
        .as_ref()
        .map(|t| t.inner().iter())
        .into_iter()
        .flatten()
    {
        let value = match value {
            AMQPValue::LongString(text) => FieldValue::S(
                LongStr::try_from(String::from_utf8_lossy(text.as_bytes()).into_owned())
                    .expect("long string"),
            ),
            AMQPValue::LongLongInt(n) => FieldValue::l(*n),
            AMQPValue::LongInt(n) => FieldValue::I(*n),
            other => panic!("header {name} of an unexpected type: {other:?}"),
        };
        headers.insert(short(name.as_str()), value);
    }
    let text = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
    let mut properties = BasicProperties::default();
    properties
        .with_delivery_mode(p.delivery_mode().unwrap_or(2))
        .with_timestamp(p.timestamp().unwrap_or_default())
        .with_headers(headers);
    if let Some(v) = text(p.content_type()) {
        properties.with_content_type(&v);
    }
    if let Some(v) = text(p.app_id()) {
        properties.with_app_id(&v);
    }
    if let Some(v) = text(p.kind()) {
        properties.with_message_type(&v);
    }
    if let Some(v) = text(p.message_id()) {
        properties.with_message_id(&v);
    }
    if let Some(v) = text(p.correlation_id()) {
        properties.with_correlation_id(&v);
    }
    let mut args = BasicPublishArguments::new(&message.exchange, &message.routing_key);
    args.mandatory(true);
    AmqprsMessage {
        args,
        properties,
        body: message.body.to_vec(),
    }
}

/// The ceiling with amqprs: batches of 64 visits, at most
/// [`CONFIRM_WINDOW`] visits unconfirmed, as the lapin ceiling does.
async fn amqprs_ceiling(target: &Target, visits: usize) -> Ceiling {
    let topology = relay_topology(&random_prefix(), QueueType::Quorum);
    {
        let conn = broker(target).await;
        let channel = conn.create_channel().await.expect("channel");
        declare(&conn, &channel, &topology).await.expect("declare");
        let _ = conn.close(200, "declared".into()).await;
    }
    let messages: Vec<Vec<AmqprsMessage>> = ceiling_messages(&topology, visits)
        .iter()
        .map(|visit| visit.messages.iter().map(convert).collect())
        .collect();
    let connection = Connection::open(&OpenConnectionArguments::new(
        "127.0.0.1",
        5672,
        "guest",
        "guest",
    ))
    .await
    .expect("amqprs connection");
    connection
        .register_callback(DefaultConnectionCallback)
        .await
        .expect("connection callback");
    let channel = connection.open_channel(None).await.expect("amqprs channel");
    let confirms = Confirms::default();
    channel
        .register_callback(confirms.clone())
        .await
        .expect("channel callback");
    channel
        .confirm_select(ConfirmSelectArguments::default())
        .await
        .expect("confirms");

    let per_visit = messages.first().map_or(2, Vec::len) as u64;
    let window = CONFIRM_WINDOW as u64 * per_visit;
    let cpu_before = CpuSplit::now(target);
    let started = Instant::now();
    let mut published = 0u64;
    for batch in messages.chunks(64) {
        let batch_messages = batch.len() as u64 * per_visit;
        confirms
            .wait(published, window.saturating_sub(batch_messages))
            .await;
        for message in batch.iter().flatten() {
            // The body is copied per publish, as lapin copies it into its frames.
            channel
                .basic_publish(
                    message.properties.clone(),
                    message.body.clone(),
                    message.args.clone(),
                )
                .await
                .expect("publish");
            published += 1;
        }
    }
    confirms.wait(published, 0).await;
    let elapsed = started.elapsed();
    let cpu = CpuSplit::now(target).since(cpu_before);
    let _ = channel.close().await;
    let _ = connection.close().await;
    ceiling_delivered(target, &topology, visits, elapsed, cpu).await
}

pub(super) async fn run(target: &Target, visits: usize, rounds: usize) {
    println!("# AMQP clients compared: the ceiling publisher");
    println!();
    println!(
        "{visits} visits per run (two messages each, the relay's properties and headers), quorum queues, archive on, a window of {CONFIRM_WINDOW} visits; {rounds} rounds, lapin then amqprs."
    );
    println!();
    println!("| client | round | visits/s | publisher µs / visit | broker µs / visit |");
    println!("|---|---:|---:|---:|---:|");
    let mut sums = [(0.0, 0.0); 2];
    for round in 1..=rounds {
        for (i, name) in ["lapin", "amqprs"].into_iter().enumerate() {
            let ceiling = if i == 0 {
                broker_ceiling(target, QueueType::Quorum, visits).await
            } else {
                amqprs_ceiling(target, visits).await
            };
            let per_visit = |seconds: f64| seconds / visits as f64 * 1e6;
            println!(
                "| {name} | {round} | {:.0} | {:.1} | {:.0} |",
                ceiling.visits_per_s,
                per_visit(ceiling.cpu.this_process),
                per_visit(ceiling.cpu.broker),
            );
            sums[i].0 += ceiling.visits_per_s;
            sums[i].1 += per_visit(ceiling.cpu.this_process);
        }
    }
    println!();
    println!(
        "amqprs ÷ lapin: visits/s {:.2}, publisher CPU per visit {:.2}.",
        sums[1].0 / sums[0].0,
        sums[1].1 / sums[0].1
    );
}
