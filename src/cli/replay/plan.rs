//! What to replay and where to: the command line checked into a [`Plan`]
//! before anything connects, which archived visits it picks, and the
//! message each becomes.

use std::{collections::HashSet, time::Duration};

use jiff::Timestamp;
use lapin::types::AMQPValue;

use super::ReplayArgs;
use crate::publisher::archive::Start;
use crate::publisher::{headers as header, message, topology::Topology};
use crate::visit::{DEPTH_CEILING, Envelope, Product, inspect};

/// What to replay and where to, checked before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) start: Start,
    /// Visits received before this are passed over.
    pub(super) since: Option<Timestamp>,
    pub(super) until: Timestamp,
    pub(super) product: Option<Product>,
    pub(super) visit_ids: HashSet<String>,
    pub(super) raw: bool,
    pub(super) to_queue: Option<String>,
    pub(super) dry_run: bool,
    pub(super) idle_timeout: Duration,
}

pub(super) fn plan(args: &ReplayArgs, now: Timestamp) -> Result<Plan, String> {
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

/// Whether the plan's product and visit-id filters pick `envelope`.
pub(super) fn matches(plan: &Plan, envelope: &Envelope) -> bool {
    if plan.product.is_none() && plan.visit_ids.is_empty() {
        return true;
    }
    let inspection = inspect(&envelope.body, DEPTH_CEILING);
    plan.product.is_none_or(|p| p == inspection.product)
        && (plan.visit_ids.is_empty()
            || inspection
                .visit_id
                .is_some_and(|id| plan.visit_ids.contains(&id)))
}

/// The message the relay would publish for `envelope` today, marked as a
/// replay and addressed as `plan` says. Also returns how many normalization
/// warnings the visit has.
pub(super) fn republish(
    envelope: &Envelope,
    topology: &Topology,
    plan: &Plan,
) -> (message::Outgoing, usize) {
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
    headers.insert(header::REPLAYED.into(), AMQPValue::Boolean(true));
    outgoing.properties = outgoing.properties.with_headers(headers);
    if let Some(queue) = &plan.to_queue {
        outgoing.exchange = String::new();
        outgoing.routing_key = queue.clone();
    }
    (outgoing, prepared.warnings.len())
}
