//! The examples each subcommand's `--help` ends with. Every line that runs kubeyard is
//! parsed by the command line itself in a test (`every_example_parses`), so an example
//! cannot name a flag that is gone.

macro_rules! examples {
    ($($name:ident = $text:literal;)*) => {
        $(pub const $name: &str = concat!("Examples:\n", $text);)*
        /// Every example text, for the test.
        #[cfg(test)]
        pub const ALL: &[&str] = &[$($name,)*];
    };
}

examples! {
    LINT = "  kubeyard lint k8s/                                   # every manifest under k8s/, strictly
  kubeyard lint -k 1.30 app.yaml                       # against Kubernetes 1.30's schemas
  kubeyard lint --output sarif k8s/ > kubeyard.sarif   # for GitHub code scanning and other dashboards
  kubeyard lint --output github k8s/                   # annotations on a pull request's lines (GitHub Actions)
  kubeyard lint --rule image/latest-tag=off --cluster nodes=3,cpu=4,memory=8Gi k8s/
  kubectl kustomize overlays/prod | kubeyard lint -    # from standard input";
    NORMALIZE = "  kubeyard normalize app.yaml                          # each object as the API server stores it
  kubeyard normalize --output json --env prod k8s/     # the templates rendered with values/prod.yaml";
    PLAN = "  kubeyard plan k8s/ --state state.yaml                # against kubeyard's state file
  kubeyard plan k8s/ --kubeconfig kubeconfig --prune   # against a live cluster, deletions included
  kubeyard plan k8s/ --kubeconfig kubeconfig --server-side
  kubeyard plan k8s/ --state state.yaml --snapshot plan.snap --check   # fail when the plan is not the snapshot
  kubeyard plan k8s/ --state state.yaml --detailed-exitcode            # exit 2 when anything would change";
    APPLY = "  kubeyard apply k8s/ --kubeconfig kubeconfig          # in plan order: namespaces and CRDs first
  kubeyard apply k8s/ --kubeconfig kubeconfig --server-side --prune
  kubeyard apply k8s/ --state state.yaml               # to a state file instead of a cluster";
    GRAPH = "  kubeyard graph k8s/                                  # the apply order, each object with what it waits for
  kubeyard graph --output dot k8s/ | dot -Tsvg > graph.svg
  kubeyard graph --output mermaid k8s/ >> README.md";
    RULES = "  kubeyard rules                                       # every rule and its default severity
  kubeyard rules image/latest-tag                      # one rule: why it matters, and the fix
  kubeyard rules --output markdown > docs/rules.md";
    APISERVER = "  kubeyard apiserver --data-dir ./data --kubeconfig-out kubeconfig   # then: KUBECONFIG=kubeconfig kubectl get ns
  kubeyard apiserver --etcd http://127.0.0.1:2379 --listen 127.0.0.1:6443 --tls";
    GET = "  kubeyard get pods -A --kubeconfig kubeconfig
  kubeyard get deployments,services -n shop --output yaml --kubeconfig kubeconfig
  kubeyard get pods -l app=web --cluster http://127.0.0.1:8080";
    UP = "  kubeyard up k8s/ --kubeconfig-out kubeconfig         # 3 simulated nodes in this process, until Ctrl-C
  kubeyard up k8s/ --nodes 100 --node-capacity cpu=8,memory=32Gi,pods=110
  kubeyard up --containers --nodes 2 k8s/              # each node a Docker container, real processes
  kubeyard up --containers --etcd-members 3 --api-servers 2";
    TEST = "  kubeyard test tests/                                 # every Test under tests/, two at a time, in process
  kubeyard test tests/ --cluster containers --parallel 1
  kubeyard test tests/ --cluster kubeconfig --kubeconfig kubeconfig   # a real cluster, a namespace per test
  kubeyard test tests/ --output junit > report.xml
  kubeyard test tests/ --shard 2/4 --output junit > shard-2.xml       # the second of four CI machines
  kubeyard test merge-reports shard-*.xml > report.xml";
    MERGE_REPORTS = "  kubeyard test merge-reports shard-1.xml shard-2.xml > report.xml
  kubeyard test merge-reports shard-*.json > report.json";
    SCHEDULER = "  kubeyard scheduler --server https://10.0.0.2:6443 --token-file token --certificate-authority ca.crt";
    CONTROLLER_MANAGER = "  kubeyard controller-manager --server https://10.0.0.2:6443 --token-file token --certificate-authority ca.crt";
    KUBELET = "  kubeyard kubelet --server https://10.0.0.2:6443 --token-file token --certificate-authority ca.crt --node node-1
  kubeyard kubelet --server http://127.0.0.1:8080 --node edge --capacity cpu=2,memory=4Gi,pods=50 --taints edge=true:NoSchedule";
    LOADBALANCER = "  kubeyard loadbalancer --listen 0.0.0.0:6443 --backend 10.0.0.2:6443 --backend 10.0.0.3:6443";
    IMAGE = "  kubeyard image build                                 # kubeyard/kubeyard and kubeyard/etcd, FROM scratch
  docker run --rm -v \"$PWD:/src\" -w /src kubeyard/kubeyard lint .   # kubeyard itself as a CI image";
    IMAGE_BUILD = "  kubeyard image build
  kubeyard image build --etcd-binary /usr/bin/etcd";
    DOWN = "  kubeyard down kubeyard-3f2a                          # one cluster, by the name `up --containers` printed
  kubeyard down --all                                  # every cluster interrupted runs of this user left";
    ECHO = "  kubeyard echo --port 8080 --text hello";
    COMPLETION = "  kubeyard completion bash > ~/.local/share/bash-completion/completions/kubeyard
  kubeyard completion zsh > \"${fpath[1]}/_kubeyard\"
  kubeyard completion fish > ~/.config/fish/completions/kubeyard.fish";
    LSP = "  kubeyard lsp                                         # started by the editor: docs/lsp.md shows VS Code, Neovim, Helix";
    MAN = "  kubeyard man --dir ~/.local/share/man/man1 && man kubeyard-lint
  kubeyard man                                          # kubeyard(1) on standard output";
}

#[cfg(test)]
mod tests {
    use super::ALL;
    use crate::cli::Cli;
    use clap::{CommandFactory, Parser};

    /// The kubeyard invocations of an example text: from `kubeyard ` to the end of the
    /// line, a comment, a pipe or a redirection.
    fn invocations(text: &str) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        for line in text.lines().skip(1) {
            let Some(start) = line.find("kubeyard ") else { continue };
            let mut command = &line[start..];
            for end in [" #", " |", " >", " &&"] {
                if let Some(at) = command.find(end) {
                    command = &command[..at];
                }
            }
            found.push(command.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect());
        }
        found
    }

    #[test]
    fn every_example_parses() {
        let mut checked = 0;
        for text in ALL {
            let commands = invocations(text);
            assert!(!commands.is_empty(), "no kubeyard command in {text}");
            for words in commands {
                if let Err(error) = Cli::try_parse_from(&words) {
                    panic!("`{}` does not parse:\n{error}", words.join(" "));
                }
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
    }

    #[test]
    fn every_subcommand_has_an_example() {
        fn visit(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name());
                let help = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !invocations(&help).iter().any(|words| words.join(" ").starts_with(&path)) {
                    missing.push(path.clone());
                }
                visit(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        let mut command = Cli::command();
        command.build();
        visit(&command, "kubeyard", &mut missing);
        assert!(missing.is_empty(), "no example of {missing:?} in its --help");
    }
}
