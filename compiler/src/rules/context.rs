//! What the rules are given. Several rules read the same parts of an object (its
//! containers, their parsed images and resources) or of a run (which pods each Service
//! selects, which objects the input defines): those are worked out once, by the first
//! rule that asks, and shared, so that a rule per file costs no more than one walk did.

use super::facts::{self, PodFacts};
use super::resources::ContainerResources;
use super::schedule::ClusterShape;
use super::service::Selections;
use super::{join, reference};
use crate::image::{ImageError, ImageReference};
use crate::object::ObjectInfo;
use crate::schema::Catalog;
use crate::source::{SourceFile, Span};
use crate::workloads::{self, PodTemplate};
use crate::yaml::Node;
use std::cell::OnceCell;
use std::sync::OnceLock;

/// What an object rule is given.
pub struct ObjectContext<'a> {
    pub info: &'a ObjectInfo,
    pub node: &'a Node,
    pub source: &'a SourceFile,
    pub catalog: &'a Catalog,
    /// The object's pod template, if its kind makes pods (found once, read by many rules).
    pub template: Option<PodTemplate<'a>>,
    containers: OnceCell<Vec<Container<'a>>>,
}

impl<'a> ObjectContext<'a> {
    pub fn new(
        info: &'a ObjectInfo,
        node: &'a Node,
        source: &'a SourceFile,
        catalog: &'a Catalog,
    ) -> ObjectContext<'a> {
        ObjectContext {
            info,
            node,
            source,
            catalog,
            template: workloads::pod_template(&info.gvk, node),
            containers: OnceCell::new(),
        }
    }

    /// The containers of the pod template, init containers first (none when the kind
    /// makes no pods). The pod, image and resources rules each loop over them.
    pub fn containers(&self) -> &[Container<'a>] {
        self.containers.get_or_init(|| match &self.template {
            Some(template) => workloads::containers(template.spec)
                .into_iter()
                .map(|(field, node)| Container::new(template.spec_path, &field, node))
                .collect(),
            None => Vec::new(),
        })
    }
}

/// One container of a pod template.
pub struct Container<'a> {
    pub node: &'a Node,
    /// Its field path from the object's root, kubectl style
    /// (`spec.template.spec.containers[0]`).
    pub path: String,
    /// Whether its resources count: ephemeral containers take none, and plain init
    /// containers run one at a time before the pod starts, so requests for them would be
    /// noise. Sidecars (init containers with `restartPolicy: Always`) run with the pod.
    pub takes_resources: bool,
    image: OnceCell<Option<Result<ImageReference, ImageError>>>,
    resources: OnceCell<ContainerResources<'a>>,
}

impl<'a> Container<'a> {
    fn new(spec_path: &str, field: &str, node: &'a Node) -> Container<'a> {
        let ephemeral = field.starts_with("ephemeralContainers");
        let init =
            field.starts_with("initContainers") && node.get("restartPolicy").and_then(Node::as_str) != Some("Always");
        Container {
            node,
            path: join(spec_path, field),
            takes_resources: !ephemeral && !init,
            image: OnceCell::new(),
            resources: OnceCell::new(),
        }
    }

    /// The container's `image`, parsed; `None` when it has none or it is not a string.
    pub fn image(&self) -> Option<&Result<ImageReference, ImageError>> {
        self.image.get_or_init(|| self.node.get("image")?.as_str().map(str::parse)).as_ref()
    }

    /// Its requests and limits, parsed; `None` when its resources do not count
    /// (`takes_resources`).
    pub(crate) fn resources(&self) -> Option<&ContainerResources<'a>> {
        self.takes_resources.then(|| self.resources.get_or_init(|| ContainerResources::new(self.node, &self.path)))
    }
}

/// One object of a run, as the set rules see it.
pub struct Member<'a> {
    pub info: &'a ObjectInfo,
    /// The namespace the object lands in (its own, or `default`); `None` when its kind is
    /// cluster-scoped.
    pub namespace: Option<String>,
    /// What the set rules need to know about the object; `None` when it did not pass its
    /// schema (its fields cannot be trusted).
    pub facts: Option<&'a facts::Facts>,
    /// Where the object is in its file.
    pub span: Span,
    pub source: &'a SourceFile,
}

/// What the set rules are given. They run side by side, so what they share is kept in
/// `OnceLock`s: the first to ask works it out, the others wait for it.
pub struct SetContext<'a> {
    pub members: &'a [Member<'a>],
    pub catalog: &'a Catalog,
    pub cluster: Option<&'a ClusterShape>,
    selections: OnceLock<Selections<'a>>,
    defined: OnceLock<reference::Defined<'a>>,
}

impl<'a> SetContext<'a> {
    pub fn new(members: &'a [Member<'a>], catalog: &'a Catalog, cluster: Option<&'a ClusterShape>) -> SetContext<'a> {
        SetContext { members, catalog, cluster, selections: OnceLock::new(), defined: OnceLock::new() }
    }

    /// The members whose kinds make pods, with their index.
    pub fn pod_members(&self) -> impl Iterator<Item = (usize, &'a Member<'a>, &'a PodFacts)> + use<'a> {
        let members: &'a [Member<'a>] = self.members;
        members.iter().enumerate().filter_map(|(i, m)| Some((i, m, m.facts?.pods.as_ref()?)))
    }

    /// Which pod templates each Service selects (read by the `service/*` set rules).
    pub(crate) fn selections(&self) -> &Selections<'a> {
        self.selections.get_or_init(|| Selections::new(self))
    }

    /// The objects the input defines (read by the `reference/*` rules).
    pub(crate) fn defined(&self) -> &reference::Defined<'a> {
        self.defined.get_or_init(|| reference::Defined::new(self.members))
    }
}
