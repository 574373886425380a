//! Operational metrics in the Prometheus text format, served on their own
//! listener (`metrics_listen`), never on the public one.
//!
//! One registry per server, held in the app's state rather than a
//! process-wide recorder: tests run many servers in one process, and each
//! must count only its own traffic. Counters are atomics; the per-route
//! request table takes a lock for a map lookup, far below the cost of a
//! request.
//!
//! What a label may hold is fixed here, never taken from a request: route
//! templates (`/api/v2/auth/logins/{login_id}`, not the id; `unmatched` for
//! any other path), the methods HTTP defines (`other` for any other),
//! status codes, and the closed sets of failure reasons and limits. No
//! email address, IP, token, key or project id ever becomes a label, so
//! nothing secret or personal can leak through a scrape and no client can
//! grow the label set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use passgate_core::Timestamp;
use passgate_store::{LimitKind, OutboxDepth, SweepKind, VerifyFailure};

/// Upper bounds (seconds) of the request-duration histogram's buckets.
const DURATION_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The route label of a request that matched no route (404s, probes).
const UNMATCHED: &str = "unmatched";

const VERIFY_FAILURES: [VerifyFailure; VerifyFailure::KINDS.len()] = VerifyFailure::KINDS;

const LIMITS: [LimitKind; 5] = LimitKind::ALL;

/// How an email attempt ended, as the outbox worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailAttempt {
    Sent,
    /// Failed; will be tried again.
    Retrying,
    /// Failed for good (permanent error or attempts exhausted).
    GaveUp,
}

impl EmailAttempt {
    const ALL: [Self; 3] = [Self::Sent, Self::Retrying, Self::GaveUp];

    fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::GaveUp => "gave_up",
        }
    }
}

/// How a webhook attempt ended, as the webhook worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    /// Failed; will be tried again.
    Retrying,
    /// Failed for good (retries spent, or a retry by hand that failed).
    Failed,
}

impl WebhookOutcome {
    const ALL: [Self; 3] = [Self::Delivered, Self::Retrying, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
        }
    }
}

/// The label of an HTTP method: one of the methods HTTP defines, or
/// `other`. A client may send any token as its method; a label taken from
/// it would grow the table, the scrape and the logs with every invention.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[derive(Default)]
struct RouteStats {
    /// Requests by (method label, status).
    counts: HashMap<(&'static str, u16), u64>,
    /// Cumulative counts per bucket of `DURATION_BUCKETS` (+Inf is `count`).
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// The server's counters.
pub struct Metrics {
    started_at: Instant,
    process_start_unix: f64,
    logins_started: AtomicU64,
    logins_verified: AtomicU64,
    verify_failures: [AtomicU64; VERIFY_FAILURES.len()],
    rate_limited: [AtomicU64; LIMITS.len()],
    email_attempts: [AtomicU64; EmailAttempt::ALL.len()],
    webhook_attempts: [AtomicU64; WebhookOutcome::ALL.len()],
    swept: [AtomicU64; SweepKind::ALL.len()],
    /// When the last complete retention pass started (unix ms; 0: none yet).
    last_sweep_started_ms: std::sync::atomic::AtomicI64,
    /// The outboxes as last sampled, and when.
    outbox_depth: Mutex<Option<(OutboxDepth, Timestamp)>>,
    routes: Mutex<HashMap<String, RouteStats>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let process_start_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Self {
            started_at: Instant::now(),
            process_start_unix,
            logins_started: AtomicU64::new(0),
            logins_verified: AtomicU64::new(0),
            verify_failures: Default::default(),
            rate_limited: Default::default(),
            email_attempts: Default::default(),
            webhook_attempts: Default::default(),
            swept: Default::default(),
            last_sweep_started_ms: std::sync::atomic::AtomicI64::new(0),
            outbox_depth: Mutex::new(None),
            routes: Mutex::new(HashMap::new()),
        }
    }
}

fn failure_index(failure: VerifyFailure) -> usize {
    VERIFY_FAILURES.iter().position(|f| f.reason() == failure.reason()).unwrap_or(0)
}

impl Metrics {
    pub fn login_started(&self) {
        self.logins_started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn login_verified(&self) {
        self.logins_verified.fetch_add(1, Ordering::Relaxed);
    }

    pub fn verify_failed(&self, failure: VerifyFailure) {
        self.verify_failures[failure_index(failure)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self, limit: LimitKind) {
        let index = LIMITS.iter().position(|l| *l == limit).unwrap_or(0);
        self.rate_limited[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn email_attempt(&self, outcome: EmailAttempt) {
        let index = EmailAttempt::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.email_attempts[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_webhook(&self, outcome: WebhookOutcome) {
        let index = WebhookOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.webhook_attempts[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn swept(&self, kind: SweepKind, rows: u64) {
        let index = SweepKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.swept[index].fetch_add(rows, Ordering::Relaxed);
    }

    /// A retention pass that began at `started` has finished.
    pub fn sweep_finished(&self, started: Timestamp) {
        self.last_sweep_started_ms.store(started.millis(), Ordering::Relaxed);
    }

    /// What waits in the outboxes, as read at `at` (the webhook worker
    /// samples it every few seconds; a scrape never touches the database).
    pub fn set_outbox_depth(&self, depth: OutboxDepth, at: Timestamp) {
        *self.outbox_depth.lock().unwrap_or_else(|e| e.into_inner()) = Some((depth, at));
    }

    /// Records one answered request; `route` is the matched route's template.
    pub fn request(&self, route: Option<&str>, method: &Method, status: StatusCode, took: Duration) {
        let route = route.unwrap_or(UNMATCHED);
        let seconds = took.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let stats = match routes.get_mut(route) {
            Some(stats) => stats,
            None => routes.entry(route.to_string()).or_default(),
        };
        *stats.counts.entry((method_label(method), status.as_u16())).or_insert(0) += 1;
        for (bucket, bound) in stats.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        stats.count += 1;
        stats.sum_seconds += seconds;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        family(&mut out, "passgate_build_info", "gauge", "The running build; always 1.");
        let _ = writeln!(out, "passgate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));

        family(&mut out, "passgate_logins_started_total", "counter", "Logins started (emails accepted for sending).");
        let _ = writeln!(out, "passgate_logins_started_total {}", load(&self.logins_started));
        family(&mut out, "passgate_logins_verified_total", "counter", "Logins verified (JWTs issued).");
        let _ = writeln!(out, "passgate_logins_verified_total {}", load(&self.logins_verified));
        family(&mut out, "passgate_verify_failures_total", "counter", "Refused verifies, by error code.");
        for (failure, count) in VERIFY_FAILURES.iter().zip(&self.verify_failures) {
            let _ = writeln!(out, "passgate_verify_failures_total{{reason=\"{}\"}} {}", failure.reason(), load(count));
        }
        family(&mut out, "passgate_rate_limited_total", "counter", "Starts refused by a send limit, by limit.");
        for (limit, count) in LIMITS.iter().zip(&self.rate_limited) {
            let _ = writeln!(out, "passgate_rate_limited_total{{limit=\"{}\"}} {}", limit.as_str(), load(count));
        }
        family(&mut out, "passgate_email_attempts_total", "counter", "Email delivery attempts, by outcome.");
        for (outcome, count) in EmailAttempt::ALL.iter().zip(&self.email_attempts) {
            let _ = writeln!(out, "passgate_email_attempts_total{{outcome=\"{}\"}} {}", outcome.label(), load(count));
        }
        family(&mut out, "passgate_webhook_attempts_total", "counter", "Webhook delivery attempts, by outcome.");
        for (outcome, count) in WebhookOutcome::ALL.iter().zip(&self.webhook_attempts) {
            let _ = writeln!(out, "passgate_webhook_attempts_total{{outcome=\"{}\"}} {}", outcome.label(), load(count));
        }
        self.render_outbox_depth(&mut out);
        self.render_sweeps(&mut out);

        self.render_requests(&mut out);

        family(&mut out, "process_start_time_seconds", "gauge", "Start time of the process, seconds since the epoch.");
        let _ = writeln!(out, "process_start_time_seconds {:.3}", self.process_start_unix);
        family(&mut out, "passgate_uptime_seconds", "gauge", "Seconds since this server started.");
        let _ = writeln!(out, "passgate_uptime_seconds {:.3}", self.started_at.elapsed().as_secs_f64());
        if let Some(bytes) = resident_memory_bytes() {
            family(&mut out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
            let _ = writeln!(out, "process_resident_memory_bytes {bytes}");
        }
        out
    }

    fn render_sweeps(&self, out: &mut String) {
        family(out, "passgate_swept_rows_total", "counter", "Rows removed by the retention sweeper, by kind.");
        for (kind, count) in SweepKind::ALL.iter().zip(&self.swept) {
            let _ = writeln!(
                out,
                "passgate_swept_rows_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                count.load(Ordering::Relaxed)
            );
        }
        let started = self.last_sweep_started_ms.load(Ordering::Relaxed);
        if started == 0 {
            return;
        }
        family(
            out,
            "passgate_sweep_last_run_timestamp_seconds",
            "gauge",
            "When the last complete retention pass began.",
        );
        let _ = writeln!(out, "passgate_sweep_last_run_timestamp_seconds {:.3}", started as f64 / 1000.0);
        // Lag: how old the newest complete pass is. It stays below the
        // interval plus a pass's length while the sweeper keeps up.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
        family(out, "passgate_sweep_lag_seconds", "gauge", "Seconds since the last complete retention pass began.");
        let _ = writeln!(out, "passgate_sweep_lag_seconds {:.3}", (now_ms - started).max(0) as f64 / 1000.0);
    }

    fn render_outbox_depth(&self, out: &mut String) {
        let sampled = *self.outbox_depth.lock().unwrap_or_else(|e| e.into_inner());
        let Some((depth, at)) = sampled else { return };
        // Age of the oldest row due: how far behind the sender is (0 when
        // nothing is overdue).
        let age = |due: Option<Timestamp>| due.map_or(0.0, |due| (at.millis() - due.millis()).max(0) as f64 / 1000.0);
        family(out, "passgate_outbox_depth", "gauge", "Rows waiting to be sent, by outbox (email, webhook).");
        let _ = writeln!(out, "passgate_outbox_depth{{outbox=\"email\"}} {}", depth.emails);
        let _ = writeln!(out, "passgate_outbox_depth{{outbox=\"webhook\"}} {}", depth.webhook_deliveries);
        family(
            out,
            "passgate_outbox_oldest_due_age_seconds",
            "gauge",
            "How long the oldest row waiting to be sent has been due, by outbox.",
        );
        let _ = writeln!(
            out,
            "passgate_outbox_oldest_due_age_seconds{{outbox=\"email\"}} {:.3}",
            age(depth.oldest_email_due)
        );
        let _ = writeln!(
            out,
            "passgate_outbox_oldest_due_age_seconds{{outbox=\"webhook\"}} {:.3}",
            age(depth.oldest_webhook_delivery_due)
        );
    }

    fn render_requests(&self, out: &mut String) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        // Sorted, so scrapes are stable and diffable.
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        family(out, "passgate_http_requests_total", "counter", "HTTP requests answered, by route, method and status.");
        for name in &names {
            let mut counts: Vec<_> = routes[*name].counts.iter().collect();
            counts.sort_by(|a, b| a.0.cmp(b.0));
            for ((method, status), count) in counts {
                let _ = writeln!(
                    out,
                    "passgate_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                    escape(name)
                );
            }
        }
        family(out, "passgate_http_request_duration_seconds", "histogram", "Time to answer an HTTP request, by route.");
        for name in &names {
            let stats = &routes[*name];
            let route = escape(name);
            for (bound, count) in DURATION_BUCKETS.iter().zip(stats.buckets) {
                let _ = writeln!(
                    out,
                    "passgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "passgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                stats.count
            );
            let _ =
                writeln!(out, "passgate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", stats.sum_seconds);
            let _ = writeln!(out, "passgate_http_request_duration_seconds_count{{route=\"{route}\"}} {}", stats.count);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it. Route templates never hold
/// these characters today; escaping keeps that an assumption we do not need.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Resident set size from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Every Linux platform we build for uses 4 KiB pages.
    Some(pages * 4096)
}

/// Middleware: counts and times every request of the public router.
pub async fn track(State(metrics): State<std::sync::Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let response = next.run(request).await;
    metrics.request(route.as_deref(), &method, response.status(), started.elapsed());
    response
}

/// The metrics listener's router: `GET /metrics` and nothing else.
pub fn router(metrics: std::sync::Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

async fn scrape(State(metrics): State<std::sync::Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], metrics.render())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_and_timed_into_buckets() {
        let metrics = Metrics::default();
        let route = Some("/api/v2/auth/logins/{login_id}");
        metrics.request(route, &Method::GET, StatusCode::OK, Duration::from_millis(3));
        metrics.request(route, &Method::GET, StatusCode::OK, Duration::from_millis(30));
        metrics.request(None, &Method::POST, StatusCode::NOT_FOUND, Duration::from_micros(200));
        let text = metrics.render();
        assert!(text.contains(
            "passgate_http_requests_total{route=\"/api/v2/auth/logins/{login_id}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("passgate_http_requests_total{route=\"unmatched\",method=\"POST\",status=\"404\"} 1"));
        let bucket = |le: &str| {
            format!(
                "passgate_http_request_duration_seconds_bucket{{route=\"/api/v2/auth/logins/{{login_id}}\",le=\"{le}\"}}"
            )
        };
        assert!(text.contains(&format!("{} 0\n", bucket("0.0025"))));
        assert!(text.contains(&format!("{} 1\n", bucket("0.005"))));
        assert!(text.contains(&format!("{} 2\n", bucket("0.05"))));
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))));
    }

    /// A client can invent methods; each is counted as `other`, so the
    /// table stays as it is however many it invents.
    #[test]
    fn invented_methods_share_one_label() {
        let metrics = Metrics::default();
        for i in 0..500 {
            let method = Method::from_bytes(format!("M{i}{}", "X".repeat(1000)).as_bytes()).unwrap_or(Method::GET);
            metrics.request(None, &method, StatusCode::NOT_FOUND, Duration::from_millis(1));
        }
        metrics.request(None, &Method::DELETE, StatusCode::NOT_FOUND, Duration::from_millis(1));
        let text = metrics.render();
        assert!(text.contains("passgate_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 500"));
        assert!(text.contains("passgate_http_requests_total{route=\"unmatched\",method=\"DELETE\",status=\"404\"} 1"));
        assert!(!text.contains("XXXX"), "an invented method reached the scrape");
        assert!(text.len() < 8192, "the scrape grew to {} bytes", text.len());
    }

    #[test]
    fn outcomes_are_counted_under_closed_labels() {
        let metrics = Metrics::default();
        metrics.login_started();
        metrics.login_verified();
        metrics.verify_failed(VerifyFailure::Used { used_at: passgate_core::Timestamp(5) });
        metrics.verify_failed(VerifyFailure::Used { used_at: passgate_core::Timestamp(9) });
        metrics.rate_limited(LimitKind::IpAddress);
        metrics.email_attempt(EmailAttempt::Retrying);
        let text = metrics.render();
        for line in [
            "passgate_logins_started_total 1",
            "passgate_logins_verified_total 1",
            "passgate_verify_failures_total{reason=\"token_used\"} 2",
            "passgate_verify_failures_total{reason=\"token_invalid\"} 0",
            "passgate_rate_limited_total{limit=\"ip_address\"} 1",
            "passgate_email_attempts_total{outcome=\"retrying\"} 1",
            "passgate_email_attempts_total{outcome=\"sent\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_family_is_declared_once_before_its_samples() {
        let metrics = Metrics::default();
        metrics.request(Some("/healthz"), &Method::GET, StatusCode::OK, Duration::from_millis(1));
        let text = metrics.render();
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} has no # TYPE before it");
            }
        }
    }
}
