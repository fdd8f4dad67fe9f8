//! Counters and latency histograms, rendered in the Prometheus text format.
//!
//! No HTTP here: the request middleware records requests by route pattern (bounded
//! cardinality), the cores record issuances and validations.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// idca's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    validations: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    issuances: AtomicU64,
    revocations: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Records one request: its method, route pattern, status and duration.
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        let secs = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let h = latency.entry(route.to_owned()).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound
                && let Some(c) = h.counts.get_mut(i)
            {
                *c += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Records a validation by challenge type and outcome.
    pub fn validation(&self, kind: &'static str, valid: bool) {
        *lock(&self.validations).entry((kind, if valid { "valid" } else { "invalid" })).or_default() += 1;
    }

    /// Records an issued certificate.
    pub fn issuance(&self) {
        self.issuances.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a revocation.
    pub fn revocation(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP idca_http_requests_total HTTP requests by method, route and status.");
        let _ = writeln!(out, "# TYPE idca_http_requests_total counter");
        for ((method, route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "idca_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(method),
                label(route)
            );
        }
        let _ = writeln!(out, "# HELP idca_http_request_duration_seconds HTTP request latency by route.");
        let _ = writeln!(out, "# TYPE idca_http_request_duration_seconds histogram");
        for (route, h) in lock(&self.latency).iter() {
            let route = label(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "idca_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ =
                writeln!(out, "idca_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "idca_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "idca_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        let _ = writeln!(out, "# HELP idca_validations_total Challenge validations by type and result.");
        let _ = writeln!(out, "# TYPE idca_validations_total counter");
        for ((kind, result), n) in lock(&self.validations).iter() {
            let _ = writeln!(out, "idca_validations_total{{type=\"{kind}\",result=\"{result}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP idca_certificates_issued_total Certificates issued.");
        let _ = writeln!(out, "# TYPE idca_certificates_issued_total counter");
        let _ = writeln!(out, "idca_certificates_issued_total {}", self.issuances.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP idca_certificates_revoked_total Certificates revoked.");
        let _ = writeln!(out, "# TYPE idca_certificates_revoked_total counter");
        let _ = writeln!(out, "idca_certificates_revoked_total {}", self.revocations.load(Ordering::Relaxed));
        out
    }

    /// The store's gauges, appended to [`Metrics::render`]: its live data as last
    /// measured and its quota (`storage.quota_bytes`, 0: none).
    pub fn render_store(out: &mut String, live_bytes: u64, quota_bytes: u64) {
        let _ = writeln!(out, "# HELP idca_store_live_bytes Live data in the store, as last measured for its quota.");
        let _ = writeln!(out, "# TYPE idca_store_live_bytes gauge");
        let _ = writeln!(out, "idca_store_live_bytes {live_bytes}");
        let _ = writeln!(out, "# HELP idca_store_quota_bytes The store quota (storage.quota_bytes; 0: none).");
        let _ = writeln!(out, "# TYPE idca_store_quota_bytes gauge");
        let _ = writeln!(out, "idca_store_quota_bytes {quota_bytes}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("POST", "/acme/order/{id}", 200, Duration::from_millis(3));
        m.request("POST", "/acme/order/{id}", 200, Duration::from_millis(30));
        m.validation("http-01", true);
        m.issuance();
        let text = m.render();
        assert!(text.contains("idca_http_requests_total{method=\"POST\",route=\"/acme/order/{id}\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("idca_validations_total{type=\"http-01\",result=\"valid\"} 1"));
        assert!(text.contains("idca_certificates_issued_total 1"));
    }
}
