//! `Invites` for PostgreSQL, and accepting an invite's token (called by the
//! verify of `logins.rs` when the token's login carries an invite). Plain
//! transactions: invites are rare beside logins, so they take no lane.

use passgate_core::invite::{InviteMetadata, InviteStatus, invite_refusal};
use passgate_core::login::{Refusal, VerifyFailure};
use passgate_core::{EventKind, InviteId, LoginId, OrganizationId, ProjectId, Timestamp, UserId};
use passgate_store::shared::Consumed;
use passgate_store::{
    AcceptedInvite, AuthMethod, Invite, InviteQuery, Invites, NewEvent, NewInvite, RevokeOutcome, StartOutcome,
    StoreError, StoreResult, VerifyByToken, VerifyOutcome,
};
use sqlx::PgConnection;

use crate::events::insert_event;
use crate::logins::{finish_verified, refuse, start_one};
use crate::{PgStore, db_err};

/// An invite row as read, before its status is worked out.
struct InviteRow {
    id: String,
    email: String,
    invited_by: Option<String>,
    organization_id: Option<String>,
    role: Option<String>,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    accepted_user_id: Option<String>,
    revoked_at: Option<i64>,
}

impl InviteRow {
    fn at(self, now: Timestamp) -> Invite {
        let (accepted_at, revoked_at, expires_at) =
            (self.accepted_at.map(Timestamp), self.revoked_at.map(Timestamp), Timestamp(self.expires_at));
        Invite {
            id: InviteId::from_trusted(self.id),
            email: self.email,
            status: InviteStatus::of(accepted_at, revoked_at, expires_at, now),
            invited_by: self.invited_by,
            organization_id: self.organization_id.map(OrganizationId::from_trusted),
            role: self.role,
            created_at: Timestamp(self.created_at),
            expires_at,
            accepted_at,
            user_id: self.accepted_user_id.map(UserId::from_trusted),
            revoked_at,
        }
    }
}

async fn read_invite(
    tx: &mut PgConnection,
    project_id: &ProjectId,
    id: &InviteId,
    now: Timestamp,
) -> StoreResult<Option<Invite>> {
    let row = sqlx::query_as!(
        InviteRow,
        "SELECT id, email, invited_by, organization_id, role, created_at, expires_at, accepted_at, accepted_user_id,
            revoked_at
         FROM invites WHERE project_id = $1 AND id = $2",
        project_id.as_str(),
        id.as_str()
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(row.map(|r| r.at(now)))
}

/// Accepts the invite a token's login carries: the invite's conditional
/// `UPDATE` is the single-use guarantee (a revoke and a second accept both
/// wait for its row lock, re-check, and match nothing); then the login is
/// used, the user found or created, the membership granted, and
/// `invite.accepted` recorded, in the verify's transaction.
pub(crate) async fn accept_invite(
    tx: &mut PgConnection,
    login_id: &LoginId,
    invite_id: &InviteId,
    req: &VerifyByToken,
) -> StoreResult<VerifyOutcome> {
    let now = req.now;
    let accepted = sqlx::query!(
        "UPDATE invites SET accepted_at = $1
         WHERE id = $2 AND project_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1
         RETURNING email, metadata, invited_by, organization_id, role",
        now.millis(),
        invite_id.as_str(),
        req.project_id.as_str()
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(accepted) = accepted else {
        let failure = read_invite(tx, &req.project_id, invite_id, now)
            .await?
            .and_then(|i| invite_refusal(i.accepted_at, i.revoked_at, i.expires_at, now))
            .unwrap_or(VerifyFailure::Invalid);
        return refuse(tx, &req.project_id, Some(login_id), Refusal::Refuse(failure), now).await;
    };
    sqlx::query!("UPDATE logins SET used_at = $1 WHERE id = $2", now.millis(), login_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    let consumed = Consumed {
        project_id: req.project_id.clone(),
        login_id: login_id.clone(),
        email: accepted.email.clone(),
        state: None,
        method: AuthMethod::EmailLink,
    };
    let VerifyOutcome::Verified(mut verified) = finish_verified(tx, consumed, &req.new_user_id, now).await? else {
        return Err(StoreError::Corrupt("a consumed invite was not verified".into()));
    };
    let user_id = verified.user.id.clone();
    sqlx::query!("UPDATE invites SET accepted_user_id = $1 WHERE id = $2", user_id.as_str(), invite_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if let (Some(organization_id), Some(role)) = (&accepted.organization_id, &accepted.role) {
        // A member already keeps the role they have: an invite never demotes.
        sqlx::query!(
            "INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM organizations WHERE id = $1 AND project_id = $3)
             ON CONFLICT (organization_id, user_id) DO NOTHING",
            organization_id,
            user_id.as_str(),
            req.project_id.as_str(),
            role,
            now.millis()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    let event = NewEvent {
        user_id: Some(&user_id),
        login_id: Some(login_id),
        invite_id: Some(invite_id),
        email: Some(&accepted.email),
        ..NewEvent::new(&req.project_id, EventKind::InviteAccepted, now)
    };
    insert_event(tx, event).await?;
    verified.invite = Some(AcceptedInvite {
        id: invite_id.clone(),
        metadata: accepted.metadata.map(InviteMetadata::from_trusted),
        invited_by: accepted.invited_by,
    });
    Ok(VerifyOutcome::Verified(verified))
}

impl Invites for PgStore {
    async fn create_invite(&self, invite: NewInvite) -> StoreResult<StartOutcome> {
        let mut tx = self.begin().await?;
        let login = &invite.login;
        // The same per-project lock as starts take, so the limits and the
        // idempotency check see every start and invite of the project.
        crate::projects::lock_project(&mut tx, &login.project_id).await?;
        if let Some((organization_id, _)) = &invite.membership {
            sqlx::query!(
                "SELECT id FROM organizations WHERE id = $1 AND project_id = $2",
                organization_id.as_str(),
                login.project_id.as_str()
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
        }
        let outcome = start_one(&mut tx, login).await?;
        if outcome == StartOutcome::Started {
            let (organization_id, role) = invite.membership.as_ref().map(|(o, r)| (o.as_str(), r.as_str())).unzip();
            sqlx::query!(
                "INSERT INTO invites (id, project_id, login_id, email, metadata, invited_by, organization_id, role,
                    created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
            )
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }

    async fn list_invites(&self, project_id: &ProjectId, query: InviteQuery) -> StoreResult<Vec<Invite>> {
        let status = query.status.map_or("any", InviteStatus::as_str);
        // The status rules of `InviteStatus::of`, in SQL.
        let rows = sqlx::query_as!(
            InviteRow,
            "SELECT id, email, invited_by, organization_id, role, created_at, expires_at, accepted_at,
                accepted_user_id, revoked_at
             FROM invites
             WHERE project_id = $3 AND ($4::TEXT IS NULL OR id < $4)
               AND ($1 = 'any'
                 OR ($1 = 'accepted' AND accepted_at IS NOT NULL)
                 OR ($1 = 'revoked' AND accepted_at IS NULL AND revoked_at IS NOT NULL)
                 OR ($1 = 'pending' AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2)
                 OR ($1 = 'expired' AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at <= $2))
             ORDER BY id DESC LIMIT $5",
            status,
            query.now.millis(),
            project_id.as_str(),
            query.before.as_ref().map(InviteId::as_str),
            i64::from(query.limit)
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(|r| r.at(query.now)).collect())
    }

    async fn revoke_invite(
        &self,
        project_id: &ProjectId,
        invite_id: &InviteId,
        now: Timestamp,
    ) -> StoreResult<Option<RevokeOutcome>> {
        let mut tx = self.begin().await?;
        let revoked = sqlx::query!(
            "UPDATE invites SET revoked_at = $1
             WHERE id = $2 AND project_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL
             RETURNING login_id, email",
            now.millis(),
            invite_id.as_str(),
            project_id.as_str()
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(revoked) = revoked {
            let login_id = LoginId::from_trusted(revoked.login_id);
            let event = NewEvent {
                login_id: Some(&login_id),
                invite_id: Some(invite_id),
                email: Some(&revoked.email),
                ..NewEvent::new(project_id, EventKind::InviteRevoked, now)
            };
            insert_event(&mut tx, event).await?;
        }
        let outcome = read_invite(&mut tx, project_id, invite_id, now).await?.map(|invite| match invite.status {
            InviteStatus::Accepted => RevokeOutcome::AlreadyAccepted,
            _ => RevokeOutcome::Revoked(invite),
        });
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }
}
