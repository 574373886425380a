//! Organizations and their members, and lookup: which user an address or id
//! names, and which organizations they belong to. Lookup grants nothing:
//! an app authorizes against memberships after it authenticated the user.

use passgate_core::email::EmailAddress;
use passgate_core::organization::{OrganizationName, Role};
use passgate_core::{OrganizationId, UserId};
use passgate_store::{Member, NewMember, NewOrganization, Organization, Project, Store};

use super::ServiceError;
use super::logins::check_policy;
use crate::app::AppState;

/// An organization to create, parsed: its members' addresses are distinct.
#[derive(Debug)]
pub struct CreateOrganization {
    pub name: OrganizationName,
    pub members: Vec<(EmailAddress, Role)>,
}

/// Creates an organization and its first members; a member whose address
/// has no user yet gets one. The project's policy applies to every address.
pub async fn create<S: Store>(
    app: &AppState<S>,
    project: &Project,
    request: CreateOrganization,
) -> Result<OrganizationId, ServiceError> {
    for (email, _) in &request.members {
        check_policy(project, email)?;
    }
    let id = OrganizationId::generate();
    let organization = NewOrganization {
        id: id.clone(),
        project_id: project.id.clone(),
        name: request.name.into_string(),
        members: request
            .members
            .into_iter()
            .map(|(email, role)| NewMember {
                email: email.into_string(),
                role: role.into_string(),
                new_user_id: UserId::generate(),
            })
            .collect(),
        created_at: app.clock.now(),
    };
    app.store.create_organization(organization).await?;
    Ok(id)
}

pub async fn get<S: Store>(
    app: &AppState<S>,
    project: &Project,
    id: &OrganizationId,
) -> Result<Organization, ServiceError> {
    app.store.get_organization(&project.id, id).await?.ok_or(ServiceError::NotFound)
}

/// Sets a member's role, making the user a member if they were not.
pub async fn set_role<S: Store>(
    app: &AppState<S>,
    project: &Project,
    organization_id: &OrganizationId,
    user_id: &UserId,
    role: Role,
) -> Result<Member, ServiceError> {
    Ok(app.store.set_member_role(&project.id, organization_id, user_id, role.as_str(), app.clock.now()).await?)
}

pub async fn remove_member<S: Store>(
    app: &AppState<S>,
    project: &Project,
    organization_id: &OrganizationId,
    user_id: &UserId,
) -> Result<(), ServiceError> {
    if app.store.remove_member(&project.id, organization_id, user_id).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound)
    }
}

/// Whom a lookup asks about.
#[derive(Debug)]
pub enum Lookup {
    Email(EmailAddress),
    /// `None`: a value that is not shaped like a user id names no user.
    User(Option<UserId>),
}

/// The user a lookup names (if any) and their organizations.
pub async fn lookup<S: Store>(
    app: &AppState<S>,
    project: &Project,
    lookup: Lookup,
) -> Result<(Option<UserId>, Vec<OrganizationId>), ServiceError> {
    let user = match lookup {
        Lookup::Email(email) => app.store.find_user(&project.id, email.as_str()).await?,
        Lookup::User(Some(id)) => app.store.get_user(&project.id, &id).await?,
        Lookup::User(None) => None,
    };
    let Some(user) = user else { return Ok((None, Vec::new())) };
    let organizations = app.store.organizations_of(&project.id, &user.id).await?;
    Ok((Some(user.id), organizations))
}
