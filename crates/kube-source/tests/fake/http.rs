//! HTTP side of the fake API server: routing, discovery (networking.istio.io,
//! security.istio.io and rollouts.sluice.dev), list, watch, get, Event creation, and the writes
//! the canary controller makes: create and replace (with resourceVersion conflicts, for
//! Leases), merge patches of objects and of their `status` subresource.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::store::{merge_patch, Collection, Msg, Shared, COLLECTIONS};

type Body = UnsyncBoxBody<Bytes, Infallible>;

pub async fn serve(listener: tokio::net::TcpListener, store: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(route(req, store).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn full(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn route(req: Request<Incoming>, store: Shared) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let accept = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    store.lock().unwrap().requests.push(format!(
        "{} {}?{} [{accept}]",
        req.method(),
        path,
        req.uri().query().unwrap_or("")
    ));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    if method != hyper::Method::GET {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if method == hyper::Method::POST && segs.last() == Some(&"events") {
            store.lock().unwrap().posted_events.push(v.clone());
            return full(StatusCode::CREATED, v);
        }
        let (code, answer) = write(&store, &method, &segs, v);
        store
            .lock()
            .unwrap()
            .writes
            .push((method.to_string(), path.clone(), code.as_u16()));
        return full(code, answer);
    }
    match segs.as_slice() {
        ["apis", g @ ("networking.istio.io" | "security.istio.io" | "rollouts.sluice.dev")] => {
            discovery_group(&store, g)
        }
        ["apis", g @ ("networking.istio.io" | "security.istio.io" | "rollouts.sluice.dev"), v] => {
            discovery_resources(&store, g, v)
        }
        ["api", "v1", rest @ ..] => collection(&store, "", "v1", rest, &query, &accept),
        ["apis", group, version, rest @ ..] => {
            collection(&store, group, version, rest, &query, &accept)
        }
        _ => full(StatusCode::NOT_FOUND, status(404, "NotFound", "not found")),
    }
}

fn discovery_group(store: &Shared, group: &str) -> Response<Body> {
    let s = store.lock().unwrap();
    let served = match group {
        "security.istio.io" => &s.security_versions,
        "rollouts.sluice.dev" => &s.rollouts_versions,
        _ => &s.istio_versions,
    };
    if served.is_empty() {
        return full(
            StatusCode::NOT_FOUND,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    }
    let versions: Vec<Value> = served
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    full(
        StatusCode::OK,
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
               "versions": versions, "preferredVersion": versions[0]}),
    )
}

fn discovery_resources(store: &Shared, group: &str, version: &str) -> Response<Body> {
    let s = store.lock().unwrap();
    let resources: Vec<Value> = COLLECTIONS
        .iter()
        .filter(|c| c.group == group)
        .filter(|c| !s.not_served.contains(&(version_static(version), c.kind)))
        .flat_map(|c| {
            [
                json!({"name": c.plural, "singularName": "", "namespaced": true, "kind": c.kind,
                       "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}),
                json!({"name": format!("{}/status", c.plural), "singularName": "", "namespaced": true,
                       "kind": c.kind, "verbs": ["get", "patch", "update"]}),
            ]
        })
        .collect();
    full(
        StatusCode::OK,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": format!("{group}/{version}"), "resources": resources}),
    )
}

fn version_static(v: &str) -> &'static str {
    ["v1", "v1beta1", "v1alpha3", "v1alpha1"]
        .into_iter()
        .find(|x| *x == v)
        .unwrap_or("")
}

fn api_version(c: &Collection, version: &str) -> String {
    if c.group.is_empty() {
        version.to_string()
    } else {
        format!("{}/{version}", c.group)
    }
}

/// Shapes an object as served: its apiVersion for the request, or metadata only.
fn serve_object(obj: &Value, api_version: &str, meta_only: bool) -> Value {
    if meta_only {
        return json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                      "metadata": obj["metadata"]});
    }
    let mut o = obj.clone();
    o["apiVersion"] = json!(api_version);
    o
}

fn collection(
    store: &Shared,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &HashMap<String, String>,
    accept: &str,
) -> Response<Body> {
    let (ns, plural) = match rest {
        // A namespace by name (cluster-scoped; the store files it under any namespace).
        ["namespaces", name] if group.is_empty() => {
            let s = store.lock().unwrap();
            if s.failing.contains(&"namespaces") {
                return full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    status(500, "InternalError", "etcd is down"),
                );
            }
            let found = s
                .objects
                .get("namespaces")
                .into_iter()
                .flatten()
                .find(|((_, n), _)| n == name)
                .map(|(_, o)| serve_object(o, "v1", false));
            return match found {
                Some(o) => full(StatusCode::OK, o),
                None => full(
                    StatusCode::NOT_FOUND,
                    status(404, "NotFound", &format!("namespaces \"{name}\" not found")),
                ),
            };
        }
        [plural] => (None, *plural),
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural),
        ["namespaces", ns, plural, name] | ["namespaces", ns, plural, name, "status"] => {
            let Some(c) = COLLECTIONS
                .iter()
                .find(|c| c.group == group && c.plural == *plural)
            else {
                return full(StatusCode::NOT_FOUND, status(404, "NotFound", "not found"));
            };
            let s = store.lock().unwrap();
            return match s
                .objects
                .get(c.plural)
                .and_then(|o| o.get(&(ns.to_string(), name.to_string())))
            {
                Some(o) => full(
                    StatusCode::OK,
                    serve_object(o, &api_version(c, version), false),
                ),
                None => full(
                    StatusCode::NOT_FOUND,
                    status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
                ),
            };
        }
        _ => return full(StatusCode::NOT_FOUND, status(404, "NotFound", "not found")),
    };
    let Some(c) = COLLECTIONS
        .iter()
        .find(|c| c.group == group && c.plural == plural)
    else {
        return full(StatusCode::NOT_FOUND, status(404, "NotFound", "not found"));
    };
    let av = api_version(c, version);
    let meta_only = accept.contains("as=PartialObjectMetadata");
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return watch(store, c, ns, av, meta_only, from);
    }
    let mut s = store.lock().unwrap();
    if s.failing.contains(&c.plural) {
        return full(
            StatusCode::INTERNAL_SERVER_ERROR,
            status(500, "InternalError", "etcd is down"),
        );
    }
    *s.lists.entry(c.plural).or_default() += 1;
    let items: Vec<Value> = s
        .objects
        .get(c.plural)
        .into_iter()
        .flatten()
        .filter(|((ons, _), _)| ns.as_ref().is_none_or(|n| n == ons))
        .map(|(_, o)| serve_object(o, &av, meta_only))
        .collect();
    let (kind, list_av) = if meta_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (format!("{}List", c.kind), av.clone())
    };
    full(
        StatusCode::OK,
        json!({"kind": kind, "apiVersion": list_av,
               "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
    )
}

/// Counts a watch as open until its stream task ends.
struct OpenWatch(Shared);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.lock() {
            s.open_watches -= 1;
        }
    }
}

fn line(v: Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn watch(
    store: &Shared,
    c: &'static Collection,
    ns: Option<String>,
    av: String,
    meta_only: bool,
    from: u64,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (replay, mut events, mut kill, gone) = {
        let mut s = store.lock().unwrap();
        s.open_watches += 1;
        let gone = from < s.compacted;
        let replay: Vec<Bytes> = s
            .history
            .get(c.plural)
            .into_iter()
            .flatten()
            .filter(|r| r.rv > from && ns.as_ref().is_none_or(|n| *n == r.ns))
            .map(|r| {
                line(json!({"type": r.kind, "object": serve_object(&r.object, &av, meta_only)}))
            })
            .collect();
        (replay, s.events.subscribe(), s.kill.subscribe(), gone)
    };
    let store = store.clone();
    tokio::spawn(async move {
        let _open = OpenWatch(store);
        if gone {
            let msg = format!("too old resource version: {from}");
            let _ = tx
                .send(line(
                    json!({"type": "ERROR", "object": status(410, "Expired", &msg)}),
                ))
                .await;
            return;
        }
        for l in replay {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        kill.borrow_and_update();
        loop {
            let msg = tokio::select! {
                m = events.recv() => m,
                _ = kill.changed() => return,
                _ = tx.closed() => return,
            };
            let out = match msg {
                Ok(Msg::Event {
                    plural,
                    ns: ens,
                    kind,
                    object,
                    ..
                }) => {
                    if plural != c.plural || ns.as_ref().is_some_and(|n| *n != ens) {
                        continue;
                    }
                    json!({"type": kind, "object": serve_object(&object, &av, meta_only)})
                }
                Ok(Msg::Bookmark(rv)) => {
                    let kind = if meta_only {
                        "PartialObjectMetadata"
                    } else {
                        c.kind
                    };
                    let bav = if meta_only {
                        "meta.k8s.io/v1"
                    } else {
                        av.as_str()
                    };
                    json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": bav,
                           "metadata": {"resourceVersion": rv.to_string()}}})
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(line(out)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A write: create (POST to a collection), replace (PUT, refused with 409 when the body's
/// resourceVersion is not the live one), merge patch (PATCH) of an object or of its `status`.
fn write(
    store: &Shared,
    method: &hyper::Method,
    segs: &[&str],
    body: Value,
) -> (StatusCode, Value) {
    let not_found = || (StatusCode::NOT_FOUND, status(404, "NotFound", "not found"));
    let (group, version, rest) = match segs {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return not_found(),
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None, false),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name), false),
        ["namespaces", ns, plural, name, "status"] => (*ns, *plural, Some(*name), true),
        _ => return not_found(),
    };
    let Some(c) = COLLECTIONS
        .iter()
        .find(|c| c.group == group && c.plural == plural)
    else {
        return not_found();
    };
    let av = api_version(c, version);
    let mut s = store.lock().unwrap();
    if s.failing.contains(&c.plural) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            status(500, "InternalError", "etcd is down"),
        );
    }
    let body_name = body["metadata"]["name"].as_str().map(str::to_string);
    let key_name = name.map(str::to_string).or(body_name);
    let Some(key_name) = key_name else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            status(422, "Invalid", "name required"),
        );
    };
    let live = s
        .objects
        .get(c.plural)
        .and_then(|o| o.get(&(ns.to_string(), key_name.clone())))
        .cloned();
    let conflict = |what: &str| {
        (
            StatusCode::CONFLICT,
            status(
                409,
                "Conflict",
                &format!(
                    "Operation cannot be fulfilled on {} \"{key_name}\": {what}",
                    c.plural
                ),
            ),
        )
    };
    let mut obj = match (method.as_str(), live) {
        ("POST", Some(_)) => {
            return (
                StatusCode::CONFLICT,
                status(
                    409,
                    "AlreadyExists",
                    &format!("{} \"{key_name}\" already exists", c.plural),
                ),
            )
        }
        ("POST", None) => body,
        ("PUT", Some(live)) => {
            if body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
                return conflict("the object has been modified; please apply your changes to the latest version and try again");
            }
            if sub {
                let mut o = live;
                o["status"] = body["status"].clone();
                o
            } else {
                let mut o = body;
                o["status"] = live["status"].clone();
                o
            }
        }
        ("PATCH", Some(mut live)) => {
            if sub {
                // The status subresource ignores everything but `status`.
                let patch = json!({"status": body["status"].clone()});
                merge_patch(&mut live, &patch);
            } else {
                let mut patch = body;
                if let Some(p) = patch.as_object_mut() {
                    p.remove("status");
                }
                merge_patch(&mut live, &patch);
            }
            live
        }
        _ => return not_found(),
    };
    obj["kind"] = json!(c.kind);
    obj["apiVersion"] = json!(av);
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["name"] = json!(key_name);
    let created = method == hyper::Method::POST;
    s.put(obj.clone());
    let stored = s
        .objects
        .get(c.plural)
        .and_then(|o| o.get(&(ns.to_string(), key_name.clone())))
        .cloned()
        .unwrap_or(obj);
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, serve_object(&stored, &av, false))
}
