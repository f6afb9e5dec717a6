//! An open replay: a consumer on the archive stream and, unless it is a dry
//! run, a channel in confirm mode; reading, filtering and publishing with
//! at most one confirm window awaiting its confirms.

use std::{collections::VecDeque, io::IsTerminal};

use futures_util::StreamExt;
use lapin::{
    Channel, Connection, Consumer, PublisherConfirm,
    message::Delivery,
    options::{BasicAckOptions, ConfirmSelectOptions},
};

use super::plan::{Plan, matches, republish};
use super::progress::Progress;
use super::{End, Tally};
use crate::publisher::archive::{self, Archived, Start, read_archived, received_at, stream_offset};
use crate::publisher::{self, CONFIRM_WINDOW, PublishError, spans, topology::Topology};

/// An open replay: a stream consumer on the archive and, unless it is a dry
/// run, a channel in confirm mode to publish on.
pub(super) struct Replay<'a> {
    topology: &'a Topology,
    plan: &'a Plan,
    consumer: Consumer,
    publisher: Option<Channel>,
    progress: Progress,
}

impl<'a> Replay<'a> {
    pub(super) async fn open(
        connection: &Connection,
        topology: &'a Topology,
        plan: &'a Plan,
    ) -> Result<Self, String> {
        let consumer = archive::consume(connection, topology, plan.start).await?;
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
                publisher::check_queue(&channel, queue)
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

    pub(super) fn describe(&self) -> String {
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
    pub(super) async fn run(mut self, tally: &mut Tally, interrupt: impl Future) -> End {
        let mut pending: VecDeque<Sent> = VecDeque::new();
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
        pending: &mut VecDeque<Sent>,
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
        let (mut outgoing, warnings) = republish(&envelope, self.topology, self.plan);
        spans::start_one(&mut outgoing, &envelope, None, spans::Origin::Replayed);
        tally.warnings += warnings as u64;
        let Some(channel) = &self.publisher else {
            return Ok(true);
        };
        // Mandatory: a --to-queue that vanished returns the message, a
        // failure rather than a silent drop.
        let confirm = publisher::send(channel, std::iter::once(&mut outgoing))
            .await
            .map_err(|error| match error {
                PublishError::Connection(source) => format!("publishing: {source}"),
                other => format!("publishing: {other}"),
            })?
            .pop()
            .expect("one message sent, one confirm");
        pending.push_back((offset.unwrap_or_default(), confirm, outgoing.span));
        Ok(true)
    }
}

/// A publish awaiting its confirm: its archive offset, and its span.
type Sent = (u64, PublisherConfirm, tracing::Span);

/// Waits for the oldest publish's confirm. On a failure, the replay is to
/// go on from that message.
async fn confirm_front(pending: &mut VecDeque<Sent>, tally: &mut Tally) -> Result<(), String> {
    let Some((offset, confirm, span)) = pending.pop_front() else {
        return Ok(());
    };
    let settled = publisher::settle(confirm).await;
    spans::settled_one(&span, &settled);
    let failure = match settled {
        Ok(()) => None,
        Err(PublishError::Connection(error)) => Some(format!(
            "waiting for the confirm of offset {offset}: {error}"
        )),
        Err(error) => Some(format!("offset {offset}: {error}")),
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
