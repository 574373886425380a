//! `GET /api/v2/events`: a project's activity, newest first, a page at a
//! time.

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passgate_api_types::{EventListQuery, EventPage, Problem};
use passgate_core::{EventId, EventKind, Timestamp, UserId};
use passgate_store::{EventCursor, Store};

use super::error::ApiError;
use super::extract::Project;
use crate::app::App;
use crate::services::events::{self, record_of};

pub const PAGE_DEFAULT: u32 = 50;
pub const PAGE_MAX: u32 = 200;

/// A cursor as clients see it: opaque (base64url of `millis:evt_…`), so
/// its form can change without breaking anyone.
fn encode_cursor(cursor: &EventCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.at.millis(), cursor.id))
}

fn decode_cursor(text: &str) -> Option<EventCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (millis, id) = text.split_once(':')?;
    Some(EventCursor { at: Timestamp(millis.parse().ok()?), id: EventId::parse(id)? })
}

/// The query, read by hand: `type` may be repeated (`type=a&type=b`) as
/// well as hold commas, which a plain struct cannot take. Anything unknown
/// is refused, as in every other query.
struct Filters {
    user_id: Option<UserId>,
    kinds: Vec<EventKind>,
    after: Option<EventCursor>,
    limit: u32,
}

fn filters(uri: &Uri) -> Result<Filters, ApiError> {
    let mut out = Filters { user_id: None, kinds: Vec::new(), after: None, limit: PAGE_DEFAULT };
    let mut user_given = None;
    for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "userId" => user_given = Some(value.into_owned()),
            "type" => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let kind = EventKind::parse(name)
                        .ok_or_else(|| ApiError::invalid_request(format!("type: unknown event type {name:?}")))?;
                    if !out.kinds.contains(&kind) {
                        out.kinds.push(kind);
                    }
                }
            }
            "after" => {
                out.after = Some(decode_cursor(&value).ok_or_else(|| {
                    ApiError::invalid_request("after: not a cursor from this API (pass a page's `next` as it is)")
                })?);
            }
            "limit" => {
                out.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX).contains(n))
                    .ok_or_else(|| ApiError::invalid_request(format!("limit: a number from 1 to {PAGE_MAX}")))?;
            }
            other => return Err(ApiError::invalid_request(format!("invalid query: unknown parameter {other:?}"))),
        }
    }
    if let Some(given) = user_given {
        // A malformed user id names no user: an empty page, as for an
        // unknown one, rather than an error that tells them apart.
        out.user_id = Some(UserId::parse(&given).unwrap_or_else(|| UserId::from_trusted("usr_none")));
    }
    Ok(out)
}

/// The project's events, newest first.
///
/// Cursor-paginated: pass a page's `next` as `after` for the page after it.
/// A page never repeats an event, and following `next` from the first page
/// sees every event that existed when it was read; events written meanwhile
/// appear at the top of a fresh first page. Each page is one range of an
/// index, whatever the filters, so it costs the same however many events
/// the project has.
#[utoipa::path(
    get,
    path = "/api/v2/events",
    tag = "events",
    params(EventListQuery),
    responses(
        (status = 200, description = "A page of events, newest first", body = EventPage),
        (status = 400, description = "invalid_request (unknown type, bad cursor, limit out of 1–200)", body = Problem),
        (status = 401, description = "unauthorized, key_revoked", body = Problem),
    ),
    security(("secretKey" = []))
)]
pub async fn list_events<S: Store>(
    State(app): State<App<S>>,
    Project(project): Project,
    uri: Uri,
) -> Result<Json<EventPage>, ApiError> {
    let f = filters(&uri)?;
    let page = events::page(&app, &project, f.user_id.as_ref(), &f.kinds, f.after.as_ref(), f.limit).await?;
    Ok(Json(EventPage {
        events: page.events.iter().map(record_of).collect(),
        next: page.next.as_ref().map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = EventCursor { at: Timestamp(1_795_219_200_123), id: EventId::generate() };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
        for bad in ["", "!!", &URL_SAFE_NO_PAD.encode("12:usr_x"), &URL_SAFE_NO_PAD.encode("x:evt_1")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
