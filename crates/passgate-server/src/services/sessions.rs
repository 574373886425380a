//! Session keys at work: a stamped request is authenticated (the stamp,
//! the body's action and time, a live session key, then the replay record,
//! in that order), and a session can be read, revoked and asked for its
//! user's activity; an app revokes every session key of a user with its
//! secret key.

use passgate_core::stamp::StampedRequest;
use passgate_core::{OrganizationId, UserId};
use passgate_store::{Event, Project, Session, Store};

use super::ServiceError;
use crate::app::AppState;

/// How many activity entries `session/activity` returns.
pub const ACTIVITY_LIMIT: u32 = 50;

/// A stamped request from a live session key, seen for the first time.
#[derive(Debug)]
pub struct Authenticated {
    pub session: Session,
    pub request: StampedRequest,
}

/// Authenticates a request to `/api/v2/session/{action}`. The replay record
/// is written only for a live session's correctly signed, fresh body, so
/// nobody without a session key can add rows; a replayed body of a revoked
/// or expired key says `session_invalid`, which is the more useful answer.
pub async fn authenticate<S: Store>(
    app: &AppState<S>,
    stamp: Option<&[u8]>,
    body: &[u8],
    action: &str,
) -> Result<Authenticated, ServiceError> {
    let now = app.clock.now();
    let request = StampedRequest::verify(stamp, body, action, now).map_err(ServiceError::Stamp)?;
    let session = app.store.live_session(request.public_key(), now).await?.ok_or(ServiceError::SessionInvalid)?;
    if !app.store.record_stamp(request.replay_digest(), request.replay_window_end(), now).await? {
        return Err(ServiceError::StampReplayed);
    }
    Ok(Authenticated { session, request })
}

/// The organizations the session's user belongs to.
pub async fn organizations<S: Store>(
    app: &AppState<S>,
    session: &Session,
) -> Result<Vec<OrganizationId>, ServiceError> {
    Ok(app.store.organizations_of(&session.project_id, &session.user.id).await?)
}

/// Revokes the session's own key: the next stamp with it is `session_invalid`.
pub async fn revoke<S: Store>(app: &AppState<S>, session: &Session) -> Result<bool, ServiceError> {
    Ok(app.store.revoke_session(&session.project_id, &session.id, app.clock.now()).await?)
}

/// The session's user's recent sign-in activity, newest first.
pub async fn activity<S: Store>(app: &AppState<S>, session: &Session) -> Result<Vec<Event>, ServiceError> {
    Ok(app.store.user_activity(&session.project_id, &session.user.id, ACTIVITY_LIMIT).await?)
}

/// Revokes every live session key of a user of the project ("sign out everywhere").
pub async fn revoke_all<S: Store>(app: &AppState<S>, project: &Project, user_id: &UserId) -> Result<u64, ServiceError> {
    app.store.revoke_user_sessions(&project.id, user_id, app.clock.now()).await?.ok_or(ServiceError::NotFound)
}
