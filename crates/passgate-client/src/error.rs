//! The SDK's one error type. Callers switch on [`ApiError::code`], the
//! API's stable error code, never on a message.

use std::time::Duration;

use passgate_api_types::{ErrorCode, Problem};

/// What a call to passgate can end in, other than success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// passgate answered with a problem document (a 4xx or 5xx).
    #[error("{0}")]
    Api(Box<ApiError>),
    /// passgate could not be reached, or the connection broke.
    #[error("could not reach passgate: {0}")]
    Transport(#[source] reqwest::Error),
    /// No answer within the client's timeout.
    #[error("passgate did not answer in time")]
    Timeout,
    /// The answer was not what the API promises (not JSON, missing fields).
    #[error("passgate's answer could not be read: {0}")]
    Decode(String),
    /// The client was set up wrong (a base URL that is not a URL, say).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The API's error code, when passgate answered with one.
    ///
    /// ```
    /// # fn show(e: passgate_client::Error) {
    /// use passgate_client::types::ErrorCode;
    /// match e.code() {
    ///     Some(ErrorCode::TokenUsed) => println!("that link was already used"),
    ///     Some(ErrorCode::RateLimited) => println!("slow down"),
    ///     _ => println!("{e}"),
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api(api) => api.code(),
            _ => None,
        }
    }

    /// The problem document, when passgate answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(api) => Some(api),
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() { Self::Timeout } else { Self::Transport(e) }
    }
}

/// An error answer from passgate: its HTTP status and problem document.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: u16,
    problem: Problem,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: u16, problem: Problem, retry_after: Option<Duration>) -> Self {
        Self { status, problem, retry_after }
    }

    /// The stable error code, or `None` for a code this SDK does not know
    /// (a newer server); [`ApiError::code_str`] has it either way.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == self.problem.code)
    }

    /// The error code as passgate sent it.
    pub fn code_str(&self) -> &str {
        &self.problem.code
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The whole problem document (`detail`, `requestId`, `usedAt`, …).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// With `rate_limited`: how long to wait, from `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "passgate answered {} {}: {} (request {})",
            self.status, self.problem.code, self.problem.detail, self.problem.request_id
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(code: &str) -> Problem {
        Problem {
            kind: format!("urn:passgate:error:{code}"),
            title: "t".into(),
            status: 401,
            detail: "d".into(),
            code: code.into(),
            request_id: "req_1".into(),
            used_at: None,
            expired_at: None,
        }
    }

    #[test]
    fn every_documented_code_is_recognised_and_unknown_ones_are_kept() {
        for code in ErrorCode::ALL {
            let error = ApiError::new(code.status(), problem(code.as_str()), None);
            assert_eq!(error.code(), Some(code));
        }
        let newer = ApiError::new(400, problem("something_new"), None);
        assert_eq!((newer.code(), newer.code_str()), (None, "something_new"));
        let shown = Error::Api(Box::new(newer)).to_string();
        assert!(shown.contains("something_new") && shown.contains("req_1"), "{shown}");
    }
}
