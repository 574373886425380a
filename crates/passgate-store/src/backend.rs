//! Pieces every backend needs that are not SQL: encoding list columns,
//! checking hashes read back, the arithmetic of `Retry-After`, and the shape
//! of an event row. Each backend keeps its own queries.

use passgate_core::Timestamp;

use crate::{StoreError, StoreResult, VerifyFailure};

/// A list setting as stored: a JSON array of strings.
pub fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_string())
}

pub fn from_json(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

/// A stored hash, checked to be 32 bytes.
pub fn hash32(bytes: Vec<u8>) -> StoreResult<[u8; 32]> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("hash is not 32 bytes".into()))
}

/// Seconds until the oldest counted send leaves its window (at least 1).
pub fn retry_after(oldest_counted: i64, window_seconds: i64, now: Timestamp) -> i64 {
    let free_at = oldest_counted + window_seconds * 1000;
    ((free_at - now.millis() + 999) / 1000).max(1)
}

/// Why a login can no longer be consumed, whatever was presented: used,
/// burned or expired, in that order; `None` while it is still open.
pub fn closed_login(
    used_at: Option<i64>,
    burned_at: Option<i64>,
    expires_at: i64,
    now: Timestamp,
) -> Option<VerifyFailure> {
    if let Some(used_at) = used_at {
        Some(VerifyFailure::Used { used_at: Timestamp(used_at) })
    } else if burned_at.is_some() {
        Some(VerifyFailure::Burned)
    } else if expires_at <= now.millis() {
        Some(VerifyFailure::Expired { expired_at: Timestamp(expires_at) })
    } else {
        None
    }
}

/// An event to record, borrowed from what the operation already holds.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub project_id: &'a str,
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub login_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub at: Timestamp,
}

impl<'a> NewEvent<'a> {
    pub fn new(project_id: &'a str, kind: &'a str, at: Timestamp) -> Self {
        Self {
            project_id,
            kind,
            user_id: None,
            login_id: None,
            email: None,
            reason: None,
            ip_address: None,
            user_agent: None,
            at,
        }
    }
}

/// A login just consumed by its conditional `UPDATE`, on its way to
/// finding or creating its user.
#[derive(Debug)]
pub struct Consumed {
    pub project_id: String,
    pub login_id: String,
    pub email: String,
    pub state: Option<String>,
    pub method: crate::AuthMethod,
}

/// What recording a delivery result writes to its outbox row, and the
/// event it records: one shape for the three outcomes, so each backend needs
/// one `UPDATE`.
#[derive(Debug)]
pub struct DeliveryUpdate<'a> {
    pub status: &'static str,
    pub last_error: Option<&'a str>,
    /// When to try again (a retry only).
    pub next_attempt_at: Option<i64>,
    /// When the email was settled (sent or given up): its sealed content is
    /// cleared then.
    pub settled_at: Option<i64>,
    /// The event kind and reason to record, if any.
    pub event: Option<(&'static str, Option<&'a str>)>,
    pub at: Timestamp,
}

impl<'a> DeliveryUpdate<'a> {
    pub fn of(result: &'a crate::DeliveryResult) -> Self {
        use crate::DeliveryResult::*;
        match result {
            Sent { at } => Self {
                status: "sent",
                last_error: None,
                next_attempt_at: None,
                settled_at: Some(at.millis()),
                event: Some(("email.sent", None)),
                at: *at,
            },
            Retry { at, error, retry_at } => Self {
                status: "retrying",
                last_error: Some(error),
                next_attempt_at: Some(retry_at.millis()),
                settled_at: None,
                event: None,
                at: *at,
            },
            GaveUp { at, error } => Self {
                status: "failed",
                last_error: Some(error),
                next_attempt_at: None,
                settled_at: Some(at.millis()),
                event: Some(("email.failed", Some(error))),
                at: *at,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let now = Timestamp(10_000);
        assert_eq!(retry_after(0, 15, now), 5);
        assert_eq!(retry_after(0, 10, now), 1);
        assert_eq!(retry_after(1, 10, now), 1);
        assert_eq!(retry_after(500, 15, now), 6);
    }

    #[test]
    fn list_columns_round_trip_and_corruption_is_reported() {
        let list = vec!["a".to_string(), "b\"c".to_string()];
        assert_eq!(from_json(&to_json(&list)).ok(), Some(list));
        assert!(matches!(from_json("not json"), Err(StoreError::Corrupt(_))));
        assert!(matches!(hash32(vec![0; 31]), Err(StoreError::Corrupt(_))));
    }
}
