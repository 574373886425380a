//! `Organizations` for PostgreSQL: plain transactions.

use passgate_core::{OrganizationId, ProjectId, Timestamp, UserId};
use passgate_store::{
    Member, NewOrganization, Organization, OrganizationSummary, Organizations, StoreError, StoreResult,
};

use crate::{PgStore, db_err};

impl Organizations for PgStore {
    async fn create_organization(&self, organization: NewOrganization) -> StoreResult<()> {
        let o = &organization;
        let mut tx = self.begin().await?;
        sqlx::query!(
            "INSERT INTO organizations (id, project_id, name, created_at) VALUES ($1, $2, $3, $4)",
            o.id.as_str(),
            o.project_id.as_str(),
            o.name,
            o.created_at.millis()
        )
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for member in &o.members {
            // The member's user, found or created (DO UPDATE, not DO NOTHING,
            // so that RETURNING gives the existing row too).
            sqlx::query!(
                "WITH the_user AS (
                    INSERT INTO users (id, project_id, email, created_at) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (project_id, email) DO UPDATE SET email = excluded.email
                    RETURNING id)
                 INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
                 SELECT $5, the_user.id, $2, $6, $4 FROM the_user
                 ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role",
                member.new_user_id.as_str(),
                o.project_id.as_str(),
                member.email,
                o.created_at.millis(),
                o.id.as_str(),
                member.role
            )
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn get_organization(&self, project_id: &ProjectId, id: &OrganizationId) -> StoreResult<Option<Organization>> {
        let found = sqlx::query!(
            "SELECT name, created_at FROM organizations WHERE id = $1 AND project_id = $2",
            id.as_str(),
            project_id.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(found) = found else { return Ok(None) };
        let members = sqlx::query!(
            "SELECT m.user_id, u.email, m.role, m.joined_at FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.organization_id = $1 ORDER BY m.joined_at, m.user_id",
            id.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|r| Member {
            user_id: UserId::from_trusted(r.user_id),
            email: r.email,
            role: r.role,
            joined_at: Timestamp(r.joined_at),
        })
        .collect();
        Ok(Some(Organization { id: id.clone(), name: found.name, created_at: Timestamp(found.created_at), members }))
    }

    async fn list_organizations(&self, project_id: &ProjectId) -> StoreResult<Vec<OrganizationSummary>> {
        let rows = sqlx::query!(
            r#"SELECT o.id, o.name, o.created_at,
                (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id) AS "members!"
             FROM organizations o WHERE o.project_id = $1 ORDER BY o.id DESC"#,
            project_id.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|r| OrganizationSummary {
                id: OrganizationId::from_trusted(r.id),
                name: r.name,
                created_at: Timestamp(r.created_at),
                members: r.members.try_into().unwrap_or_default(),
            })
            .collect())
    }

    async fn set_member_role(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
        role: &str,
        now: Timestamp,
    ) -> StoreResult<Member> {
        // Both the organization and the user must be the project's; the
        // insert then names them together, so neither can be another's.
        let row = sqlx::query!(
            "WITH target AS (
                SELECT u.id AS user_id, u.email FROM users u, organizations o
                WHERE u.id = $2 AND u.project_id = $3 AND o.id = $1 AND o.project_id = $3),
              member AS (
                INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
                SELECT $1, target.user_id, $3, $4, $5 FROM target
                ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role
                RETURNING joined_at)
             SELECT target.email, member.joined_at FROM target, member",
            organization_id.as_str(),
            user_id.as_str(),
            project_id.as_str(),
            role,
            now.millis()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
        Ok(Member {
            user_id: user_id.clone(),
            email: row.email,
            role: role.to_string(),
            joined_at: Timestamp(row.joined_at),
        })
    }

    async fn remove_member(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
    ) -> StoreResult<bool> {
        let removed = sqlx::query!(
            "DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2 AND project_id = $3",
            organization_id.as_str(),
            user_id.as_str(),
            project_id.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(removed > 0)
    }

    async fn organizations_of(&self, project_id: &ProjectId, user_id: &UserId) -> StoreResult<Vec<OrganizationId>> {
        let ids = sqlx::query_scalar!(
            "SELECT organization_id FROM memberships WHERE project_id = $1 AND user_id = $2
             ORDER BY joined_at, organization_id",
            project_id.as_str(),
            user_id.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ids.into_iter().map(OrganizationId::from_trusted).collect())
    }
}
