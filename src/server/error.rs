//! The one error type of the HTTP handlers: a safe message for the client, the detail in the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: &str = "2";

/// An error answered to the client. Only the bad-request, forbidden and unavailable variants
/// carry text the client sees, and that text is written by us; the detail of an internal error (which may hold paths or
/// system messages) only goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such track or file, or a path that is refused (404; indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    /// A malformed request parameter (400); the message is shown to the client.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request is understood but refused (403); the message is shown to the client.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The server cannot take the request now (503); the message is shown to the client.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything that went wrong on our side (500); the detail is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An internal error with the detail `what` (logged when the response is made).
    pub fn internal(what: impl std::fmt::Display) -> Self {
        ApiError::Internal(what.to_string())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message the client sees.
    fn public_message(&self) -> &str {
        match self {
            ApiError::NotFound => "not found",
            ApiError::BadRequest(message)
            | ApiError::Forbidden(message)
            | ApiError::Unavailable(message) => message,
            ApiError::Internal(_) => "internal server error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let status = self.status();
        let body = serde_json::json!({ "error": self.public_message(), "status": status.as_u16() });
        let mut response = (status, Json(body)).into_response();
        // A track can appear later (and a fault can be fixed): keep errors out of caches.
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 9110 10.2.3: when to try again (a bucket that stopped answering, a
            // shutdown); a CDN or player retries rather than giving up.
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let r = ApiError::internal("open /srv/library/tracks/x: permission denied").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            ApiError::internal("/secret").public_message(),
            "internal server error"
        );
        assert_eq!(ApiError::NotFound.status(), StatusCode::NOT_FOUND);
    }
}
