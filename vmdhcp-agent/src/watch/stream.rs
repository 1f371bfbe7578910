//! The IPPool's list and watch: kube-runtime's watcher (the same requests, events, errors and
//! states), except for how a response is read.
//!
//! kube-client reads a watch response through a line codec whose buffer grows to the longest
//! event and keeps that size for as long as the watch lasts (up to 290 s, then the next watch
//! starts small again). An IPPool's event is the whole object: about 1 MB at 30,000
//! allocations, so after every change the agent held a second, raw copy of the pool next to its
//! lease table, most of the time (the status changes with every VM added). A list response was
//! copied once more into a `String` before it was parsed.
//!
//! Here each event is decoded as soon as its line is complete, straight from the bytes (the
//! allocations' strings are borrowed, not copied; see [`crate::table::Allocations`]), and a
//! line buffer that grew past [`KEEP`] is freed right after; a list response is parsed from
//! the body as received.
//!
//! Both requests also ask for their own connection (`Connection: close`), and a watch is ended
//! after a large event and resumed from it (see [`events`]). hyper's read buffer grows with
//! large responses (to several hundred kilobytes for a pool's list or event) and keeps its size
//! for the connection's life; the client's pool reuses a connection for the next request, so
//! the buffer grown by the first list lived on in every later watch. This way it goes as soon
//! as the list or the event is read, for one TLS handshake per watch.
//!
//! Not kept from kube-runtime: paged lists (the list is filtered to one name) and streaming
//! lists (`sendInitialEvents`, not used by the agent).

use std::collections::VecDeque;
use std::time::Duration;

use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use kube::Client;
use kube::api::{ListParams, WatchParams};
use kube::client::Body;
use kube::core::{Request, Status, WatchEvent};
use kube::runtime::watcher::{Error, Event};
use serde::Deserialize;

use crate::pool::Pool;

/// The server ends a watch after this many seconds (kube-runtime's default); a new one resumes
/// from the last resourceVersion.
const WATCH_TIMEOUT_SECS: u32 = 290;

/// A watch that sends nothing for this long is taken for dead and started again: the server
/// should have ended it after [`WATCH_TIMEOUT_SECS`] (290 s, plus kube-runtime's margin of 5).
const IDLE: Duration = Duration::from_secs(295);

/// A line longer than this is a large event: its buffer is freed once it is decoded instead of
/// kept for the next line, and the watch is resumed on a new connection (see [`events`]).
/// Bookmarks and small events fit; a pool's event at this size has about 1,800 allocations.
pub const KEEP: usize = 64 * 1024;

/// Splits a watch response into lines (events), holding at most one incomplete line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds the next chunk of the response; calls `line` with every line it completes, without
    /// the line end (`\n` or `\r\n`).
    pub fn feed(&mut self, mut chunk: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(end);
            chunk = &rest[1..];
            if self.partial.is_empty() {
                line(trim_cr(head));
            } else {
                self.partial.extend_from_slice(head);
                line(trim_cr(&self.partial));
                self.release();
            }
        }
        self.partial.extend_from_slice(chunk);
    }

    /// The response ended: its last line, if it had no line end.
    pub fn finish(&mut self, line: impl FnOnce(&[u8])) {
        if !self.partial.is_empty() {
            line(trim_cr(&self.partial));
        }
        self.partial = Vec::new();
    }

    /// Bytes the buffer holds on to.
    pub fn capacity(&self) -> usize {
        self.partial.capacity()
    }

    fn release(&mut self) {
        if self.partial.capacity() > KEEP {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One line of a watch response, as kube-client reads it: an event; a `Status` (the server's
/// error) as [`kube::Error::Api`]; anything else as [`kube::Error::SerdeError`]. `None` for a
/// line that ends early (an empty line, or the cut-off end of a response), which kube-client
/// skips too.
pub fn decode(line: &[u8]) -> Option<Result<WatchEvent<Pool>, kube::Error>> {
    match serde_json::from_slice::<WatchEvent<Pool>>(line) {
        Ok(event) => Some(Ok(event)),
        Err(e) if e.is_eof() => None,
        Err(e) => Some(Err(match serde_json::from_slice::<Status>(line) {
            Ok(status) => kube::Error::Api(status.boxed()),
            Err(_) => kube::Error::SerdeError(e),
        })),
    }
}

/// The events of a watch response whose body arrives as `chunks`. A connection that ends
/// without a clean end of the body (the server or a proxy dropping a long watch) ends the
/// events quietly, as in kube-client: the watch is resumed. Any other read error is passed
/// on, and ends them.
///
/// A line longer than [`KEEP`] ends them too, once the events read with it are passed on:
/// the response is dropped, and its connection with hyper's read buffer, which such an event
/// grew to several hundred kilobytes. The watch resumes from the last event's version on a
/// new connection, one request per large change; the part of a next event already received
/// comes again in the new watch.
pub fn events<S, D>(chunks: S) -> impl Stream<Item = Result<WatchEvent<Pool>, kube::Error>>
where
    S: Stream<Item = Result<D, kube::Error>> + Unpin,
    D: AsRef<[u8]>,
{
    let state = (Some(chunks), Lines::default(), VecDeque::new());
    futures::stream::unfold(state, |(mut chunks, mut lines, mut ready)| async move {
        loop {
            if let Some(event) = ready.pop_front() {
                return Some((event, (chunks, lines, ready)));
            }
            let source = chunks.as_mut()?;
            let mut large = false;
            let mut push = |line: &[u8]| {
                large |= line.len() > KEEP;
                ready.extend(decode(line));
            };
            match source.next().await {
                Some(Ok(chunk)) => {
                    lines.feed(chunk.as_ref(), &mut push);
                    if large {
                        lines.finish(|_| {});
                        chunks = None;
                    }
                }
                Some(Err(e)) => {
                    lines.finish(|_| {});
                    chunks = None;
                    if !is_cut_off(&e) {
                        ready.push_back(Err(e));
                    }
                }
                None => {
                    lines.finish(&mut push);
                    chunks = None;
                }
            }
        }
    })
}

/// Whether a read error means the connection ended early or went quiet, which kube-client
/// takes for the normal end of a long watch: an `UnexpectedEof` or `TimedOut` anywhere in the
/// error's chain, or hyper's chunked decoder saying so in its text.
fn is_cut_off(error: &kube::Error) -> bool {
    if error.to_string().contains("unexpected EOF during chunk") {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::TimedOut
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Where the pool is read: the IPPool `name` of the collection at an `Api`'s `resource_url`,
/// through `client`.
#[derive(Clone)]
pub struct Source {
    client: Client,
    request: Request,
    selector: String,
}

type Events = std::pin::Pin<Box<dyn Stream<Item = Result<WatchEvent<Pool>, kube::Error>> + Send>>;

impl Source {
    /// Reads IPPools at `url` filtered to `name`.
    pub fn new(client: Client, url: &str, name: &str) -> Self {
        Self {
            client,
            request: Request::new(url),
            selector: format!("metadata.name={name}"),
        }
    }

    async fn list(&self) -> Result<List, kube::Error> {
        let params = ListParams::default().fields(&self.selector);
        let mut request = self
            .request
            .list(&params)
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("list");
        own_connection(&mut request);
        let body = read_all(self.send(request).await?).await?;
        serde_json::from_slice(&body).map_err(kube::Error::SerdeError)
    }

    async fn watch(&self, version: &str) -> Result<Events, kube::Error> {
        let params = WatchParams::default()
            .fields(&self.selector)
            .timeout(WATCH_TIMEOUT_SECS);
        let mut request = self
            .request
            .watch(&params, version)
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("watch");
        own_connection(&mut request);
        // As kube-client: an event at a time, uncompressed.
        request.headers_mut().insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static("identity"),
        );
        let body = self.send(request).await?;
        Ok(Box::pin(events(body.into_data_stream())))
    }

    /// Sends `request`; an error status becomes [`kube::Error::Api`] with the server's
    /// `Status` (or one made of the body's text), as in kube-client.
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<Body, kube::Error> {
        let response = self.client.send(request.map(Body::from)).await?;
        let code = response.status();
        if !(code.is_client_error() || code.is_server_error()) {
            return Ok(response.into_body());
        }
        let body = read_all(response.into_body()).await?;
        let status = serde_json::from_slice::<Status>(&body).unwrap_or_else(|_| {
            Status::failure(
                String::from_utf8_lossy(&body).trim(),
                "Failed to parse error data",
            )
            .with_code(code.as_u16())
        });
        Err(kube::Error::Api(status.boxed()))
    }
}

/// Closes the connection after `request`'s response (see the module docs).
fn own_connection(request: &mut http::Request<Vec<u8>>) {
    request.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
}

/// A list response: kube's `ObjectList` without its flattened type fields, which make serde
/// copy the whole response into an intermediate tree before reading it.
#[derive(Deserialize)]
struct List {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Option<Vec<Pool>>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: Option<String>,
}

/// The whole of `body`, appended to one buffer as it arrives (not collected in pieces and
/// then copied together, which holds the response twice).
async fn read_all(mut body: Body) -> Result<Vec<u8>, kube::Error> {
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            all.extend_from_slice(&data);
        }
    }
    Ok(all)
}

/// Where the list-and-watch stands.
enum State {
    /// Nothing listed (at the start, and after a `410 Gone`).
    Empty,
    /// Listing.
    Listing,
    /// Listed: the pools still to pass on, then the list's version.
    Listed {
        pools: VecDeque<Pool>,
        version: String,
    },
    /// A watch to start from `version`.
    Resume { version: String },
    /// Watching.
    Watching { version: String, events: Events },
}

/// The pool's events, as kube-runtime's `watcher` yields them: `Init`, the listed pool
/// (`InitApply`), `InitDone`, then `Apply`/`Delete` for every change; each error is passed on
/// and the next poll tries again from where it was (a `410 Gone` from the list). Never ends.
pub fn watch(source: Source) -> impl Stream<Item = Result<Event<Pool>, Error>> + Send {
    futures::stream::unfold((source, State::Empty), |(source, mut state)| async move {
        loop {
            let (item, next) = step(&source, state).await;
            state = next;
            if let Some(item) = item {
                return Some((item, (source, state)));
            }
        }
    })
}

async fn step(source: &Source, state: State) -> (Option<Result<Event<Pool>, Error>>, State) {
    match state {
        State::Empty => (Some(Ok(Event::Init)), State::Listing),
        State::Listing => match source.list().await {
            Ok(list) => match list.metadata.resource_version.filter(|v| !v.is_empty()) {
                Some(version) => (
                    None,
                    State::Listed {
                        pools: list.items.unwrap_or_default().into(),
                        version,
                    },
                ),
                // Back to listing, not to `Empty`: its `Init` is an `Ok` item, which would
                // reset the caller's retry delay to the minimum on every failed list.
                None => (Some(Err(Error::NoResourceVersion)), State::Listing),
            },
            Err(e) => (Some(Err(Error::InitialListFailed(e))), State::Listing),
        },
        State::Listed { mut pools, version } => match pools.pop_front() {
            Some(pool) => (
                Some(Ok(Event::InitApply(pool))),
                State::Listed { pools, version },
            ),
            None => (Some(Ok(Event::InitDone)), State::Resume { version }),
        },
        State::Resume { version } => match source.watch(&version).await {
            Ok(events) => (None, State::Watching { version, events }),
            Err(e) => (
                Some(Err(Error::WatchStartFailed(e))),
                State::Resume { version },
            ),
        },
        State::Watching {
            version,
            mut events,
        } => {
            let next = tokio::time::timeout(IDLE, events.next())
                .await
                .unwrap_or(None);
            match next {
                Some(Ok(WatchEvent::Added(pool) | WatchEvent::Modified(pool))) => {
                    changed(pool, events, Event::Apply)
                }
                Some(Ok(WatchEvent::Deleted(pool))) => changed(pool, events, Event::Delete),
                Some(Ok(WatchEvent::Bookmark(mark))) => (
                    None,
                    State::Watching {
                        version: mark.metadata.resource_version,
                        events,
                    },
                ),
                Some(Ok(WatchEvent::Error(status))) => {
                    let next = if status.code == 410 {
                        State::Empty
                    } else {
                        State::Watching { version, events }
                    };
                    (Some(Err(Error::WatchError(status))), next)
                }
                Some(Err(e)) => (
                    Some(Err(Error::WatchFailed(e))),
                    State::Watching { version, events },
                ),
                None => (None, State::Resume { version }),
            }
        }
    }
}

/// A changed or deleted pool: passed on, and its version is where the next watch resumes.
fn changed(
    pool: Pool,
    events: Events,
    event: fn(Pool) -> Event<Pool>,
) -> (Option<Result<Event<Pool>, Error>>, State) {
    match pool
        .metadata
        .resource_version
        .clone()
        .filter(|v| !v.is_empty())
    {
        Some(version) => (Some(Ok(event(pool))), State::Watching { version, events }),
        None => (Some(Err(Error::NoResourceVersion)), State::Empty),
    }
}

#[cfg(test)]
mod tests;
