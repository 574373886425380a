//! `GET /api/v2/project`: the project a secret key belongs to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The project of the key that asks, and what its result JWTs carry: an
/// SDK learns from this the `aud` and `iss` it must expect, so an app
/// needs to be told only passgate's URL and its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    /// The project id: the `aud` of its result JWTs.
    #[schema(example = "prj_dev")]
    pub project_id: String,
    pub name: String,
    /// The name emails show.
    pub app_name: String,
    /// The server's public URL: the `iss` of its result JWTs.
    #[schema(example = "https://auth.example.com")]
    pub issuer: String,
}
