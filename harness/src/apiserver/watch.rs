//! Watches: newline-delimited JSON events from a revision on, as long as the client
//! stays (or `timeoutSeconds`), with bookmarks when asked. A revision older than the
//! store's history is answered, as Kubernetes does, with an `ERROR` event carrying a
//! 410 `Status` in the stream.

use super::objects::{Filter, flag, from_bytes, from_entry, store_error, with_type};
use super::resources::Resource;
use super::status::ApiError;
use super::table::{self, Include};
use super::{ApiServer, Query, Representation, Target};
use crate::store::{Event, EventKind, StoreError};
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Encoded events waiting for a slow client.
const CLIENT_BUFFER: usize = 256;

struct Encoder {
    resource: &'static Resource,
    representation: Representation,
    include: Include,
}

impl Encoder {
    fn line(&self, kind: &str, object: Value) -> Bytes {
        let object = match self.representation {
            Representation::Json => with_type(self.resource, object),
            Representation::Metadata => super::partial(&object),
            Representation::Table => table::table(self.resource, &[object], None, None, self.include),
        };
        let mut line = json!({"type": kind, "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        let mut line = json!({"type": "BOOKMARK", "object": object}).to_string();
        line.push('\n');
        Bytes::from(line)
    }
}

fn error_line(error: &ApiError) -> Bytes {
    let mut line = json!({"type": "ERROR", "object": error.to_status()}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// What a store event means to a watcher with a selector: an object entering the
/// selection is ADDED, one leaving it DELETED.
fn translate(filter: &Filter, everything: bool, event: &Event) -> Result<Option<(&'static str, Value)>, ApiError> {
    match event.kind {
        EventKind::Put => {
            let object = from_bytes(event.value.as_deref().unwrap_or_default(), event.revision)?;
            let now = filter.matches(&object);
            let before = match &event.prev {
                None => None,
                Some(_) if everything => return Ok(Some(("MODIFIED", object))),
                Some(prev) => Some(from_bytes(prev, event.revision)?).filter(|p| filter.matches(p)),
            };
            Ok(match (now, before) {
                (true, Some(_)) => Some(("MODIFIED", object)),
                (true, None) => Some(("ADDED", object)),
                // Leaving the selection: the last state that matched, at this revision.
                (false, Some(before)) => Some(("DELETED", before)),
                (false, None) => None,
            })
        }
        EventKind::Delete => {
            let object = from_bytes(event.prev.as_deref().unwrap_or_default(), event.revision)?;
            Ok(filter.matches(&object).then_some(("DELETED", object)))
        }
    }
}

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    target: &Target,
    query: &Query,
    representation: Representation,
) -> Result<Response, ApiError> {
    let resource = target.resource;
    let filter = Filter::from_query(resource, query)?;
    let everything = !query.contains_key("labelSelector") && !query.contains_key("fieldSelector");
    let prefix = resource.prefix(target.namespace.as_deref());
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = match query.get("timeoutSeconds") {
        Some(seconds) => Duration::from_secs(
            seconds.parse().map_err(|_| ApiError::bad_request("timeoutSeconds must be a whole number"))?,
        ),
        None => server.options.watch_timeout,
    };
    let encoder = Encoder { resource, representation, include: Include::from_query(query) };
    let requested = query.get("resourceVersion").map(String::as_str).filter(|v| !v.is_empty() && *v != "0");
    // With no revision (or "0"), a watch starts with the current state as ADDED events.
    let mut initial = Vec::new();
    let from = match requested {
        Some(text) if !send_initial => text
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("resourceVersion \"{text}\" is not valid")))?,
        _ => {
            let listing = server.store.list(&prefix, None, None).await.map_err(|e| store_error(resource, "", e))?;
            for entry in &listing.entries {
                let object = from_entry(entry)?;
                if filter.matches(&object) {
                    initial.push(object);
                }
            }
            listing.revision
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
    match server.store.watch(&prefix, from).await {
        Ok(mut events) => {
            let interval = server.options.bookmark_interval;
            tokio::spawn(async move {
                for object in initial {
                    if tx.send(encoder.line("ADDED", object)).await.is_err() {
                        return;
                    }
                }
                if send_initial && tx.send(encoder.bookmark(from, true)).await.is_err() {
                    return;
                }
                let mut last = from;
                let deadline = tokio::time::sleep(timeout);
                tokio::pin!(deadline);
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                loop {
                    let line = tokio::select! {
                        _ = &mut deadline => return,
                        _ = ticker.tick(), if bookmarks => encoder.bookmark(last, false),
                        // A client that hung up ends the watch at once.
                        _ = tx.closed() => return,
                        event = events.recv() => match event {
                            None => return,
                            Some(Err(error)) => {
                                let _ = tx.send(error_line(&store_error(resource, "", error))).await;
                                return;
                            }
                            Some(Ok(event)) if everything && encoder.representation == Representation::Json => {
                                last = event.revision;
                                // The same line for every watcher of the whole kind: made once.
                                // Which kind's form: every served kind is one static row.
                                let form = std::ptr::from_ref(encoder.resource) as usize;
                                let encoded = event.encoded.get_or_try(form, || {
                                    translate(&filter, true, &event)
                                        .map(|line| line.map(|(kind, object)| encoder.line(kind, object)).unwrap_or_default())
                                });
                                match encoded {
                                    Ok(line) if line.is_empty() => continue,
                                    Ok(line) => line,
                                    Err(error) => {
                                        let _ = tx.send(error_line(&error)).await;
                                        return;
                                    }
                                }
                            }
                            Some(Ok(event)) => {
                                last = event.revision;
                                match translate(&filter, everything, &event) {
                                    Ok(Some((kind, object))) => encoder.line(kind, object),
                                    Ok(None) => continue,
                                    Err(error) => {
                                        let _ = tx.send(error_line(&error)).await;
                                        return;
                                    }
                                }
                            }
                        },
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            });
        }
        Err(error @ StoreError::Compacted { .. }) => {
            let _ = tx.try_send(error_line(&store_error(resource, "", error)));
        }
        Err(error) => return Err(store_error(resource, "", error)),
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<Bytes, std::convert::Infallible>(line), rx))
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
