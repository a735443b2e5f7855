//! `exportTo`: which namespaces see a VirtualService, DestinationRule or ServiceEntry.

use sluice_model::{Resource, Spec};

/// Whether an object of namespace `own` with this `exportTo` is visible in namespace `target`.
///
/// Istio's values: `.` is the object's own namespace, `*` every namespace, `~` none, anything
/// else a namespace by name. An empty list takes MeshConfig's default, which is `*`.
pub fn exported_to(export_to: &[String], own: &str, target: &str) -> bool {
    if export_to.is_empty() {
        return true;
    }
    export_to.iter().any(|e| match e.as_str() {
        "*" => true,
        "~" => false,
        "." => own == target,
        ns => ns == target,
    })
}

/// Whether `r` is visible to a proxy of namespace `namespace` (kinds without `exportTo` always
/// are).
pub fn visible_in(r: &Resource, namespace: &str) -> bool {
    let export_to = match &r.spec {
        Spec::VirtualService(vs) => &vs.export_to,
        Spec::DestinationRule(dr) => &dr.export_to,
        Spec::ServiceEntry(se) => &se.export_to,
        _ => return true,
    };
    exported_to(export_to, &r.metadata.namespace, namespace)
}

/// Whether some namespace sees both objects: one of namespace `a_ns` exported by `a`, and one of
/// `b_ns` exported by `b` (a VirtualService and the service it routes to, say).
pub fn audiences_overlap(a: &[String], a_ns: &str, b: &[String], b_ns: &str) -> bool {
    let resolve = |list: &[String], own: &str| -> Vec<String> {
        if list.is_empty() {
            return vec!["*".into()];
        }
        list.iter()
            .filter(|e| e.as_str() != "~")
            .map(|e| if e == "." { own.to_string() } else { e.clone() })
            .collect()
    };
    let (a, b) = (resolve(a, a_ns), resolve(b, b_ns));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let everywhere = |v: &[String]| v.iter().any(|e| e == "*");
    everywhere(&a) || everywhere(&b) || a.iter().any(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_export_to_form_decides_as_istio_does() {
        // (exportTo, object namespace, proxy namespace, visible)
        let table: &[(&[&str], &str, &str, bool)] = &[
            (&[], "a", "a", true),
            (&[], "a", "b", true),
            (&["*"], "a", "b", true),
            (&["."], "a", "a", true),
            (&["."], "a", "b", false),
            (&["~"], "a", "a", false),
            (&["~"], "a", "b", false),
            (&["b"], "a", "b", true),
            (&["b"], "a", "a", false),
            (&["b"], "a", "c", false),
            (&[".", "b"], "a", "a", true),
            (&[".", "b"], "a", "b", true),
            (&[".", "b"], "a", "c", false),
            (&["a"], "a", "a", true),
        ];
        for (export_to, own, target, want) in table {
            assert_eq!(
                exported_to(&list(export_to), own, target),
                *want,
                "exportTo {export_to:?} of an object in {own}, seen from {target}"
            );
        }
    }

    #[test]
    fn two_objects_share_an_audience_when_one_namespace_sees_both() {
        /// (a's exportTo, a's namespace, b's exportTo, b's namespace, overlap)
        type Row<'a> = (&'a [&'a str], &'a str, &'a [&'a str], &'a str, bool);
        let table: &[Row<'_>] = &[
            (&[], "a", &[], "b", true),
            (&["."], "a", &["."], "b", false),
            (&["."], "a", &["."], "a", true),
            (&["."], "a", &["a"], "b", true),
            (&["."], "a", &["*"], "b", true),
            (&["c"], "a", &["."], "b", false),
            (&["c", "d"], "a", &["d"], "b", true),
            (&["."], "a", &["~"], "a", false),
        ];
        for (a, a_ns, b, b_ns, want) in table {
            assert_eq!(
                audiences_overlap(&list(a), a_ns, &list(b), b_ns),
                *want,
                "{a:?} of {a_ns} and {b:?} of {b_ns}"
            );
        }
    }
}
