//! A visit's normalized document as its messages carry it: the JSON, and
//! the few values the message headers repeat. The ingress makes it while
//! it reads the body (so a visit's body is parsed once), and the envelope
//! carries it in memory to the publisher. An envelope read back from the
//! spool's disk or the archive comes without one and gets it made again:
//! normalization is a pure function of the envelope, so the bytes are the
//! same either way.

use std::borrow::Cow;

use bytes::Bytes;

use super::normalize::{ProductInfo, Warning, normalize};
use super::{Envelope, Product};

/// The normalized document of one visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The document's JSON (CONTRACT.md §5), the normalized message's body.
    pub json: Bytes,
    /// `product` of the document.
    pub product: ProductInfo,
    /// `visitId`.
    pub visit_id: Option<String>,
    /// `agent.id`.
    pub agent_id: Option<String>,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
    /// `warnings`, for the metrics.
    pub warnings: Vec<Warning>,
}

impl Document {
    /// Normalizes the envelope's body and writes the document.
    ///
    /// # Errors
    /// The body is not a JSON object.
    pub fn of(envelope: &Envelope) -> Result<Self, serde_json::Error> {
        let visit = normalize(envelope)?;
        // The document repeats most of the body plus typed fields (the
        // example's is 1.2 times its body): sized up front, it is written
        // without growing and copying the buffer, and without holding much
        // unused capacity in the spool's cache or the confirm window.
        let mut json = Vec::with_capacity(envelope.body.len() * 3 / 2 + 512);
        if visit.write_json(&mut json).is_err() {
            json.clear();
        }
        Ok(Self {
            json: Bytes::from(json),
            product: visit.product,
            visit_id: visit.visit_id.map(Cow::into_owned),
            agent_id: visit.agent.id.map(Cow::into_owned),
            external_id: visit.external_id.map(Cow::into_owned),
            tag: visit.tag.map(Cow::into_owned),
            warnings: visit.warnings,
        })
    }

    /// The product the visit is routed by.
    pub fn routing_product(&self) -> Product {
        self.product.id.map_or(Product::Unknown, Product::from_id)
    }

    /// Bytes it holds in memory beyond the envelope, for the spool's cache.
    pub fn weight(&self) -> u64 {
        self.json.len() as u64
    }
}
