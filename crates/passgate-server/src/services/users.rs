//! Users: finding one, and erasing one.

use passgate_core::UserId;
use passgate_core::email::EmailAddress;
use passgate_store::{Erased, Project, Store, User};

use super::ServiceError;
use crate::app::AppState;

pub async fn get<S: Store>(app: &AppState<S>, project: &Project, id: &UserId) -> Result<User, ServiceError> {
    app.store.get_user(&project.id, id).await?.ok_or(ServiceError::NotFound)
}

pub async fn find<S: Store>(
    app: &AppState<S>,
    project: &Project,
    email: &EmailAddress,
) -> Result<Option<User>, ServiceError> {
    Ok(app.store.find_user(&project.id, email.as_str()).await?)
}

/// Erases a user and everything that names them (see `Users::erase_user`).
pub async fn erase<S: Store>(app: &AppState<S>, project: &Project, id: &UserId) -> Result<Erased, ServiceError> {
    app.store.erase_user(&project.id, id, app.clock.now()).await?.ok_or(ServiceError::NotFound)
}
