//! The OpenAPI 3.1 document, generated from the handlers' annotations.
//! `tests/it/openapi.rs` pins it against `docs/openapi.json`, so any change to
//! the contract shows up as a diff in review.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::{auth, ops};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "passgate",
        description = "Passwordless email login, verified server to server. Every /api/v2 endpoint takes the project's secret key as a Bearer token. Errors are RFC 9457 problem documents whose `code` is stable.",
        license(name = "Apache-2.0")
    ),
    paths(auth::start, auth::verify, auth::get_login, ops::jwks, ops::healthz, ops::readyz, ops::openapi),
    modifiers(&SecretKeyAuth),
    tags(
        (name = "auth", description = "Magic-link login"),
        (name = "operations", description = "Health, readiness, keys and this document"),
    )
)]
pub struct ApiDoc;

struct SecretKeyAuth;

impl utoipa::Modify for SecretKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secretKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_live_… / sk_test_…")
                    .description(Some("The project's secret key"))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON (built once).
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default()).clone()
}
