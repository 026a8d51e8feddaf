//! The run's scope closing: what is still claimed is removed stage by stage, the newest first
//! within a stage; what is claimed after the close is removed at once. (Its own test binary:
//! a closed scope stays closed for the process.)

use std::sync::{Arc, Mutex};

use authlab::scope::{self, Stage};

#[test]
fn closing_removes_by_stage_then_newest_first_and_later_claims_at_once() {
    let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let removal = |name: &'static str| {
        let log = log.clone();
        move || log.lock().unwrap().push(name)
    };
    let dir = scope::claim("a directory", Stage::Dirs, removal("dir"));
    let first = scope::claim("container one", Stage::Containers, removal("container one"));
    let process = scope::claim("a process", Stage::Processes, removal("process"));
    let network = scope::claim("a network", Stage::Networks, removal("network"));
    let objects = scope::claim("cluster objects", Stage::Objects, removal("objects"));
    let kept = scope::claim("a kept file", Stage::Files, removal("kept file"));
    kept.release();
    // Claims outlive the close here (as a task's would, after the signal handler closed).
    let held = [dir, first, process, network, objects];
    scope::close();
    let order = log.lock().unwrap().clone();
    assert_eq!(
        order,
        ["objects", "container one", "network", "process", "dir"],
        "{order:?}"
    );
    let late = scope::claim("a late container", Stage::Containers, removal("late"));
    assert_eq!(log.lock().unwrap().last(), Some(&"late"), "removed at once");
    // Dropping claims the close removed removes nothing twice.
    drop(held);
    drop(late);
    assert_eq!(log.lock().unwrap().len(), 6);
}
