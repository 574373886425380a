//! The OpenAPI 3.1 document: its info, tags and security scheme here, its
//! paths from the one list of routes ([`crate::app::api_docs`]), so an
//! endpoint the router serves can never be missing from it. A snapshot test
//! pins it, and `docs/openapi.json` must equal it, so any change to the
//! contract shows up as a diff in review.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "passgate",
        description = "Passwordless email login, verified server to server. Every /api/v2 endpoint takes the project's secret key as a Bearer token, except those under /api/v2/session/, which take an X-Stamp signed with a session key. Errors are RFC 9457 problem documents whose `code` is stable.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecretKeyAuth),
    tags(
        (name = "auth", description = "Magic-link login"),
        (name = "otp", description = "Email one-time codes, with Turnkey-compatible session credentials"),
        (name = "session", description = "Client-signed (stamped) session requests"),
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

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for route in crate::app::api_docs() {
        doc.paths.add_path_operation(&route.path, route.methods, route.operation);
        for (name, schema) in route.schemas {
            components.schemas.insert(name, schema);
        }
    }
    doc
}

/// The document as pretty JSON (built once). `None` only if it cannot be
/// serialised, which the snapshot test would have caught.
pub fn document_json() -> Option<&'static str> {
    static DOC: OnceLock<Option<String>> = OnceLock::new();
    DOC.get_or_init(|| document().to_pretty_json().ok()).as_deref()
}
