//! The organization guard (S23): a request for an organization's data
//! passes only when the signed-in user is a member of every organization
//! the request names — in its path, its query or its JSON body, reads and
//! writes alike.
//!
//! Membership is read from passgate (`GET /api/v2/organizations/{id}`) on
//! every request and never cached, so a membership removed in passgate is
//! refused on the next request. A lookup result is never used: lookup
//! answers "which organizations does this address belong to", which says
//! nothing about who is asking.

use axum::extract::{FromRef, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use passgate_api_types::ErrorCode;
use serde::de::DeserializeOwned;

use super::auth::{Auth, SignedIn, json_error};
use super::session::SessionRecord;

/// Names under which a request may carry an organization id.
const ORG_KEYS: [&str; 5] = ["orgId", "organizationId", "org_id", "organization_id", "organization"];

/// The signed-in user's membership of one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organization (`org_…`).
    pub organization_id: String,
    /// The user's role in it, as passgate has it.
    pub role: String,
}

/// An extractor for routes about one organization: the session and the
/// user's membership of every organization id in the path and query.
/// `401` without a session, `400` when the request names no organization,
/// `403` when the user is not a member of one it names (or it does not
/// exist: the answer does not tell which).
///
/// ```no_run
/// use axum::{Json, Router, routing::get};
/// use passgate_client::axum::{Auth, OrgAccess};
///
/// async fn data(access: OrgAccess) -> Json<serde_json::Value> {
///     Json(serde_json::json!({ "organizationId": access.membership.organization_id }))
/// }
/// # fn app(auth: Auth) -> Router {
/// Router::new().route("/api/orgs/{orgId}/data", get(data)).with_state(auth)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct OrgAccess {
    /// The signed-in session.
    pub session: SessionRecord,
    /// The membership of the organization the request is about (the first
    /// it names; every other one it names was checked too).
    pub membership: Membership,
}

impl<S> FromRequestParts<S> for OrgAccess
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        let ids = ids_in_parts(parts, state).await;
        let auth = Auth::from_ref(state);
        let membership = authorize(&auth, &session, &ids).await.map_err(Refused::response)?;
        Ok(Self { session, membership })
    }
}

/// [`OrgAccess`] for a route with a JSON body: the body's organization ids
/// (any member named like `organizationId`, at any depth, and any string
/// that is an `org_…` id) are checked too, then the body is parsed as `T`.
#[derive(Debug, Clone)]
pub struct OrgJson<T> {
    /// The session and membership, checked against every id the request names.
    pub access: OrgAccess,
    /// The body, parsed once the check passed.
    pub body: T,
}

impl<S, T> FromRequest<S> for OrgJson<T>
where
    Auth: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let SignedIn(session) = SignedIn::from_request_parts(&mut parts, state).await?;
        let mut ids = ids_in_parts(&mut parts, state).await;
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map_err(|_| json_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is too large"))?;
        let value: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| json_error(StatusCode::BAD_REQUEST, "invalid_request", "the body is not JSON"))?
        };
        collect_json(&value, false, &mut ids);
        let auth = Auth::from_ref(state);
        let membership = authorize(&auth, &session, &ids).await.map_err(Refused::response)?;
        let body = serde_json::from_value(value)
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()))?;
        Ok(Self { access: OrgAccess { session, membership }, body })
    }
}

/// Every organization id in the path parameters and the query.
async fn ids_in_parts<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<String> {
    let mut ids = Vec::new();
    if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
        for (name, value) in params.iter() {
            if ORG_KEYS.contains(&name) || value.starts_with("org_") {
                ids.push(value.to_string());
            }
        }
    }
    if let Some(query) = parts.uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let name: &str = &name;
            if ORG_KEYS.contains(&name) || value.starts_with("org_") {
                ids.push(value.into_owned());
            }
        }
    }
    ids
}

/// Every organization id in a JSON value: the values of members named
/// like one (at any depth, strings or arrays of strings) and every string
/// that looks like one.
fn collect_json(value: &serde_json::Value, named: bool, ids: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if named || s.starts_with("org_") => ids.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json(v, named, ids)),
        serde_json::Value::Object(members) => {
            for (key, v) in members {
                let named = ORG_KEYS.contains(&key.as_str()) || key == "orgIds" || key == "organizationIds";
                collect_json(v, named, ids);
            }
        }
        serde_json::Value::Number(n) if named => ids.push(n.to_string()),
        _ => {}
    }
}

impl Auth {
    /// The session user's membership of `organization_id`, read from
    /// passgate now; `None` when they are not a member (or it does not exist).
    pub async fn membership(
        &self,
        session: &SessionRecord,
        organization_id: &str,
    ) -> Result<Option<Membership>, crate::Error> {
        if !organization_id.starts_with("org_") || organization_id.len() > 64 {
            return Ok(None);
        }
        match self.client().get_organization(organization_id).await {
            Ok(organization) => Ok(organization
                .members
                .iter()
                .find(|m| m.user_id == session.user_id)
                .map(|m| Membership { organization_id: organization.id.clone(), role: m.role.clone() })),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why the guard refused.
enum Refused {
    NoOrganization,
    NotAMember,
    Unavailable,
}

impl Refused {
    fn response(self) -> Response {
        match self {
            Self::NoOrganization => {
                json_error(StatusCode::BAD_REQUEST, "invalid_request", "the request names no organization")
            }
            Self::NotAMember => {
                json_error(StatusCode::FORBIDDEN, "forbidden", "you are not a member of this organization")
            }
            Self::Unavailable => {
                json_error(StatusCode::SERVICE_UNAVAILABLE, "passgate_unavailable", "try again shortly")
            }
        }
    }
}

/// The membership of the first id; every id must be a membership.
async fn authorize(auth: &Auth, session: &SessionRecord, ids: &[String]) -> Result<Membership, Refused> {
    let mut unique: Vec<&String> = Vec::new();
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    let Some(first) = unique.first().copied() else { return Err(Refused::NoOrganization) };
    let mut found = None;
    for id in unique.iter().copied() {
        match auth.membership(session, id).await {
            Ok(Some(membership)) if id == first => found = Some(membership),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Refused::NotAMember),
            Err(e) => {
                tracing::error!(error = %e, "passgate: reading an organization's members");
                return Err(Refused::Unavailable);
            }
        }
    }
    found.ok_or(Refused::NotAMember)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_wherever_a_body_puts_them() {
        let body = serde_json::json!({
            "note": "x",
            "organizationId": "org_a",
            "nested": { "target": ["org_b", "plain"], "orgId": "not-prefixed" },
            "items": [{ "organization": 42 }],
            "orgIds": ["org_c"],
        });
        let mut ids = Vec::new();
        collect_json(&body, false, &mut ids);
        ids.sort();
        assert_eq!(ids, ["42", "not-prefixed", "org_a", "org_b", "org_c"]);
        let mut none = Vec::new();
        collect_json(&serde_json::json!({"a": "b", "n": 1}), false, &mut none);
        assert!(none.is_empty());
    }
}
