//! What one analysis found, for the next build to take from: the findings of each
//! VirtualService's own checks and of the DestinationRule subsets hold as long as everything
//! else is the same. A canary step edits one VirtualService; its 9,999 neighbours are not
//! analyzed again.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState as Fast;
use sluice_model::{Diagnostic, Resource, Spec};

use crate::compile::reuse::address;
use crate::registry::Registry;

/// The analysis findings of one build, by object address (stable and unique while the snapshot
/// that holds this memo holds the objects, which it does for the whole next build).
#[derive(Debug, Default)]
pub(crate) struct AnalysisMemo {
    /// Every object that is not a VirtualService, by address, in order: what the checks of one
    /// VirtualService read besides the VirtualService itself.
    context: Vec<usize>,
    /// The findings of each VirtualService's own checks (destinations, gateway references,
    /// dead rules).
    pub(super) per_vs: HashMap<usize, Vec<Diagnostic>, Fast>,
    /// The findings about DestinationRules and their subsets.
    pub(super) subsets: Vec<Diagnostic>,
    /// The registry the analysis built from the compile's services, when it needed one.
    pub(super) registry: Option<Arc<Registry>>,
    /// How many VirtualServices were checked again (the others kept their findings).
    pub(crate) reanalyzed: usize,
}

/// The objects that are not VirtualServices, by address, in order.
pub(super) fn context_of<R: std::borrow::Borrow<Resource>>(resources: &[R]) -> Vec<usize> {
    resources
        .iter()
        .map(std::borrow::Borrow::borrow)
        .filter(|r| !matches!(r.spec, Spec::VirtualService(_)))
        .map(address)
        .collect()
}

impl AnalysisMemo {
    /// A memo for a build whose non-VirtualService objects are `context`.
    pub(super) fn new(context: Vec<usize>) -> AnalysisMemo {
        AnalysisMemo {
            context,
            ..AnalysisMemo::default()
        }
    }

    /// This memo's findings when the build with `context` may take them: every object but the
    /// VirtualServices is the same.
    pub(super) fn usable_for(&self, context: &[usize]) -> Option<&AnalysisMemo> {
        (self.context == context).then_some(self)
    }
}
