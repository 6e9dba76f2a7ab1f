//! Errors as the API server answers them: a `Status` object with the HTTP code, the
//! reason clients switch on, and for invalid objects the field causes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// What an error is about, for `details`.
pub struct Subject<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

/// `Deployment.apps`, as a 422 names the kind (`Pod` for the core group).
fn qualified_kind(subject: &Subject<'_>) -> String {
    if subject.group.is_empty() { subject.kind.to_string() } else { format!("{}.{}", subject.kind, subject.group) }
}

fn details(subject: &Subject<'_>) -> Value {
    json!({"name": subject.name, "group": subject.group, "kind": subject.kind})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// A path that names nothing the server serves.
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn not_found(subject: Subject<'_>) -> ApiError {
        ApiError {
            details: Some(details(&subject)),
            ..ApiError::new(404, "NotFound", format!("{} \"{}\" not found", subject.kind, subject.name))
        }
    }

    pub fn already_exists(subject: Subject<'_>) -> ApiError {
        ApiError {
            details: Some(details(&subject)),
            ..ApiError::new(409, "AlreadyExists", format!("{} \"{}\" already exists", subject.kind, subject.name))
        }
    }

    pub fn conflict(subject: Subject<'_>, why: &str) -> ApiError {
        ApiError {
            details: Some(details(&subject)),
            ..ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{}\": {why}", subject.kind, subject.name),
            )
        }
    }

    pub fn stale(subject: Subject<'_>) -> ApiError {
        ApiError::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(subject: Subject<'_>, causes: Vec<(String, String, String)>) -> ApiError {
        // An aggregate of field errors as apimachinery prints one: duplicates dropped, one
        // error alone, several in brackets.
        let mut summary: Vec<String> = Vec::with_capacity(causes.len());
        for (field, message, _) in &causes {
            let line = if field.is_empty() { message.clone() } else { format!("{field}: {message}") };
            if !summary.contains(&line) {
                summary.push(line);
            }
        }
        let summary = if summary.len() == 1 { summary.remove(0) } else { format!("[{}]", summary.join(", ")) };
        let mut details = details(&subject);
        details["causes"] = causes
            .into_iter()
            .map(|(field, message, reason)| json!({"reason": reason, "message": message, "field": field}))
            .collect();
        ApiError {
            details: Some(details),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{} \"{}\" is invalid: {summary}", qualified_kind(&subject), subject.name),
            )
        }
    }

    /// What a simulated pod cannot do (`exec`, `attach`, `port-forward`, `cp`, `debug`):
    /// a 400 naming the pod, its node and what would work, as `logs` answers.
    pub fn simulated(pod: &str, node: &str, doing: &str) -> ApiError {
        ApiError {
            details: Some(json!({"name": pod, "kind": "pods"})),
            ..ApiError::bad_request(format!(
                "pod {pod} runs on simulated node {node}: simulated containers have no {doing} \
                 (pods on a container cluster's nodes do)"
            ))
        }
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        // StatusReasonUnknown is "", which Go leaves out (`omitempty`).
        if self.reason.is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.to_status().to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // A wait asked for in the Status is said in the header too, as the API server does.
        let retry_after = self.details.as_ref().and_then(|d| d.get("retryAfterSeconds")).and_then(Value::as_i64);
        if let Some(seconds) = retry_after.filter(|s| *s > 0) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
