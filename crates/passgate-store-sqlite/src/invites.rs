//! `Invites` for SQLite, and accepting an invite's token (called by the
//! verify of `logins.rs` when the token's login carries an invite).

use passgate_core::invite::{InviteMetadata, InviteStatus, invite_refusal};
use passgate_core::login::{Refusal, VerifyFailure};
use passgate_core::{EventKind, InviteId, LoginId, OrganizationId, ProjectId, Timestamp, UserId};
use passgate_store::shared::Consumed;
use passgate_store::{
    AcceptedInvite, AuthMethod, Invite, InviteQuery, Invites, NewEvent, NewInvite, RevokeOutcome, StartOutcome,
    StoreError, StoreResult, VerifyByToken, VerifyOutcome,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::events::insert_event;
use crate::logins::{finish_verified, refuse, start_login};
use crate::{OrStoreError, SqliteStore};

const INVITE_COLUMNS: &str = "id, email, invited_by, organization_id, role, created_at, expires_at, accepted_at,
    accepted_user_id, revoked_at";

fn invite_row(r: &rusqlite::Row<'_>, now: Timestamp) -> rusqlite::Result<Invite> {
    let (accepted_at, revoked_at, expires_at) =
        (r.get::<_, Option<i64>>(7)?.map(Timestamp), r.get::<_, Option<i64>>(9)?.map(Timestamp), Timestamp(r.get(6)?));
    Ok(Invite {
        id: InviteId::from_trusted(r.get::<_, String>(0)?),
        email: r.get(1)?,
        status: InviteStatus::of(accepted_at, revoked_at, expires_at, now),
        invited_by: r.get(2)?,
        organization_id: r.get::<_, Option<String>>(3)?.map(OrganizationId::from_trusted),
        role: r.get(4)?,
        created_at: Timestamp(r.get(5)?),
        expires_at,
        accepted_at,
        user_id: r.get::<_, Option<String>>(8)?.map(UserId::from_trusted),
        revoked_at,
    })
}

fn read_invite(
    conn: &Connection,
    project_id: &ProjectId,
    id: &InviteId,
    now: Timestamp,
) -> StoreResult<Option<Invite>> {
    conn.prepare_cached(&format!("SELECT {INVITE_COLUMNS} FROM invites WHERE project_id = ? AND id = ?"))
        .db()?
        .query_row(params![project_id.as_str(), id.as_str()], |r| invite_row(r, now))
        .optional()
        .db()
}

/// Accepts the invite a token's login carries: the invite's conditional
/// `UPDATE` is the single-use guarantee (a revoke and a second accept both
/// wait on it and then match nothing); then the login is used, the user
/// found or created, the membership granted, and `invite.accepted`
/// recorded, in the verify's transaction.
pub(crate) fn accept_invite(
    conn: &Connection,
    login_id: &LoginId,
    invite_id: &InviteId,
    req: &VerifyByToken,
) -> StoreResult<VerifyOutcome> {
    let now = req.now;
    type Accepted = (String, Option<String>, Option<String>, Option<String>, Option<String>);
    let accepted: Option<Accepted> = conn
        .prepare_cached(
            "UPDATE invites SET accepted_at = ?
             WHERE id = ? AND project_id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?
             RETURNING email, metadata, invited_by, organization_id, role",
        )
        .db()?
        .query_row(params![now.millis(), invite_id.as_str(), req.project_id.as_str(), now.millis()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()
        .db()?;
    let Some((email, metadata, invited_by, organization_id, role)) = accepted else {
        let failure = read_invite(conn, &req.project_id, invite_id, now)?
            .and_then(|i| invite_refusal(i.accepted_at, i.revoked_at, i.expires_at, now))
            .unwrap_or(VerifyFailure::Invalid);
        return refuse(conn, &req.project_id, Some(login_id), Refusal::Refuse(failure), now);
    };
    conn.prepare_cached("UPDATE logins SET used_at = ? WHERE id = ?")
        .db()?
        .execute(params![now.millis(), login_id.as_str()])
        .db()?;
    let consumed = Consumed {
        project_id: req.project_id.clone(),
        login_id: login_id.clone(),
        email: email.clone(),
        state: None,
        method: AuthMethod::EmailLink,
    };
    let VerifyOutcome::Verified(mut verified) = finish_verified(conn, consumed, &req.new_user_id, now)? else {
        return Err(StoreError::Corrupt("a consumed invite was not verified".into()));
    };
    let user_id = verified.user.id.clone();
    conn.prepare_cached("UPDATE invites SET accepted_user_id = ? WHERE id = ?")
        .db()?
        .execute(params![user_id.as_str(), invite_id.as_str()])
        .db()?;
    if let (Some(organization_id), Some(role)) = (&organization_id, &role) {
        // A member already keeps the role they have: an invite never demotes.
        conn.prepare_cached(
            "INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
             SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM organizations WHERE id = ? AND project_id = ?)
             ON CONFLICT (organization_id, user_id) DO NOTHING",
        )
        .db()?
        .execute(params![
            organization_id,
            user_id.as_str(),
            req.project_id.as_str(),
            role,
            now.millis(),
            organization_id,
            req.project_id.as_str()
        ])
        .db()?;
    }
    let event = NewEvent {
        user_id: Some(&user_id),
        login_id: Some(login_id),
        invite_id: Some(invite_id),
        email: Some(&email),
        ..NewEvent::new(&req.project_id, EventKind::InviteAccepted, now)
    };
    insert_event(conn, event)?;
    verified.invite = Some(AcceptedInvite {
        id: invite_id.clone(),
        metadata: metadata.map(InviteMetadata::from_trusted),
        invited_by,
    });
    Ok(VerifyOutcome::Verified(verified))
}

/// The SQL condition of an invite status (or of none), for lists: the same
/// rules as `InviteStatus::of`, with `?2` the time.
pub(crate) const STATUS_FILTER: &str = "(?1 = 'any'
    OR (?1 = 'accepted' AND accepted_at IS NOT NULL)
    OR (?1 = 'revoked' AND accepted_at IS NULL AND revoked_at IS NOT NULL)
    OR (?1 = 'pending' AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?2)
    OR (?1 = 'expired' AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at <= ?2))";

impl Invites for SqliteStore {
    async fn create_invite(&self, invite: NewInvite) -> StoreResult<StartOutcome> {
        self.write(move |conn| {
            if let Some((organization_id, _)) = &invite.membership {
                let known = conn
                    .prepare_cached("SELECT 1 FROM organizations WHERE id = ? AND project_id = ?")
                    .db()?
                    .query_row(params![organization_id.as_str(), invite.login.project_id.as_str()], |_| Ok(()))
                    .optional()
                    .db()?;
                if known.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            let outcome = start_login(conn, &invite.login)?;
            if outcome == StartOutcome::Started {
                let login = &invite.login;
                let (organization_id, role) = invite.membership.as_ref().map(|(o, r)| (o.as_str(), r.as_str())).unzip();
                conn.prepare_cached(
                    "INSERT INTO invites (id, project_id, login_id, email, metadata, invited_by, organization_id, role,
                        created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .db()?
                .execute(params![
                    invite.id.as_str(),
                    login.project_id.as_str(),
                    login.id.as_str(),
                    login.email,
                    invite.metadata.as_ref().map(InviteMetadata::as_json),
                    invite.invited_by,
                    organization_id,
                    role,
                    login.created_at.millis(),
                    login.expires_at.millis()
                ])
                .db()?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn list_invites(&self, project_id: &ProjectId, query: InviteQuery) -> StoreResult<Vec<Invite>> {
        let status = query.status.map_or("any", InviteStatus::as_str);
        self.read(|conn| {
            let sql = format!(
                "SELECT {INVITE_COLUMNS} FROM invites
                 WHERE project_id = ?3 AND (?4 IS NULL OR id < ?4) AND {STATUS_FILTER}
                 ORDER BY id DESC LIMIT ?5"
            );
            let mut statement = conn.prepare_cached(&sql).db()?;
            let rows = statement
                .query_map(
                    params![
                        status,
                        query.now.millis(),
                        project_id.as_str(),
                        query.before.as_ref().map(InviteId::as_str),
                        i64::from(query.limit)
                    ],
                    |r| invite_row(r, query.now),
                )
                .db()?;
            rows.map(OrStoreError::db).collect()
        })
    }

    async fn revoke_invite(
        &self,
        project_id: &ProjectId,
        invite_id: &InviteId,
        now: Timestamp,
    ) -> StoreResult<Option<RevokeOutcome>> {
        let (project_id, invite_id) = (project_id.clone(), invite_id.clone());
        self.write(move |conn| {
            let revoked = conn
                .prepare_cached(
                    "UPDATE invites SET revoked_at = ?
                     WHERE id = ? AND project_id = ? AND accepted_at IS NULL AND revoked_at IS NULL
                     RETURNING login_id, email",
                )
                .db()?
                .query_row(params![now.millis(), invite_id.as_str(), project_id.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()
                .db()?;
            if let Some((login_id, email)) = revoked {
                let login_id = LoginId::from_trusted(login_id);
                let event = NewEvent {
                    login_id: Some(&login_id),
                    invite_id: Some(&invite_id),
                    email: Some(&email),
                    ..NewEvent::new(&project_id, EventKind::InviteRevoked, now)
                };
                insert_event(conn, event)?;
            }
            Ok(read_invite(conn, &project_id, &invite_id, now)?.map(|invite| match invite.status {
                InviteStatus::Accepted => RevokeOutcome::AlreadyAccepted,
                _ => RevokeOutcome::Revoked(invite),
            }))
        })
        .await
    }
}
