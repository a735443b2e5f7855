//! The injection edit on a JSON object (the admission webhook's input), through the same
//! [`Node`] tree and the same pod edit as `sluice inject`, so both paths add exactly the same.

use serde_json::{Map, Number, Value};

use super::node::{Node, Scalar, Style};
use super::InjectOptions;

/// Injects a Pod given as JSON; `Ok(None)` when it is left alone (opted out, host network,
/// already injected), else the injected Pod.
pub fn inject_pod(pod: &Value, opts: &InjectOptions) -> Result<Option<Value>, String> {
    let mut node = to_node(pod);
    if !matches!(node, Node::Map(_)) {
        return Err("the pod is not a JSON object".into());
    }
    // `sluice inject` tells kinds apart by `kind`; admission requests may leave it out.
    if node.get("kind").is_none_or(Node::is_null) {
        node.set("kind", Node::str("Pod"));
    }
    if !super::inject_document(&mut node, opts)? {
        return Ok(None);
    }
    let mut out = to_value(&node);
    if pod.get("kind").is_none() {
        if let Value::Object(m) = &mut out {
            m.remove("kind");
        }
    }
    Ok(Some(out))
}

/// A JSON value as a YAML tree: strings quoted (so `"true"` stays a string), the rest plain.
pub fn to_node(v: &Value) -> Node {
    let plain = |text: String| {
        Node::Scalar(Scalar {
            text,
            style: Style::Plain,
            tag: None,
        })
    };
    match v {
        Value::Null => plain("null".into()),
        Value::Bool(b) => Node::bool(*b),
        Value::Number(n) => plain(n.to_string()),
        Value::String(s) => Node::Scalar(Scalar {
            text: s.clone(),
            style: Style::Double,
            tag: None,
        }),
        Value::Array(items) => Node::Seq(items.iter().map(to_node).collect()),
        Value::Object(m) => Node::Map(
            m.iter()
                .map(|(k, v)| (Scalar::string(k), to_node(v)))
                .collect(),
        ),
    }
}

/// A YAML tree as JSON, resolving plain scalars as YAML 1.2's core schema does (what
/// Kubernetes reads a manifest's `true`, `8080` and `null` as); quoted scalars are strings.
pub fn to_value(n: &Node) -> Value {
    match n {
        Node::Scalar(s) => scalar_value(s),
        Node::Seq(items) => Value::Array(items.iter().map(to_value).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.text.clone(), to_value(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

fn scalar_value(s: &Scalar) -> Value {
    let explicit_str = s.tag.as_deref() == Some("!!str");
    if s.style != Style::Plain || explicit_str {
        return Value::String(s.text.clone());
    }
    if s.is_null() {
        return Value::Null;
    }
    match s.text.as_str() {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = s.text.parse::<u64>() {
        return Value::Number(u.into());
    }
    let numeric = s
        .text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if numeric {
        if let Some(n) = s.text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_the_tree() {
        let v = json!({"a": "true", "b": true, "c": 8080, "d": "8080", "e": null,
                       "f": [1.5, "x y", {"g": -3}], "h": {}});
        assert_eq!(to_value(&to_node(&v)), v);
    }

    #[test]
    fn injects_like_the_manifest_path() {
        let pod = json!({"apiVersion": "v1", "metadata": {"name": "p", "labels": {"app": "a"}},
                         "spec": {"containers": [{"name": "app", "image": "app:1",
                                                  "ports": [{"containerPort": 8080}]}]}});
        let out = inject_pod(&pod, &InjectOptions::default())
            .unwrap()
            .unwrap();
        assert!(out.get("kind").is_none(), "no kind added: {out}");
        let containers = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1]["name"], "sluice-proxy");
        assert_eq!(containers[1]["ports"][0]["containerPort"], 15000);
        assert_eq!(
            out["metadata"]["labels"]["security.istio.io/tlsMode"],
            "istio"
        );
        assert_eq!(
            inject_pod(&out, &InjectOptions::default()).unwrap(),
            None,
            "never twice"
        );
        let mut host = pod.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert_eq!(inject_pod(&host, &InjectOptions::default()).unwrap(), None);
        assert!(inject_pod(&json!([1]), &InjectOptions::default()).is_err());
    }
}
