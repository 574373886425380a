//! Organizations of a project, their members and roles, and which
//! organizations a user belongs to (what `lookup` answers).

use std::future::Future;

use passgate_core::{OrganizationId, ProjectId, Timestamp, UserId};

use crate::StoreResult;

/// A member to add by address; a member with no user yet gets one, with
/// this id.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub email: String,
    pub role: String,
    pub new_user_id: UserId,
}

#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub id: OrganizationId,
    pub project_id: ProjectId,
    pub name: String,
    pub members: Vec<NewMember>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: String,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: Timestamp,
    /// In the order they joined.
    pub members: Vec<Member>,
}

/// An organization as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationSummary {
    pub id: OrganizationId,
    pub name: String,
    pub created_at: Timestamp,
    pub members: u64,
}

pub trait Organizations: Clone + Send + Sync + 'static {
    /// Creates the organization and its first members (creating the users
    /// that do not exist yet), in one transaction.
    fn create_organization(&self, organization: NewOrganization) -> impl Future<Output = StoreResult<()>> + Send;

    fn get_organization(
        &self,
        project_id: &ProjectId,
        id: &OrganizationId,
    ) -> impl Future<Output = StoreResult<Option<Organization>>> + Send;

    /// The project's organizations, newest first.
    fn list_organizations(
        &self,
        project_id: &ProjectId,
    ) -> impl Future<Output = StoreResult<Vec<OrganizationSummary>>> + Send;

    /// Makes the user a member with `role`, or changes the role of a member
    /// (`joined_at` stays). [`StoreError::NotFound`] unless both the
    /// organization and the user are the project's.
    ///
    /// [`StoreError::NotFound`]: crate::StoreError::NotFound
    fn set_member_role(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
        role: &str,
        now: Timestamp,
    ) -> impl Future<Output = StoreResult<Member>> + Send;

    /// Removes a member; false if the user was not one (or the
    /// organization is not the project's).
    fn remove_member(
        &self,
        project_id: &ProjectId,
        organization_id: &OrganizationId,
        user_id: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The organizations a user of the project belongs to, oldest
    /// membership first.
    fn organizations_of(
        &self,
        project_id: &ProjectId,
        user_id: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<OrganizationId>>> + Send;
}
