//! Users: `GET /api/v2/users/{userId}`, `GET /api/v2/users?email=`,
//! `DELETE /api/v2/users/{userId}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A user of the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub created_at: String,
}

/// `GET /api/v2/users?email=`: the user with that address, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserList {
    /// At most one: an address is one user per project.
    pub users: Vec<UserRecord>,
}

/// The query of `GET /api/v2/users`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The address, normalised like a start's.
    pub email: String,
}
