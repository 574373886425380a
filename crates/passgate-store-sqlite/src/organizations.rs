//! `Organizations` for SQLite.

use passgate_core::{OrganizationId, ProjectId, Timestamp, UserId};
use passgate_store::{
    Member, NewOrganization, Organization, OrganizationSummary, Organizations, StoreError, StoreResult,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::logins::upsert_user;
use crate::{OrStoreError, SqliteStore};

fn organization_exists(conn: &Connection, project_id: &ProjectId, id: &OrganizationId) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM organizations WHERE id = ? AND project_id = ?")
        .db()?
        .query_row(params![id.as_str(), project_id.as_str()], |_| Ok(()))
        .optional()
        .db()?
        .is_some())
}

impl Organizations for SqliteStore {
    async fn create_organization(&self, organization: NewOrganization) -> StoreResult<()> {
        self.write(move |conn| {
            let o = &organization;
            conn.prepare_cached("INSERT INTO organizations (id, project_id, name, created_at) VALUES (?, ?, ?, ?)")
                .db()?
                .execute(params![o.id.as_str(), o.project_id.as_str(), o.name, o.created_at.millis()])
                .db()?;
            for member in &o.members {
                let (user, _) = upsert_user(conn, &o.project_id, &member.email, &member.new_user_id, o.created_at)?;
                conn.prepare_cached(
                    "INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role",
                )
                .db()?
                .execute(params![
                    o.id.as_str(),
                    user.id.as_str(),
                    o.project_id.as_str(),
                    member.role,
                    o.created_at.millis()
                ])
                .db()?;
            }
            Ok(())
        })
        .await
    }

    async fn get_organization(&self, project_id: &ProjectId, id: &OrganizationId) -> StoreResult<Option<Organization>> {
        self.read(|conn| {
            let found: Option<(String, i64)> = conn
                .prepare_cached("SELECT name, created_at FROM organizations WHERE id = ? AND project_id = ?")
                .db()?
                .query_row(params![id.as_str(), project_id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .db()?;
            let Some((name, created_at)) = found else { return Ok(None) };
            let mut statement = conn
                .prepare_cached(
                    "SELECT m.user_id, u.email, m.role, m.joined_at FROM memberships m JOIN users u ON u.id = m.user_id
                     WHERE m.organization_id = ? ORDER BY m.joined_at, m.user_id",
                )
                .db()?;
            let members = statement
                .query_map([id.as_str()], |r| {
                    Ok(Member {
                        user_id: UserId::from_trusted(r.get::<_, String>(0)?),
                        email: r.get(1)?,
                        role: r.get(2)?,
                        joined_at: Timestamp(r.get(3)?),
                    })
                })
                .db()?
                .map(OrStoreError::db)
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(Some(Organization { id: id.clone(), name, created_at: Timestamp(created_at), members }))
        })
    }

    async fn list_organizations(&self, project_id: &ProjectId) -> StoreResult<Vec<OrganizationSummary>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT o.id, o.name, o.created_at,
                        (SELECT COUNT(*) FROM memberships m WHERE m.organization_id = o.id)
                     FROM organizations o WHERE o.project_id = ? ORDER BY o.id DESC",
                )
                .db()?;
            let rows = statement
                .query_map([project_id.as_str()], |r| {
                    Ok(OrganizationSummary {
                        id: OrganizationId::from_trusted(r.get::<_, String>(0)?),
                        name: r.get(1)?,
                        created_at: Timestamp(r.get(2)?),
                        members: r.get::<_, i64>(3)?.try_into().unwrap_or_default(),
                    })
                })
                .db()?;
            rows.map(OrStoreError::db).collect()
        })
    }

    async fn set_member_role(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
        role: &str,
        now: Timestamp,
    ) -> StoreResult<Member> {
        let (project_id, organization_id, user_id, role) =
            (project_id.clone(), organization_id.clone(), user_id.clone(), role.to_string());
        self.write(move |conn| {
            let email: Option<String> = conn
                .prepare_cached("SELECT email FROM users WHERE id = ? AND project_id = ?")
                .db()?
                .query_row(params![user_id.as_str(), project_id.as_str()], |r| r.get(0))
                .optional()
                .db()?;
            let (Some(email), true) = (email, organization_exists(conn, &project_id, &organization_id)?) else {
                return Err(StoreError::NotFound);
            };
            let joined_at: i64 = conn
                .prepare_cached(
                    "INSERT INTO memberships (organization_id, user_id, project_id, role, joined_at)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role
                     RETURNING joined_at",
                )
                .db()?
                .query_row(
                    params![organization_id.as_str(), user_id.as_str(), project_id.as_str(), role, now.millis()],
                    |r| r.get(0),
                )
                .db()?;
            Ok(Member { user_id: user_id.clone(), email, role: role.clone(), joined_at: Timestamp(joined_at) })
        })
        .await
    }

    async fn remove_member(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
    ) -> StoreResult<bool> {
        let (project_id, organization_id, user_id) = (project_id.clone(), organization_id.clone(), user_id.clone());
        self.write(move |conn| {
            let removed = conn
                .prepare_cached("DELETE FROM memberships WHERE organization_id = ? AND user_id = ? AND project_id = ?")
                .db()?
                .execute(params![organization_id.as_str(), user_id.as_str(), project_id.as_str()])
                .db()?;
            Ok(removed > 0)
        })
        .await
    }

    async fn organizations_of(&self, project_id: &ProjectId, user_id: &UserId) -> StoreResult<Vec<OrganizationId>> {
        self.read(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT organization_id FROM memberships WHERE project_id = ? AND user_id = ?
                     ORDER BY joined_at, organization_id",
                )
                .db()?;
            let rows = statement
                .query_map(params![project_id.as_str(), user_id.as_str()], |r| {
                    Ok(OrganizationId::from_trusted(r.get::<_, String>(0)?))
                })
                .db()?;
            rows.map(OrStoreError::db).collect()
        })
    }
}
