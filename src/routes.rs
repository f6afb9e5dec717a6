//! The HTTP paths the relay serves (CONTRACT.md), written once: the router
//! matches them, the metrics label requests by them and `send` posts to the
//! ingress one.

/// The ingress route: Kobra's Finish Visit webhook.
pub const FINISH_VISIT: &str = "/webhooks/finish-visit";
/// Prometheus exposition, on the admin listener.
pub const METRICS: &str = "/metrics";
/// Liveness, on the admin listener.
pub const HEALTHZ: &str = "/healthz";
/// Readiness, on the admin listener.
pub const READYZ: &str = "/readyz";
