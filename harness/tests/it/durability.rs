//! `kubeyard apiserver --data-dir`: killed with SIGKILL in the middle of writes and
//! started again, it has every write it acknowledged.

use crate::support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::api::{Process, get, post};

#[test]
fn a_server_killed_mid_load_restarts_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kubeconfig = dir.path().join("kubeconfig");
    let data_dir = data.display().to_string();
    let mut server = Process::start(&kubeconfig, &["--data-dir", &data_dir]);
    let url = server.url.clone();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (url, acknowledged, stop) = (url.clone(), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let agent = support::api::agent();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w{writer}-{i}");
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                    let sent = agent
                        .post(&format!("{url}/api/v1/namespaces/default/configmaps"))
                        .header("Content-Type", "application/json")
                        .send(body.to_string());
                    match sent {
                        Ok(response) if response.status().as_u16() == 201 => acknowledged.lock().unwrap().push(name),
                        Ok(response) => panic!("unexpected {}", response.status()),
                        // The server is gone: whatever was in flight was never acknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Kill it while the writers are busy.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "writes too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let server = Process::start(&kubeconfig, &["--data-dir", &data_dir]);
    let url = server.url.clone();
    let list = get(&format!("{url}/api/v1/namespaces/default/configmaps"));
    let stored: std::collections::HashSet<String> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    // Revisions go on from where they were; the watch history did not survive.
    let revision = list.rv();
    let next = post(
        &format!("{url}/api/v1/namespaces/default/configmaps"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}}),
    );
    assert_eq!(next.status, 201, "{}", next.text);
    assert!(next.rv() > revision);
    let old =
        support::api::watch_events(&format!("{url}/api/v1/configmaps?watch=true&resourceVersion=2&timeoutSeconds=1"));
    assert_eq!(old[0]["object"]["code"], 410);
}
