//! Plan snapshots for Rust tests: `assert_plan_snapshot!` plans manifests (against a state
//! file, if given) and hands the plan's stable YAML to insta, so a change in what a deploy
//! would do shows up in `cargo insta review` like any other snapshot.
//!
//! ```no_run
//! #[test]
//! fn production_plan() {
//!     kubeyard_harness::assert_plan_snapshot!(["deploy/"], env = "prod");
//! }
//! ```

use crate::cli::inputs::Inputs;
use crate::cli::plan::{Target, plan_with};
use kubeyard_compiler::plan::render;
use std::path::PathBuf;

/// insta, re-exported for the macro.
pub use insta;

/// What to plan: manifests, and optionally values, an environment and a state.
#[derive(Debug, Default, Clone)]
pub struct PlanRequest {
    pub paths: Vec<String>,
    pub env: Option<String>,
    pub values: Vec<PathBuf>,
    pub set: Vec<String>,
    pub state: Option<PathBuf>,
    pub prune: bool,
    /// A server-side apply's plan, by the field manager `kubeyard`.
    pub server_side: bool,
    pub force_conflicts: bool,
}

/// The plan's stable YAML (as `kubeyard plan -o yaml` prints it), or the diagnostics that
/// stopped it, rendered.
pub fn plan_yaml(request: &PlanRequest) -> Result<String, String> {
    let inputs = Inputs {
        paths: request.paths.clone(),
        env: request.env.clone(),
        values: request.values.clone(),
        set: request.set.clone(),
        ..Inputs::default()
    };
    let target = Target {
        state: request.state.clone(),
        prune: request.prune,
        server_side: request.server_side,
        field_manager: "kubeyard".into(),
        force_conflicts: request.force_conflicts,
        ..Target::default()
    };
    plan_with(&inputs, &target).map(|plan| render::yaml(&plan))
}

/// Asserts that the plan of some manifests matches its insta snapshot.
///
/// `assert_plan_snapshot!(["dir/", "more.yaml"])`, with optional settings after the
/// paths: `env = "prod"`, `state = "state.yaml"`, `prune = true`,
/// `set = ["image.tag=v2"]`, `values = ["extra.yaml"]`.
#[macro_export]
macro_rules! assert_plan_snapshot {
    ([$($path:expr),+ $(,)?] $(, $key:ident = $value:expr)* $(,)?) => {{
        #[allow(unused_mut)]
        let mut request = $crate::snapshot::PlanRequest {
            paths: vec![$(::std::string::ToString::to_string(&$path)),+],
            ..::std::default::Default::default()
        };
        $( $crate::assert_plan_snapshot!(@set request, $key, $value); )*
        match $crate::snapshot::plan_yaml(&request) {
            Ok(yaml) => $crate::snapshot::insta::assert_snapshot!(yaml),
            Err(problems) => panic!("kubeyard could not plan {:?}:\n{}", request.paths, problems),
        }
    }};
    (@set $request:ident, env, $value:expr) => { $request.env = Some(::std::string::ToString::to_string(&$value)); };
    (@set $request:ident, state, $value:expr) => { $request.state = Some(::std::path::Path::new(&$value).to_path_buf()); };
    (@set $request:ident, prune, $value:expr) => { $request.prune = $value; };
    (@set $request:ident, set, $value:expr) => {
        $request.set = $value.iter().map(::std::string::ToString::to_string).collect();
    };
    (@set $request:ident, values, $value:expr) => {
        $request.values = $value.iter().map(|v| ::std::path::Path::new(v).to_path_buf()).collect();
    };
}
