//! The repository's `.pre-commit-hooks.yaml`, run by pre-commit itself (`pre-commit
//! try-repo`, which installs hooks from a checkout as a user's config would): a commit's
//! broken manifest fails the hook with the diagnostic, a sound one passes.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, program: &str, args: &[&str], path: &str, home: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("PRE_COMMIT_HOME", home)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

#[test]
fn the_pre_commit_hook_fails_a_broken_manifest_and_passes_a_sound_one() {
    let version = Command::new("python3").args(["-m", "pre_commit", "--version"]).output().expect("python3 runs");
    assert!(
        version.status.success(),
        "pre-commit is missing: pip install -r harness/tests/python/requirements.txt (scripts/setup does)"
    );
    let workspace = support::workspace();
    let binary = Path::new(env!("CARGO_BIN_EXE_kubeyard"));
    let scratch = tempfile::tempdir().unwrap();
    let (repo, home) = (scratch.path().join("app"), scratch.path().join("cache"));
    std::fs::create_dir_all(repo.join("k8s")).unwrap();
    // kubeyard first on the PATH: the `system` hook runs the one the user installed.
    let path = format!("{}:{}", binary.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let git = |args: &[&str]| {
        let out = run(&repo, "git", args, &path, &home);
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    std::fs::copy(workspace.join("fixtures/lint/invalid/unknown-fields.yaml"), repo.join("k8s/web.yaml")).unwrap();
    std::fs::copy(workspace.join("fixtures/lint/valid/deployment.yaml"), repo.join("k8s/ok.yaml")).unwrap();
    git(&["add", "."]);

    // The hooks file as committed in a repository of its own (what pre-commit clones from
    // the user's `repo:`), so the test reads this checkout's file, committed or not.
    let hooks = scratch.path().join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    std::fs::copy(workspace.join(".pre-commit-hooks.yaml"), hooks.join(".pre-commit-hooks.yaml")).unwrap();
    for args in [&["init", "-q"][..], &["add", "."], &["commit", "-q", "-m", "hooks"]] {
        let out = run(&hooks, "git", args, &path, &home);
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let hook = |file: &str| {
        let args = ["-m", "pre_commit", "try-repo", hooks.to_str().unwrap(), "kubeyard-lint", "--files", file];
        run(&repo, "python3", &args, &path, &home)
    };
    let broken = hook("k8s/web.yaml");
    let said = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{said}{}", String::from_utf8_lossy(&broken.stderr));
    assert!(said.contains("kubeyard lint") && said.contains("Failed"), "{said}");
    assert!(said.contains("unknown field \"spec.template.spec.contianers\""), "{said}");
    let sound = hook("k8s/ok.yaml");
    let said = String::from_utf8_lossy(&sound.stdout);
    assert_eq!(sound.status.code(), Some(0), "{said}{}", String::from_utf8_lossy(&sound.stderr));
    assert!(said.contains("Passed"), "{said}");
}
