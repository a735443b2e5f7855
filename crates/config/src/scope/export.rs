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
}
