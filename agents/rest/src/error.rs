//! The one place where errors become HTTP answers: [`ApiError`] wraps a
//! [`RestError`] and renders it as JSON with its kind's status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openapi::{ErrorKind, RestError};

/// A failed request: the [`RestError`] body and, rarely, a status other
/// than its kind's (405).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub error: RestError,
    status: Option<StatusCode>,
}

impl ApiError {
    /// Bad input found by the router (400 InvalidArgument).
    pub fn invalid(message: impl Into<String>) -> Self {
        RestError::invalid(message).into()
    }

    /// A body that is not the JSON the endpoint takes (400 Deserialize).
    pub fn deserialize(message: impl Into<String>) -> Self {
        RestError::new(ErrorKind::Deserialize, message).into()
    }

    /// Answer with `status` instead of the kind's own.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.error.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }
}

impl From<RestError> for ApiError {
    fn from(error: RestError) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthenticated = self.error.kind == ErrorKind::Unauthenticated;
        let mut response = (status, Json(self.error)).into_response();
        if unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
